"""Analysis helpers behind the explorer: pure functions over models, clips and eval bundles.

``inference`` (one clip through a checkpoint), ``gates`` (HF gate-map summaries), ``clips`` (decoding,
sampling and regenerating clips by id), ``teaching`` (Eq. 1 in numpy); part B adds ``embeddings``,
``comparison`` and ``attributions``. Nothing here imports streamlit.
"""
