"""Feature space's maps as one long-lived component frame drawn by plotly.js (``app/linked_maps.html``).

Why not ``st.plotly_chart``: Streamlit gives a chart whose figure changed a new identity, so every
selection mounted both 25k-point charts afresh - new WebGL contexts, the ~1 MB spec stringified and
re-themed twice, a full plotly draw - about 1.7 s per plot in software WebGL, and its selection event
listed every selected point back to the server (~1.7 MB at 25k). Here the frame stays (the key is its
identity), a changed figure is a ``Plotly.react`` on the plot already drawn, an unchanged one (same digest)
is left alone, and a box or lasso goes back as its geometry only (``app.feature_map.resolve_selection``
finds the clips on the full set).

The frame's folder (its page and a copy of the plotly.js that the installed plotly ships, so nothing is
fetched from elsewhere) is written once per version into hfnet's cache folder, atomically.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

__all__ = ["MapSpec", "linked_maps", "frontend_dir", "warm_up"]

_HTML = Path(__file__).with_name("linked_maps.html")
COMPONENT_NAME = "hfnet_linked_maps"


class MapSpec(dict):
    """One plot of the frame: ``slot`` (the model), ``digest`` (equal digests = the same figure: the frame
    leaves that plot alone) and ``figure`` (a plotly figure dict)."""

    def __init__(self, slot: str, digest: str, figure: Any) -> None:
        fig = figure.to_dict() if hasattr(figure, "to_dict") else dict(figure)
        super().__init__(slot=slot, digest=digest, figure=fig)


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _writable_root() -> Path:
    """hfnet's cache folder, else a private folder of this user under the temporary folder."""
    from hfnet_core.analysis.projection_store import cache_root

    uid = os.getuid() if hasattr(os, "getuid") else None
    private = Path(tempfile.gettempdir()) / f"hfnet-{uid if uid is not None else 'user'}"
    for base, shared_tmp in ((cache_root(), False), (private, True)):
        try:
            base.mkdir(parents=True, exist_ok=True, mode=0o700 if shared_tmp else 0o777)
            st = base.lstat()
            if shared_tmp and (stat.S_ISLNK(st.st_mode) or (uid is not None and st.st_uid != uid)):
                continue  # in the shared temporary folder, someone else's (or a link): never serve from it
            if os.access(base, os.W_OK):
                return base
        except OSError:
            continue
    raise OSError("no writable cache folder for the maps' page (set HFNET_CACHE_DIR to one)")


@lru_cache(maxsize=1)
def frontend_dir() -> Path:
    """The folder Streamlit serves the frame from: ``index.html`` + ``plotly.min.js``, named by a digest of
    both, so a new page or a new plotly.js gets a new folder and a browser never mixes the two."""
    html, js = _HTML.read_bytes(), _plotly_js()
    st = js.stat()
    tag = hashlib.sha256(html + f"{js}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    root = _writable_root() / "components"
    final = root / f"linked_maps-{tag}"
    if (final / "index.html").is_file() and (final / "plotly.min.js").is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".linked_maps-", dir=root))
    try:
        shutil.copyfile(js, tmp / "plotly.min.js")
        (tmp / "index.html").write_bytes(html)
        try:
            os.replace(tmp, final)
        except OSError:  # another process made it first
            if not (final / "index.html").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@lru_cache(maxsize=1)
def _component() -> Callable[..., Any]:
    import streamlit.components.v1 as components

    return components.declare_component(COMPONENT_NAME, path=str(frontend_dir()))


def linked_maps(maps: Sequence[MapSpec], key: str, on_change: Callable[[], None] | None = None,
                config: Mapping[str, Any] | None = None) -> Any:
    """Draw ``maps`` side by side in one frame; the last selection made in it (``{"slot", "seq",
    "selection": {"box", "lasso", "points"}}``, also in ``st.session_state[key]``), or None."""
    return _component()(maps=list(maps), config=dict(config or {}), key=key, default=None, on_change=on_change)


def warm_up(key: str = "maps_warmup") -> None:
    """Once per session, at the end of the first page shown (unless it is Feature space): an empty maps
    frame at the foot of the sidebar, so the browser fetches and compiles plotly.js (4.6 MB) before the
    first visit to Feature space. Measured at 24,777 clips: the frame's first plotly.js load took 1.1 s, a
    later one 0.3 s. The frame goes with the next rerun; the compiled script stays in the browser."""
    import streamlit as st

    if st.session_state.get("_hf_maps_warm"):
        return
    st.session_state["_hf_maps_warm"] = True
    with st.sidebar:
        _component()(maps=[], config={}, warm=True, key=key, default=None)
