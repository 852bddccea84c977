"""hfnet explorer: how a video CNN mixes time. Entry point: ``streamlit run app/streamlit_app.py``.

Every run: navigation, page style, the sidebar (which resolves the one ``Selection``), the header with the
guided tour, then the chosen page - which reads ``selection.current()``, calls ``hfnet_core`` and draws.
At the end of every run the selection is written into the URL, so a reload or a shared link restores it.
Pages live in ``app/views/`` (not ``app/pages/``: see ``app/__init__.py``).
"""

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `from app.… import` works however streamlit was started
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from app.background import release_other_pages  # noqa: E402
from app.linked_maps import warm_up  # noqa: E402
from app.selection import PAGES, pending_page, sync_url  # noqa: E402
from app.settings import configure_torch  # noqa: E402
from app.sidebar import render_sidebar  # noqa: E402
from app.start import render_header  # noqa: E402
from app.ui import page_style  # noqa: E402

configure_torch()
st.set_page_config(page_title="hfnet explorer", page_icon=":material/movie:", layout="wide")

_TITLES = {
    "clip_lab": ("Clip lab", ":material/movie:"),
    "gate_maps": ("Gate maps", ":material/grid_on:"),
    "feature_space": ("Feature space", ":material/scatter_plot:"),
    "class_comparison": ("Class comparison", ":material/compare_arrows:"),
    "attributions": ("Attributions", ":material/center_focus_strong:"),
    "model_cards": ("Model cards", ":material/badge:"),
    "how_hf_works": ("How HF works", ":material/school:"),
}
page = st.navigation([st.Page(PAGES[name], title=title, icon=icon, url_path=name, default=name == "clip_lab")
                      for name, (title, icon) in _TITLES.items()])
page_style()
try:
    target = pending_page()
    if target:
        st.switch_page(target)
    release_other_pages(page.url_path or "clip_lab")  # a page left behind: this session's jobs there stop
    selection = render_sidebar(page.url_path or "clip_lab")
    render_header(selection)
    page.run()
    if (page.url_path or "clip_lab") != "feature_space":
        warm_up()  # Feature space's maps frame: plotly.js fetched and compiled ahead of a first visit
finally:
    sync_url()
