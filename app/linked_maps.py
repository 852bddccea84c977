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
import json
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
        from app.feature_map import FrozenFigure

        if isinstance(figure, FrozenFigure):
            fig = figure.to_dict()  # already plain JSON (typed arrays encoded)
        elif hasattr(figure, "to_json"):  # any other plotly figure: numpy arrays encoded, NaN as null
            fig = json.loads(figure.to_json())
        else:
            fig = dict(figure)
        super().__init__(slot=slot, digest=digest, figure=fig)


def _plotly_js() -> Path:
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def _roots() -> list[tuple[Path, bool]]:
    """Where the frame's folder may live, in order: hfnet's cache folder, else this user's private folder
    under the shared temporary folder (True: that one must be ours, mode 0700, and not a link)."""
    from hfnet_core.analysis.projection_store import cache_root

    uid = os.getuid() if hasattr(os, "getuid") else None
    private = Path(tempfile.gettempdir()) / f"hfnet-{uid if uid is not None else 'user'}"
    return [(cache_root(), False), (private, True)]


def _ours(path: Path) -> bool:
    """A folder or file we may serve from: not a link and, where the system says, owned by us and writable
    by nobody else (anyone who could write into it could put a page in front of the whole app)."""
    st = path.lstat()
    if stat.S_ISLNK(st.st_mode):
        return False
    if not hasattr(os, "getuid"):
        return True
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


@lru_cache(maxsize=1)
def _sources() -> tuple[bytes, Path, str, str]:
    """(page bytes, plotly.js path, its sha256, the folder's tag)."""
    html, js = _HTML.read_bytes(), _plotly_js()
    js_sha = hashlib.sha256(js.read_bytes()).hexdigest()
    tag = hashlib.sha256(html + js_sha.encode()).hexdigest()[:16]
    return html, js, js_sha, tag


def _intact(folder: Path) -> bool:
    """The folder holds exactly this page and this plotly.js, and is ours (see ``_ours``)."""
    html, _, js_sha, _ = _sources()
    try:
        if not _ours(folder) or sorted(p.name for p in folder.iterdir()) != ["index.html", "plotly.min.js"]:
            return False
        page, js = folder / "index.html", folder / "plotly.min.js"
        return (_ours(page) and _ours(js) and page.read_bytes() == html
                and hashlib.sha256(js.read_bytes()).hexdigest() == js_sha)
    except OSError:
        return False


def _build(root: Path, private: bool) -> Path:
    """The frame's folder under ``root`` (made, or reused when intact); raises ``OSError``."""
    html, js, _, tag = _sources()
    root.mkdir(parents=True, exist_ok=True, mode=0o700 if private else 0o777)
    if private and not _ours(root):
        raise PermissionError(f"{root} is not this user's own folder")
    components = root / "components"
    components.mkdir(exist_ok=True)
    final = components / f"linked_maps-{tag}"
    if final.exists() or final.is_symlink():
        if _intact(final):
            return final
        st = final.lstat()
        if stat.S_ISLNK(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
            raise PermissionError(f"{final} is not a folder this user made")
        shutil.rmtree(final)  # ours but changed, half there or open to others: made again below
    tmp = Path(tempfile.mkdtemp(prefix=".linked_maps-", dir=components))
    try:
        shutil.copyfile(js, tmp / "plotly.min.js")
        (tmp / "index.html").write_bytes(html)
        for f in ("plotly.min.js", "index.html"):
            os.chmod(tmp / f, 0o644)
        os.chmod(tmp, 0o755)  # readable by a server of another user sharing the cache, writable by us only
        try:
            os.replace(tmp, final)
        except OSError:  # another process made it first
            if not _intact(final):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


@lru_cache(maxsize=1)
def frontend_dir() -> Path:
    """The folder Streamlit serves the frame from: ``index.html`` + ``plotly.min.js``, named by a digest of
    both (a new page or a new plotly.js gets a new folder, so a browser never mixes the two) and checked
    byte for byte before it is reused. Raises ``OSError`` naming what to do when no root can hold it."""
    problems = []
    for root, private in _roots():
        try:
            return _build(root, private)
        except OSError as e:
            problems.append(f"{root}: {e.strerror or e}")
    raise OSError(f"no folder for Feature space's maps page ({'; '.join(problems)}); "
                  "set HFNET_CACHE_DIR to a folder this user can write")


@lru_cache(maxsize=1)
def _component() -> Callable[..., Any]:
    import streamlit.components.v1 as components

    return components.declare_component(COMPONENT_NAME, path=str(frontend_dir()))


def _served() -> Callable[..., Any]:
    """The component, declared again if its folder went away while the server ran (a cache wipe, a
    temporary-folder cleaner): else every browser would get a missing page until a restart."""
    if not (frontend_dir() / "index.html").is_file():
        frontend_dir.cache_clear()
        _component.cache_clear()
    return _component()


def linked_maps(maps: Sequence[MapSpec], key: str, on_change: Callable[[], None] | None = None,
                config: Mapping[str, Any] | None = None) -> Any:
    """Draw ``maps`` side by side in one frame; the last selection made in it (``{"slot", "seq",
    "selection": {"box", "lasso", "points"}}``, also in ``st.session_state[key]``), or None."""
    return _served()(maps=list(maps), config=dict(config or {}), key=key, default=None, on_change=on_change)


def warm_up(key: str = "maps_warmup") -> None:
    """Once per session, at the end of the first page shown (unless it is Feature space): an empty maps
    frame at the foot of the sidebar, so the browser fetches and compiles plotly.js (4.6 MB) before the
    first visit to Feature space. Measured at 24,777 clips: the frame's first plotly.js load took 1.1 s, a
    later one 0.3 s. The frame goes with the next rerun; the compiled script stays in the browser."""
    import streamlit as st

    if st.session_state.get("_hf_maps_warm"):
        return
    st.session_state["_hf_maps_warm"] = True
    try:
        frame = _served()
    except OSError:
        return  # only a warm-up: Feature space itself says what is wrong with the folder
    with st.sidebar:
        frame(maps=[], config={}, warm=True, key=key, default=None)
