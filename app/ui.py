"""Shared drawing helpers: figures with a download button, error boxes, small formatting bits."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import streamlit as st

__all__ = ["HAS_KALEIDO", "DOWNLOAD_NOTE", "show_figure", "download_figure", "error_box", "no_models_box", "slug"]

#: PNG export needs kaleido (a heavy dependency we do not add); HTML export always works.
HAS_KALEIDO = importlib.util.find_spec("kaleido") is not None


DOWNLOAD_NOTE = (
    "⬇ HTML saves a figure as an interactive HTML file that opens offline. "
    + ("⬇ PNG saves a static image." if HAS_KALEIDO else
       "For a PNG, use the camera icon in the figure's toolbar (server-side PNG export needs the optional "
       "`kaleido` package, which hfnet does not install).")
)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "figure"


def download_figure(fig: Any, name: str, key: str) -> None:
    """Download buttons for a Plotly figure: standalone HTML (works offline), PNG when kaleido exists.

    The file is only built when the button is clicked (``data`` is a callable) and clicking does not
    rerun the page.
    """
    base = slug(name)
    row = _button_row()
    row.download_button(
        "⬇ HTML", data=lambda: _to_html(fig), file_name=f"{base}.html",
        mime="text/html", key=f"dl_html_{key}", on_click="ignore", width="content",
        help="Interactive figure as a standalone HTML file (opens offline in any browser).",
    )
    if HAS_KALEIDO:
        row.download_button("⬇ PNG", data=lambda: _to_png(fig), file_name=f"{base}.png",
                            mime="image/png", key=f"dl_png_{key}", on_click="ignore", width="content")


def _button_row() -> Any:
    try:
        return st.container(horizontal=True)
    except TypeError:  # older streamlit: buttons stack vertically
        return st.container()


def _to_html(fig: Any) -> str:
    import plotly.io as pio

    return pio.to_html(fig, include_plotlyjs=True, full_html=True, validate=False, auto_play=False)


def _to_png(fig: Any) -> bytes:
    import plotly.io as pio

    return pio.to_image(fig, format="png", scale=2, validate=False)


def show_figure(fig: Any, name: str, key: str, download: bool = True, **kwargs: Any) -> None:
    """``st.plotly_chart`` plus its download button(s)."""
    st.plotly_chart(fig, key=f"fig_{key}", **kwargs)
    if download:
        download_figure(fig, name, key)


def error_box(message: str, hint: str | None = None) -> None:
    """A specific error for the user; the page goes on with what still works."""
    st.error(message + (f"\n\n{hint}" if hint else ""), icon=":material/error:")


def no_models_box() -> None:
    st.warning("No model is loaded. Pick model A and/or B in the sidebar (or run `make demo-checkpoints`).",
               icon=":material/info:")
