"""Video data for hfnet: decoding (``video``), TSN transforms, datasets and the SynthSomething generator.

Frames travel as uint8 ``(T, H, W, 3)`` RGB numpy arrays until ``InputConvention.to_model_input``.
Submodules are imported on use so that, e.g., the generator does not pull in PyAV.
"""
