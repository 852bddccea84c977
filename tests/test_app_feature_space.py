"""Feature space page (AppTest): loads, plots both models from cached projections, widgets act, selection
is shared between the plots and opens clips in the Clip lab."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from _analysis_fixtures import (  # noqa: F401 - fixtures
    analysis_dir,
    analysis_env,
    full_app,
    make_mismatch_dir,
    no_exceptions,
    page,
)
from app.analysis_figures import selected_clip_ids
from hfnet_core.analysis import embeddings as emb
from hfnet_core.eval_bundle import EvalBundle


def specs(at) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titles(at) -> list[str]:
    return [s["layout"]["title"]["text"] for s in specs(at)]


@pytest.fixture()
def no_projection_compute(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the page computed a projection although it is cached")

    monkeypatch.setattr(emb, "compute_projection", boom)


def test_default_run_draws_both_models_from_the_cache(analysis_env, no_projection_compute):
    at = page("feature_space").run()
    no_exceptions(at)
    assert not at.error
    assert titles(at) == ["A · hf_tsn_demo: t-SNE of 64 clips", "B · tsn_demo: t-SNE of 64 clips"]
    assert any("64 clips matched by id (64 in A, 64 in B)" in c.value for c in at.caption)
    seps = [c.value for c in at.caption if "silhouette" in c.value]
    assert len(seps) == 2  # A's features are the tight clusters of the fixture
    a_sep, b_sep = (float(v.split("**")[1]) for v in seps)
    assert a_sep > b_sep
    spec = specs(at)[0]
    assert spec["data"][0]["customdata"][0][1].startswith("synth/test/")
    assert [t["name"] for t in specs(at)[1]["data"]][-1] == "✗ B is wrong (23)"
    assert "B: " in spec["data"][0]["hovertext"][0] and "true: " in spec["data"][0]["hovertext"][0]
    assert not [i for i in at.info if "UMAP" in i.value]


def test_widgets_change_the_plots(analysis_env, no_projection_compute):
    at = page("feature_space").run()
    at.radio(key="fs_method").set_value("umap").run()
    no_exceptions(at)
    assert titles(at)[0] == "A · hf_tsn_demo: UMAP of 64 clips"

    def class_traces():
        return [len(t["customdata"]) for t in specs(at)[1]["data"] if not t["name"].startswith("✗")]

    by_true = class_traces()
    at.radio(key="fs_colour").set_value("pred").run()
    by_pred = class_traces()
    assert by_true == [4] * 16 and by_pred != by_true  # B's mistakes move clips to other colours

    at.checkbox(key="fs_restrict").check().run()
    no_exceptions(at)
    assert titles(at)[0] == "A · hf_tsn_demo: UMAP of 40 clips"
    assert any(c.value.startswith("10 most-improved classes (40 clips)") for c in at.caption)
    at.checkbox(key="fs_reproject").check().run()  # the subset's own projection (cached by the fixture)
    no_exceptions(at)
    assert titles(at)[1] == "B · tsn_demo: UMAP of 40 clips"
    at.checkbox(key="fs_reproject").uncheck().run()
    at.number_input(key="fs_top_k").set_value(3).run()
    no_exceptions(at)
    assert titles(at)[0] == "A · hf_tsn_demo: UMAP of 12 clips"  # cut out of the whole-set projection


def test_a_selection_rings_the_same_clips_in_both_plots_and_lists_them(analysis_env):
    at = page("feature_space").run()
    assert any("Nothing selected" in c.value for c in at.caption)
    at.session_state["fs_selected"] = ["synth/test/000003", "synth/test/000019", "not/a/clip"]
    at.run()
    no_exceptions(at)
    assert at.subheader[0].value == "Selected clips (2)"
    for spec in specs(at):
        ring = spec["data"][-1]
        assert ring["name"] == "selected (2)"
        assert sorted(c[1] for c in ring["customdata"]) == ["synth/test/000003", "synth/test/000019"]
    table = at.dataframe[0].value
    assert list(table["clip id"]) == ["synth/test/000003", "synth/test/000019"]
    assert set(table.columns) == {"clip id", "true", "A predicts", "B predicts"}
    assert [b.label for b in at.button if b.label.startswith("Open")] == [
        "Open synth/test/000003 in Clip lab", "Open synth/test/000019 in Clip lab"]
    at.button(key="fs_clear").click().run()
    assert at.subheader[0].value == "Selected clips (0)"


def test_selection_events_are_read_from_customdata():
    event = {"selection": {"points": [{"customdata": [4, "synth/test/000004"], "point_index": 0},
                                      {"customdata": [9, "synth/test/000009"]},
                                      {"customdata": [4, "synth/test/000004"]}, {"x": 1}]}}
    assert selected_clip_ids(event) == ["synth/test/000004", "synth/test/000009"]
    assert selected_clip_ids(None) == [] and selected_clip_ids({"selection": {"points": []}}) == []


def test_open_in_clip_lab_from_the_full_app(analysis_env):
    at = full_app()
    at.switch_page("views/feature_space.py").run()
    no_exceptions(at)
    at.session_state["fs_selected"] = ["synth/test/000019"]
    at.run()
    at.button(key="fs_open_synth/test/000019").click().run()
    no_exceptions(at)
    assert at.session_state["_hf_choices"]["bundle_clip"]["clip_id"] == "synth/test/000019"
    assert at.session_state["_hf_choices"]["clip_source"] == "bundle"
    assert at.session_state["_hf_selection"].clip.name == "synth/test/000019"  # opened in Clip lab
    assert not [p for p in at.get("plotly_chart") if "t-SNE" in p.proto.spec]  # we left the page


def test_new_bundle_shows_tsne_now_and_computes_umap_in_the_background(tmp_path, monkeypatch, analysis_dir):
    """No cached projection: t-SNE is computed in the request, UMAP in the background thread."""
    d = tmp_path / "fresh"
    d.mkdir()
    for name in ("hf_tsn_demo", "tsn_demo"):
        (d / f"{name}.safetensors").write_bytes((analysis_dir / f"{name}.safetensors").read_bytes())
        b = EvalBundle.load(analysis_dir / f"{name}.test.npz")
        b.metadata["note"] = "fresh copy"  # another sha256: nothing cached
        b.save(d / f"{name}.test.npz")
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    release = threading.Event()
    calls = []

    def fake(features, method="tsne", seed=0, params=None):
        calls.append(method)
        if method == "umap":
            release.wait(60)  # a slow UMAP (JIT + fit)
        return np.asarray(features, dtype=np.float32)[:, :2].copy()

    monkeypatch.setattr(emb, "compute_projection", fake)
    at = page("feature_space")
    at.run()
    no_exceptions(at)
    assert titles(at)[0] == "A · hf_tsn_demo: t-SNE of 64 clips"
    assert calls.count("tsne") == 2
    at.radio(key="fs_method").set_value("umap").run()
    no_exceptions(at)
    assert any(i.value.startswith("UMAP is being computed") for i in at.info)
    assert titles(at)[0].endswith("t-SNE of 64 clips")  # t-SNE meanwhile
    release.set()
    deadline = time.time() + 60
    while any(emb.projection_status(d / f"{n}.test.npz", "umap").state != "ready"
              for n in ("hf_tsn_demo", "tsn_demo")) and time.time() < deadline:
        time.sleep(0.05)
    at.run()
    assert not [i for i in at.info if "UMAP" in i.value]
    assert titles(at)[0] == "A · hf_tsn_demo: UMAP of 64 clips"
    assert len(list(d.glob("*.proj-*.npz"))) == 2  # one projection set per bundle, holding both maps


def test_class_lists_in_another_order_still_plot_but_cannot_restrict(tmp_path, monkeypatch):
    d = make_mismatch_dir(tmp_path / "mismatch")
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    at = page("feature_space").run()
    no_exceptions(at)
    assert any("different order" in w.value for w in at.warning)
    assert at.checkbox(key="fs_restrict").disabled
    assert len(titles(at)) == 2


def test_one_model_alone_gets_its_own_plot(tmp_path, monkeypatch, analysis_dir, no_projection_compute):
    d = tmp_path / "alone"
    d.mkdir()
    for name in ("hf_tsn_demo.safetensors", "hf_tsn_demo.test.npz"):
        (d / name).write_bytes((analysis_dir / name).read_bytes())
    for f in analysis_dir.glob("hf_tsn_demo.test.proj-*"):
        (d / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = page("feature_space").run()
    no_exceptions(at)
    assert titles(at) == ["A · hf_tsn_demo: t-SNE of 64 clips"]
    assert at.checkbox(key="fs_restrict").disabled
    hover = specs(at)[0]["data"][0]["hovertext"][0]
    assert "A: " in hover and "B: " not in hover
