"""What the download buttons hand out (app/downloads.py): the files exist, parse, and name their clip,
models and settings inside. The buttons build them on click, so the builders are called here directly,
on the selection of a real app run."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from _app_fixtures import app_env, assert_ok, demo_dir, new_app, selection  # noqa: F401

pytestmark = pytest.mark.usefixtures("app_env")


@pytest.fixture()
def reversed_run():
    at = new_app()
    at.query_params["rev"] = "1"
    at.run()
    assert_ok(at)
    return selection(at)


def _build(items, name_part: str) -> bytes:
    text, build, name = next(i for i in items if name_part in i[2] or name_part == i[0])
    data = build()
    return data.encode() if isinstance(data, str) else data


def test_prediction_files_name_clip_models_and_both_directions(reversed_run):
    from app.downloads import prediction_files
    from app.loaders import predict

    sel = reversed_run
    fwd = {m.slot: predict(m, sel.clip) for m in sel.models}
    bwd = {m.slot: predict(m, sel.clip, True) for m in sel.models}
    items = prediction_files(sel, fwd, bwd)
    assert [i[2].rsplit(".", 1)[1] for i in items] == ["csv", "json", "npz"]
    doc = json.loads(_build(items, ".json"))
    assert doc["clip"] == sel.clip.name and [m["name"] for m in doc["models"]] == ["A · hf_tsn_demo", "B · tsn_demo"]
    assert doc["settings"]["clip played"] == "backwards"
    directions = {r["direction"]: r for r in doc["records"]}
    assert directions["reversed"]["true_label"] == "Moving something from right to left"
    assert directions["forward"]["true_label"] == "Moving something from left to right"
    assert doc["reversal"][sel.clip.name]["B · tsn_demo"]["max_abs_logit_diff"] < 1e-4
    csv = _build(items, ".csv").decode()
    assert csv.splitlines()[0].startswith("clip,direction,true_label,model,rank")
    assert sum(1 for line in csv.splitlines()[1:] if ",reversed," in line) == 10  # 2 models x top-5
    z = np.load(io.BytesIO(_build(items, ".npz")), allow_pickle=False)
    assert list(z["model_names"]) == ["A · hf_tsn_demo", "B · tsn_demo"] and z["logits_0"].shape == (2, 16)


def test_gate_files(reversed_run):
    from app.downloads import gate_files
    from app.loaders import predict

    sel = reversed_run
    gates = predict(sel.a, sel.clip).gates
    items = gate_files(sel, sel.a, gates, {"direction": "forward"})
    doc = json.loads(_build(items, ".json"))
    assert doc["clip"] == sel.clip.name and doc["models"][0]["name"] == "A · hf_tsn_demo"
    assert doc["models"][0]["sha256"] == sel.a.checkpoint.sha256 and doc["settings"]["direction"] == "forward"
    assert [layer["block"] for layer in doc["layers"]] == list(gates)
    assert {"locality", "behaviour"} <= set(doc["layers"][0])
    z = np.load(io.BytesIO(_build(items, ".npz")), allow_pickle=False)
    np.testing.assert_array_equal(z["gate/inception_3a"], gates["inception_3a"])
    assert _build(items, "_layers.csv").decode().splitlines()[0].startswith("clip,model,block")


def test_attribution_files(reversed_run):
    from app.downloads import attribution_files

    sel = reversed_run
    maps = {"A · hf_tsn_demo": np.random.default_rng(0).random((8, 4, 4)).astype(np.float32)}
    items = attribution_files(sel, maps, "saliency", {"A · hf_tsn_demo": "Shaking something"})
    doc = json.loads(_build(items, ".json"))
    assert doc["method"] == "saliency" and doc["attributions"][0]["target"] == "Shaking something"
    assert doc["clip"] == sel.clip.name
    z = np.load(io.BytesIO(_build(items, ".npz")), allow_pickle=False)
    np.testing.assert_allclose(z["attr/A · hf_tsn_demo"], maps["A · hf_tsn_demo"])


def test_figure_files_name_clip_models_and_settings(reversed_run):
    """PNG / SVG / HTML of a figure say which clip, models and settings they show, inside the file."""
    from app import downloads
    from app.figures import top5_figure
    from app.loaders import predict

    sel = reversed_run
    fig = top5_figure(predict(sel.a, sel.clip, True), "top-5", sel.reversed_label)
    clip, models, settings = downloads.figure_context(sel, {"layer": "3a"})
    items = downloads._figure_items(fig, "fig", clip, models, settings)
    from hfnet_core.analysis import exports

    # the browser-free renderer (fast, deterministic); the buttons use kaleido when a browser is found
    png = exports.figure_png(fig, clip, models, settings, engine="fallback")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and sel.clip.name.encode() in png and b"A \xc2\xb7 hf_tsn_demo" in png
    svg = exports.figure_svg(fig, clip, models, settings, engine="fallback").decode()
    assert sel.clip.name in svg and "B · tsn_demo" in svg and "layer" in svg and "backwards" in svg
    html = _build(items, ".html").decode()
    assert f"<title>clip: {sel.clip.name} · models: A · hf_tsn_demo, B · tsn_demo · clip played=backwards" in html
    assert [i[0] for i in items] == ["PNG image", "SVG (vector)", "Interactive HTML (works offline)"]
