"""hfnet_core: a paper-faithful HF-Net (hierarchical feature aggregation) library.

The package is importable on its own; the Streamlit app in ``app/`` only calls into it.
"""

__version__ = "0.1.0"
