"""hfnet explorer: how a video CNN mixes time. Entry point: ``streamlit run app/streamlit_app.py``.

Builds the navigation, draws the shared sidebar (models A/B, device, clip) and runs the chosen page.
Pages live in ``app/views/`` (not ``app/pages/``: see ``app/__init__.py``) and read the shared state from
``app/state.py``.
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `from app.state import ...` works however streamlit was started
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from app.state import configure_torch, render_sidebar  # noqa: E402

configure_torch()
st.set_page_config(page_title="hfnet explorer", page_icon=":material/movie:", layout="wide")

PAGES = [
    st.Page("views/clip_lab.py", title="Clip lab", icon=":material/movie:", default=True),
    st.Page("views/gate_maps.py", title="Gate maps", icon=":material/grid_on:"),
    st.Page("views/feature_space.py", title="Feature space", icon=":material/scatter_plot:"),
    st.Page("views/class_comparison.py", title="Class comparison", icon=":material/compare_arrows:"),
    st.Page("views/attributions.py", title="Attributions", icon=":material/center_focus_strong:"),
    st.Page("views/model_cards.py", title="Model cards", icon=":material/badge:"),
    st.Page("views/how_hf_works.py", title="How HF works", icon=":material/school:"),
]

page = st.navigation(PAGES)
render_sidebar()
page.run()
