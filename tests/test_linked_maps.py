"""Feature space's maps frame (``app.linked_maps``): the folder it is served from, what each plot is sent
as, and the page's protocol with Streamlit. The frame drawing and selecting in a real browser is tested in
``tests/test_browser_scale.py``."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import plotly
import pytest

from app import linked_maps as lm


@pytest.fixture()
def fresh_dir(monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # the fallback too stays in this test
    for cached in (lm.frontend_dir, lm._component, lm._sources):
        cached.cache_clear()
    yield tmp_path
    for cached in (lm.frontend_dir, lm._component, lm._sources):
        cached.cache_clear()


def test_the_frame_folder_holds_the_page_and_the_installed_plotly_js(fresh_dir):
    d = lm.frontend_dir()
    assert d.parent == fresh_dir / "cache" / "components" and d.name.startswith("linked_maps-")
    assert sorted(p.name for p in d.iterdir()) == ["index.html", "plotly.min.js"]
    assert (d / "index.html").read_bytes() == lm._HTML.read_bytes()
    shipped = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
    assert (d / "plotly.min.js").read_bytes() == open(shipped, "rb").read()  # nothing fetched from elsewhere
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left behind
    lm.frontend_dir.cache_clear()
    assert lm.frontend_dir() == d  # reused, not rewritten


def test_a_changed_page_gets_a_new_folder(fresh_dir, monkeypatch, tmp_path):
    first = lm.frontend_dir()
    page = tmp_path / "linked_maps.html"
    page.write_text(lm._HTML.read_text() + "<!-- changed -->\n")
    monkeypatch.setattr(lm, "_HTML", page)
    lm.frontend_dir.cache_clear()
    lm._sources.cache_clear()
    second = lm.frontend_dir()
    assert second != first and (second / "index.html").read_text().endswith("<!-- changed -->\n")


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root ignores permissions")
def test_a_read_only_cache_folder_falls_back_to_a_private_temporary_one(fresh_dir, monkeypatch):
    ro = fresh_dir / "cache"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        d = lm.frontend_dir()
        assert not str(d).startswith(str(ro)) and (d / "index.html").is_file()
    finally:
        ro.chmod(stat.S_IRWXU)


def test_an_unusable_cache_root_falls_back_to_a_private_temporary_folder(fresh_dir):
    (fresh_dir / "cache").write_text("not a folder")
    d = lm.frontend_dir()
    private = fresh_dir / "tmp" / f"hfnet-{os.getuid()}"
    assert d.parent == private / "components" and (d / "index.html").is_file() and (d / "plotly.min.js").is_file()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700


def test_a_changed_or_half_written_folder_is_made_again(fresh_dir):
    d = lm.frontend_dir()
    (d / "index.html").write_text("<script>somebody else's page</script>")
    lm.frontend_dir.cache_clear()
    assert lm.frontend_dir() == d and (d / "index.html").read_bytes() == lm._HTML.read_bytes()
    (d / "plotly.min.js").unlink()
    lm.frontend_dir.cache_clear()
    assert lm.frontend_dir() == d and (d / "plotly.min.js").stat().st_size > 1_000_000
    d.chmod(0o777)  # writable by anyone: not served as it is
    lm.frontend_dir.cache_clear()
    assert lm.frontend_dir() == d and stat.S_IMODE(d.stat().st_mode) == 0o755


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to give a folder away")
def test_a_folder_someone_else_owns_is_never_served(fresh_dir):
    d = lm.frontend_dir()
    os.chown(d, 12345, -1)
    lm.frontend_dir.cache_clear()
    other = lm.frontend_dir()
    assert other != d and other.parent == fresh_dir / "tmp" / f"hfnet-{os.getuid()}" / "components"
    assert d.stat().st_uid == 12345  # left alone, not deleted


def test_a_folder_removed_while_the_server_runs_is_made_again(fresh_dir):
    import shutil

    lm._served()
    d = lm.frontend_dir()
    shutil.rmtree(d)
    lm._served()
    assert (lm.frontend_dir() / "index.html").is_file()


def test_a_plot_is_sent_as_its_slot_digest_and_plain_figure_dict():
    from app.analysis_figures import FeaturePoints  # noqa: F401 - the page's types import cleanly
    from app.feature_map import FrozenFigure

    fig = FrozenFigure({"data": [{"type": "scattergl", "x": [1, 2], "y": [3, 4]}], "layout": {"height": 300}})
    spec = lm.MapSpec("A", "abc", fig)
    assert spec == {"slot": "A", "digest": "abc", "figure": fig.to_dict()}
    assert json.loads(json.dumps(spec)) == spec  # what Streamlit sends: JSON as it is
    assert lm.MapSpec("B", "d", {"data": [], "layout": {}})["figure"] == {"data": [], "layout": {}}


def test_the_page_speaks_streamlit_s_component_protocol_and_reports_geometry_only():
    page = lm._HTML.read_text()
    for message in ("streamlit:componentReady", "streamlit:render", "streamlit:setComponentValue",
                    "streamlit:setFrameHeight"):
        assert message in page
    assert 'script.src = "plotly.min.js"' in page  # the copy beside it, never a CDN
    assert "http://" not in page and "https://" not in page
    assert "points: []" in page  # a selection goes back as boxes and lassos, never as its points


def test_a_link_in_the_temporary_folder_is_never_served_from(fresh_dir, monkeypatch):
    import tempfile

    tmp = fresh_dir / "tmp"
    (tmp / "elsewhere").mkdir(parents=True)
    (fresh_dir / "cache").write_text("not a folder")
    (tmp / f"hfnet-{os.getuid()}").symlink_to(tmp / "elsewhere")
    with pytest.raises(OSError, match="HFNET_CACHE_DIR"):
        lm.frontend_dir()
    assert not list((tmp / "elsewhere").iterdir())  # nothing written through the link


def test_a_figure_with_numpy_arrays_or_nan_still_goes_out_as_strict_json():
    import plotly.graph_objects as go

    fig = go.Figure(go.Scattergl(x=np.array([0.0, np.nan]), y=np.array([1.0, 2.0])))
    spec = lm.MapSpec("A", "d", fig)
    json.dumps(spec, allow_nan=False)  # what the browser's JSON.parse accepts
