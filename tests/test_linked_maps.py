"""Feature space's maps frame (``app.linked_maps``): the folder it is served from, what each plot is sent
as, and the page's protocol with Streamlit. The frame drawing and selecting in a real browser is tested in
``tests/test_browser_scale.py``."""

from __future__ import annotations

import json
import os
import stat

import plotly
import pytest

from app import linked_maps as lm


@pytest.fixture()
def fresh_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    lm.frontend_dir.cache_clear()
    yield tmp_path
    lm.frontend_dir.cache_clear()


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


def test_a_read_only_cache_root_falls_back_to_the_temporary_folder(fresh_dir, monkeypatch):
    monkeypatch.setattr(lm.os, "access", lambda p, mode: "cache" not in str(p))
    d = lm.frontend_dir()
    assert "cache" not in str(d.parent) and (d / "index.html").is_file() and (d / "plotly.min.js").is_file()


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
    assert '<script src="plotly.min.js"></script>' in page  # the copy beside it, never a CDN
    assert "http://" not in page and "https://" not in page
    assert "points: []" in page  # a selection goes back as boxes and lassos, never as its points


def test_a_link_in_the_temporary_folder_is_never_served_from(fresh_dir, monkeypatch):
    import tempfile

    tmp = fresh_dir / "tmp"
    (tmp / "elsewhere").mkdir(parents=True)
    (tmp / f"hfnet-{os.getuid()}").symlink_to(tmp / "elsewhere")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(lm.os, "access", lambda p, mode: "cache" not in str(p))
    with pytest.raises(OSError, match="HFNET_CACHE_DIR"):
        lm.frontend_dir()
    assert not list((tmp / "elsewhere").iterdir())  # nothing written through the link
