"""hfnet_core.analysis.exports: predictions, gates and attributions as CSV/JSON/NPZ; figures as PNG/SVG."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from hfnet_core.analysis import exports
from hfnet_core.analysis.figure_export import figure_engine, render_fallback, stamp_figure
from hfnet_core.analysis.gates import gate_locality
from hfnet_core.analysis.inference import ClipPrediction

CLASSES = ["left to right", "right to left", "still", "shaking"]


def _pred(logits: list[float], classes: list[str] = CLASSES) -> ClipPrediction:
    lg = np.asarray(logits, np.float32)
    probs = np.exp(lg - lg.max())
    probs = (probs / probs.sum()).astype(np.float32)
    order = list(np.argsort(-probs, kind="stable"))
    return ClipPrediction(list(classes), lg, probs, [int(i) for i in order], [classes[i] for i in order],
                          [float(probs[i]) for i in order], {}, np.zeros(4, np.float32), np.zeros((2, 4), np.float32))


def _records():
    a = _pred([3.0, 1.0, 0.0, -1.0])  # top-1 "left to right"
    b = _pred([0.0, 2.0, 1.0, -2.0])  # top-1 "right to left"
    fwd = exports.prediction_record("clip.mp4", {"hf": a, "tsn": b}, true_label="left to right",
                                    true_label_source="file name", k=3)
    rev = exports.prediction_record("clip.mp4", {"hf": b, "tsn": b}, true_label="right to left",
                                    true_label_source="reversed-pair map", direction="reversed", k=3)
    return a, b, [fwd, rev]


SETTINGS = {"top_k": 3, "reverse": True}
MODELS = [{"name": "hf", "sha256": "ab" * 32, "class_names": CLASSES},
          {"name": "tsn", "sha256": "cd" * 32, "class_names": CLASSES}]


def test_prediction_record_values():
    a, b, (fwd, rev) = _records()
    hf, tsn = fwd["models"]
    assert [t["class"] for t in hf["top_k"]] == ["left to right", "right to left", "still"]
    assert hf["top_k"][0]["prob"] == pytest.approx(float(a.probs[0]))
    assert hf["top_k"][1]["logit"] == 1.0 and hf["correct"] is True and hf["true_rank"] == 1
    assert tsn["correct"] is False and tsn["true_rank"] == 3  # probs: right > still > left
    assert tsn["true_prob"] == pytest.approx(float(b.probs[0]))
    assert fwd["agreement"]["top1_all_agree"] is False
    pair = fwd["agreement"]["pairs"][0]
    assert (pair["a"], pair["b"], pair["top1_agree"], pair["topk_overlap"]) == ("hf", "tsn", False, 3)
    assert pair["same_classes"] and pair["js_divergence"] > 0
    assert rev["agreement"]["top1_all_agree"] is True and rev["agreement"]["pairs"][0]["js_divergence"] == 0.0
    unknown = exports.prediction_record("x", {"hf": a}, true_label=None)
    assert unknown["models"][0]["correct"] is None and unknown["agreement"]["top1_all_agree"] is None
    foreign = exports.prediction_record("x", {"hf": a}, true_label="not a class of the model")
    assert foreign["models"][0]["correct"] is None and foreign["models"][0]["true_rank"] is None


def test_agreement_overlap_and_disjoint():
    one_hot_a = _pred([50.0, 0, 0, 0])
    one_hot_b = _pred([0, 0, 0, 50.0])
    ag = exports.agreement({"a": one_hot_a, "b": one_hot_b}, k=1)
    assert ag["pairs"][0]["topk_overlap"] == 0 and ag["pairs"][0]["js_divergence"] == pytest.approx(1.0, abs=1e-6)
    other = _pred([1.0, 0, 0, 0], classes=["w", "x", "y", "z"])
    ag = exports.agreement({"a": one_hot_a, "b": other}, k=4)
    assert ag["pairs"][0]["same_classes"] is False and ag["pairs"][0]["js_divergence"] is None
    assert ag["pairs"][0]["topk_overlap"] == 0


def test_reversal_comparison():
    a, b, _ = _records()
    c = exports.reversal_comparison({"hf": a, "tsn": b}, {"hf": b, "tsn": b})
    assert c["tsn"]["max_abs_logit_diff"] == 0.0 and not c["tsn"]["top1_changed"]
    assert c["hf"]["max_abs_logit_diff"] == pytest.approx(3.0) and c["hf"]["top1_changed"]


def test_predictions_json_round_trip():
    _, _, recs = _records()
    doc = json.loads(exports.predictions_json(recs, MODELS, SETTINGS, [{"path": "bad.mp4", "reason": "corrupt"}]))
    assert doc["format"] == "hfnet-predictions" and doc["clip"] == "clip.mp4"
    assert [m["name"] for m in doc["models"]] == ["hf", "tsn"] and doc["settings"] == SETTINGS
    assert doc["records"] == json.loads(json.dumps(recs))
    assert doc["counts"] == {"clips": 1, "records": 2, "skipped": 1}


def test_predictions_csv_round_trip():
    _, _, recs = _records()
    rows = list(csv.DictReader(io.StringIO(exports.predictions_csv(recs, SETTINGS).decode())))
    assert len(rows) == 2 * 2 * 3 and list(rows[0]) == list(exports.PREDICTION_CSV_COLUMNS)
    i = 0
    for r in recs:
        for m in r["models"]:
            for t in m["top_k"]:
                row = rows[i]
                i += 1
                assert (row["clip"], row["direction"], row["model"], row["class"]) == (
                    "clip.mp4", r["direction"], m["model"], t["class"])
                assert float(row["prob"]) == t["prob"] and float(row["logit"]) == t["logit"]  # repr: exact
                assert row["correct"] == str(m["correct"]) and row["settings"] == "top_k=3;reverse=True"
                assert row["top1_all_agree"] == str(r["agreement"]["top1_all_agree"])


def test_predictions_npz_round_trip():
    a, b, recs = _records()
    with np.load(io.BytesIO(exports.predictions_npz(recs, MODELS, SETTINGS)), allow_pickle=False) as z:
        assert list(z["model_names"]) == ["hf", "tsn"] and list(z["directions"]) == ["forward", "reversed"]
        np.testing.assert_array_equal(z["logits_0"], np.stack([a.logits, b.logits]))
        np.testing.assert_array_equal(z["topk_indices_1"][0], [1, 2, 0])
        assert list(z["class_names_0"]) == CLASSES and list(z["true_labels"]) == ["left to right", "right to left"]
        meta = json.loads(str(z["metadata"]))
    assert meta["clip"] == "clip.mp4" and meta["settings"] == SETTINGS and len(meta["agreement"]) == 2
    assert "class_names" not in meta["models"][0]
    slim = [exports.prediction_record("c", {"hf": a}, include_logits=False)]
    assert "logits" not in slim[0]["models"][0]
    with np.load(io.BytesIO(exports.predictions_npz(slim, MODELS[:1])), allow_pickle=False) as z:
        assert np.isnan(z["logits_0"]).all() and z["logits_0"].shape == (1, 4)


def _gates():
    rng = np.random.default_rng(0)
    g = {"inception_3a": rng.uniform(-1, 1, (4, 3, 3)).astype(np.float32),
         "inception_4e": np.ones((4, 2, 2), np.float32)}
    for a in g.values():
        a[-1] = 0
    return g


def test_gates_round_trip():
    g = _gates()
    doc = json.loads(exports.gates_json(g, "clip.mp4", "hf", {"direction": "forward"}))
    assert doc["format"] == "hfnet-gates" and doc["clip"] == "clip.mp4" and doc["models"] == [{"name": "hf"}]
    rows = gate_locality(g)
    for layer, row in zip(doc["layers"], rows):
        np.testing.assert_array_equal(np.asarray(layer["maps"], np.float32), g[row["block"]][:-1])
        assert layer["behaviour"] == row["behaviour"] and layer["locality"] == pytest.approx(row["locality"])
    with np.load(io.BytesIO(exports.gates_npz(g, "clip.mp4", "hf")), allow_pickle=False) as z:
        assert list(z["blocks"]) == list(g)
        for b, a in g.items():
            np.testing.assert_array_equal(z[f"gate/{b}"], a)
        meta = json.loads(str(z["metadata"]))
    assert meta["clip"] == "clip.mp4" and [r["behaviour"] for r in meta["layers"]] == [r["behaviour"] for r in rows]
    long = list(csv.DictReader(io.StringIO(exports.gates_csv(g, "clip.mp4", "hf").decode())))
    assert len(long) == 3 * 9 + 3 * 4
    back = np.zeros((3, 3, 3), np.float32)
    for r in long:
        if r["block"] == "inception_3a":
            back[int(r["pair"]), int(r["y"]), int(r["x"])] = float(r["gate"])
    np.testing.assert_array_equal(back, g["inception_3a"][:-1])
    summary = list(csv.DictReader(io.StringIO(exports.gate_summary_csv(g, "clip.mp4", "hf").decode())))
    assert [s["behaviour"] for s in summary] == [r["behaviour"] for r in rows] and summary[1]["fixed"] == "True"
    assert summary[0]["clip"] == "clip.mp4" and summary[0]["model"] == "hf"


def test_attributions_round_trip():
    rng = np.random.default_rng(2)
    maps = {"hf": rng.random((2, 4, 5)).astype(np.float32), "tsn": rng.random((2, 4, 5)).astype(np.float32)}
    targets = {"hf": "left to right", "tsn": "still"}
    doc = json.loads(exports.attributions_json(maps, "clip.mp4", "saliency", targets, {"steps": 16}))
    assert doc["method"] == "saliency" and doc["settings"] == {"steps": 16, "method": "saliency"}
    for entry in doc["attributions"]:
        np.testing.assert_array_equal(np.asarray(entry["maps"], np.float32), maps[entry["model"]])
        assert entry["target"] == targets[entry["model"]]
    with np.load(io.BytesIO(exports.attributions_npz(maps, "clip.mp4", "saliency", targets)), allow_pickle=False) as z:
        np.testing.assert_array_equal(z["attr/tsn"], maps["tsn"])
        assert list(z["targets"]) == ["left to right", "still"]
        assert json.loads(str(z["metadata"]))["clip"] == "clip.mp4"
    rows = list(csv.DictReader(io.StringIO(exports.attributions_csv(maps, "clip.mp4", "ig", targets).decode())))
    assert len(rows) == 2 * 2 * 4 * 5
    r = next(r for r in rows if r["model"] == "tsn" and (r["frame"], r["y"], r["x"]) == ("1", "3", "4"))
    assert float(r["value"]) == float(maps["tsn"][1, 3, 4]) and r["target"] == "still" and r["method"] == "ig"


def test_write_export_is_atomic(tmp_path):
    out = exports.write_export(tmp_path / "sub" / "p.json", b"{}\n")
    assert out.read_bytes() == b"{}\n" and [p.name for p in out.parent.iterdir()] == ["p.json"]


# --- figures ----------------------------------------------------------------------------------------

def _figure():
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2)
    fig.add_heatmap(z=np.linspace(-1, 1, 12).reshape(3, 4), zmin=-1, zmax=1, colorscale="RdBu", row=1, col=1)
    fig.add_bar(x=[0.7, 0.2], y=["left to right", "still"], orientation="h", row=1, col=2, name="A")
    fig.add_trace(go.Scatter(x=[0, 1, 2], y=[0.1, 0.5, 0.2], name="mean G"), row=1, col=2)
    return fig


CLIP = "00_moving_sth_from_left_to_right.mp4"
NAMES = ["hf_tsn_demo", "tsn_demo"]


def _check_png(data: bytes):
    from PIL import Image

    im = Image.open(io.BytesIO(data))
    im.load()
    assert im.format == "PNG" and im.width > 100
    assert CLIP in im.text["Description"] and all(n in im.text["Description"] for n in NAMES)
    meta = json.loads(im.text["hfnet"])
    assert meta["clip"] == CLIP and meta["models"] == NAMES and meta["settings"] == {"layer": "4d"}
    strip = np.asarray(im.convert("RGB"))[-10:]
    assert (strip < 200).any()  # the provenance line is drawn under the plot
    return im


def _check_svg(data: bytes):
    root = ET.fromstring(data)
    assert root.tag.endswith("svg")
    text = " ".join(t.text or "" for t in root.iter() if t.tag.endswith("text"))
    assert CLIP in text and all(n in text for n in NAMES) and "layer=4d" in text
    meta = next(e for e in root.iter() if e.tag.endswith("hfnet"))
    assert json.loads(meta.text)["clip"] == CLIP
    assert any(e.tag.endswith("title") and CLIP in (e.text or "") for e in root)


def test_fallback_figures():
    png = exports.figure_png(_figure(), CLIP, NAMES, {"layer": "4d"}, width=600, height=300, scale=1,
                             engine="fallback")
    im = _check_png(png)
    assert im.size == (600, 300 + 22)
    _check_svg(exports.figure_svg(_figure(), CLIP, NAMES, {"layer": "4d"}, engine="fallback"))


def test_fallback_draws_the_heatmap_colours():
    import plotly.graph_objects as go
    from PIL import Image

    fig = go.Figure(go.Heatmap(z=[[-1, 1]], zmin=-1, zmax=1, colorscale=[[0, "#ff0000"], [1, "#0000ff"]]))
    fig.update_layout(margin=dict(l=0, r=0, t=0, b=0), xaxis=dict(visible=False), yaxis=dict(visible=False))
    im = np.asarray(Image.open(io.BytesIO(render_fallback(fig, "png", 200, 100, 1))).convert("RGB"))
    assert tuple(im[50, 40]) == (255, 0, 0) and tuple(im[50, 160]) == (0, 0, 255)


def test_stamp_keeps_the_figure_and_names_it():
    fig = _figure()
    d = stamp_figure(fig, CLIP, NAMES)
    assert CLIP in d["layout"]["title"]["text"] and len(d["data"]) == 3
    assert fig.layout.title.text is None  # the caller's figure is not touched


@pytest.mark.skipif(figure_engine() != "kaleido", reason="kaleido or a Chrome/Chromium is not available")
def test_kaleido_figures():
    png = exports.figure_png(_figure(), CLIP, NAMES, {"layer": "4d"}, width=600, height=300, scale=1,
                             engine="kaleido")
    assert _check_png(png).size == (600, 322)
    svg = exports.figure_svg(_figure(), CLIP, NAMES, {"layer": "4d"}, width=600, height=300, engine="kaleido")
    _check_svg(svg)
    assert b"main-svg" in svg  # Plotly's own renderer, not the fallback
