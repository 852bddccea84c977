"""Shared drawing helpers: the page guards, error boxes, page style, figures with their downloads.

Errors: an ``HfnetError`` is a problem with the user's input and is shown as its own message; anything else
is a bug in hfnet and is shown as an internal error with the details for a report - in both cases the
session goes on (``guard``).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

import streamlit as st

from hfnet_core.errors import HfnetError

__all__ = [
    "error_box", "internal_error_text", "show_failure", "guard", "need_models", "need_clip", "no_models_message", "slug",
    "page_style", "page_title",
]

log = logging.getLogger("hfnet.app")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:80] or "figure"


def error_box(message: str, hint: str | None = None) -> None:
    """A specific error for the user; the page goes on with what still works."""
    st.error(message + (f"\n\n{hint}" if hint else ""), icon=":material/error:")


def internal_error_text(exc: BaseException) -> str:
    """The words for a bug (not an ``HfnetError``); the traceback goes to the server log."""
    log.error("internal error", exc_info=exc)
    return (f"internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:300]}). This is a bug in "
            "hfnet, not a problem with your file; the rest of the explorer keeps working.")


def show_failure(what: str, exc: BaseException) -> None:
    """``what`` failed: the message of an ``HfnetError``, or an internal error with its traceback."""
    if isinstance(exc, HfnetError):
        error_box(f"{what}: {exc}")
        return
    error_box(f"{what}: {internal_error_text(exc)}")
    with st.expander("Details for a bug report"):
        st.code("".join(traceback.format_exception(exc)), language=None)


class guard:
    """``with guard("Model A on this clip") as g: ...`` - a failure inside is shown and swallowed;
    ``g.failed`` tells the page to skip what depended on it. Streamlit's own stop/rerun pass through."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.failed = False

    def __enter__(self) -> "guard":
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        self.failed = True
        show_failure(self.what, exc)
        return True


def need_clip(sel: Any) -> Any:
    """The selection's clip, or a message saying why there is none, and the page stops."""
    if sel.clip is not None:
        return sel.clip
    from app.selection import choice

    if sel.clip_error:
        error_box(f"This clip cannot be used. {sel.clip_error}", "Choose another file or a shipped sample in the sidebar.")
    elif choice("clip_source") == "upload":
        st.info("Upload a video in the sidebar (an upload is never part of a link: it stays on your computer).",
                icon=":material/upload:")
    else:
        st.info("Choose a clip in the sidebar: a shipped sample, an upload, or a file under the data root.",
                icon=":material/movie:")
    st.stop()


def need_models(sel: Any) -> list[Any]:
    """The loaded models (A and/or B), or the one "no model loaded" message, and the page stops."""
    if sel.models:
        return sel.models
    no_models_message()
    st.stop()


def no_models_message() -> None:
    st.warning("No model is loaded. Pick model A and/or B in the sidebar (or run `make demo-checkpoints`).",
               icon=":material/info:")


def page_title(title: str, caption: str | None = None) -> None:
    st.markdown(f"### {title}")
    if caption:
        st.caption(caption)


# Compact top, readable small screens. Streamlit's test ids are its public hooks for styling.
_CSS = """
<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.6rem; padding-bottom: 2rem; }
[data-testid="stMainBlockContainer"] h2 { padding-top: 0.2rem; padding-bottom: 0.3rem; }
.hf-header { font-size: 0.92rem; line-height: 1.35; margin: 0 0 0.2rem 0; }
.hf-header b.hf-app { font-size: 1.05rem; }
.hf-who { display: inline-block; margin-right: 0.6rem; }
.hf-chip { display: inline-block; padding: 0 0.4rem; border-radius: 0.4rem; margin-right: 0.3rem;
           color: white; font-weight: 600; }
.hf-chip.a { background: #4C78A8; } .hf-chip.b { background: #F58518; }
/* Plotly's play / pause buttons and slider labels: big enough to hit */
.js-plotly-plot .updatemenu-button text { font-size: 20px !important; }
@media (max-width: 900px) {
  [data-testid="stMainBlockContainer"] { padding-left: 0.8rem; padding-right: 0.8rem; }
  [data-testid="stMarkdownContainer"] p, [data-testid="stCaptionContainer"] { overflow-wrap: anywhere; }
}
</style>
"""

# Streamlit's "auto" sidebar only collapses below ~768 px; the explorer's pages need the room up to 900 px.
_COLLAPSE_JS = """
<script>
(function () {
  const doc = window.parent && window.parent.document ? window.parent.document : document;
  const win = doc.defaultView || window;
  if (win.__hfnetSidebarChecked) return;
  win.__hfnetSidebarChecked = true;
  if (win.innerWidth > 900) return;
  let tries = 0;
  const timer = setInterval(function () {
    tries += 1;
    const bar = doc.querySelector('[data-testid="stSidebar"]');
    const btn = doc.querySelector('[data-testid="stSidebarCollapseButton"] button');
    if (bar && bar.getAttribute('data-collapsed') === 'false' && btn) { btn.click(); clearInterval(timer); }
    else if ((bar && bar.getAttribute('data-collapsed') === 'true') || tries > 40) clearInterval(timer);
  }, 100);
})();
</script>
"""


def page_style() -> None:
    """CSS for every page; on a narrow window (≤ 900 px) the sidebar starts collapsed (once per page load)."""
    st.html(_CSS)
    st.html(_COLLAPSE_JS, unsafe_allow_javascript=True)
