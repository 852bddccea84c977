"""GSM, TSM, HF-TRN and a model with two operator kinds in the explorer, end to end through AppTest: Gate maps
shows each operator's maps (GSM's two gates, TSM's neighbour share), a selector for several kinds, the plain
TSN's note; Clip lab and Attributions (Grad-CAM at ``gsm.*`` / ``tsm.*``) run them as model A / B.

The fixture folder (``_app_fixtures.make_operator_dir``) holds random demo-shaped checkpoints under the
names the shipped demo files will have (``gsm_demo``, ``tsm_demo``, ``hf_trn_demo``) plus ``tsm_hf_demo``
and ``tsn_demo``.
"""

from __future__ import annotations

import numpy as np
import pytest

from _app_fixtures import (assert_ok, choices, new_app, operator_dir, operator_env, plotly_array,  # noqa: F401
                           player_spec, plotly_specs, selection, texts, titled_spec)

pytestmark = pytest.mark.usefixtures("operator_env")
FRAMES = 8
GSM_PLACES = 10  # one convolution in each Inception block
TSM_SITES = 11  # conv2_3x3_reduce and the 10 Inception blocks


def _page(page: str, a: str, b: str = "none", **query):
    at = new_app()
    at.query_params.update({"a": f"{a}.safetensors", "b": b if b == "none" else f"{b}.safetensors", **query})
    at.run()
    at.switch_page(f"views/{page}.py").run()
    assert_ok(at)
    return at


def _heat(player: dict) -> list[dict]:
    return [t for t in player["data"] if t["type"] == "heatmap"]


def _pred(at, reverse: bool = False):
    from app.loaders import predict

    sel = selection(at)
    return predict(sel.a, sel.clip, reverse)


# --------------------------------------------------------------------------------------------------
# Gate maps: GSM


def test_gsm_shows_both_gates_of_a_place():
    from hfnet_core.analysis import operator_maps as om

    at = _page("gate_maps", "gsm_demo")
    pred = _pred(at)
    ops = om.of_kind(pred.operator_maps, "gsm")
    assert len(ops) == GSM_PLACES
    pills = at.button_group[0]
    assert len(pills.options) == GSM_PLACES and pills.options[0].startswith("3a_1x1")
    rows = om.gate_rows(ops, "gate_backward") + om.gate_rows(ops, "gate_forward")
    place = choices(at)["layer"]
    assert place == om.most_local_site(rows) and pills.value == place  # the default: the most local place
    player = player_spec(at)
    assert len(player["frames"]) == FRAMES  # per-frame maps: every frame, not T-1 pairs
    titles = [a["text"] for a in player["layout"]["annotations"]]
    short = om.site_short(place)
    assert titles == [f"{short} · backward shift", f"{short} · forward shift"]
    heat = _heat(player)
    assert len(heat) == 2 and sum(t["type"] == "image" for t in player["data"]) == 2  # both over grey frames
    t0 = player["layout"]["sliders"][0]["active"]
    np.testing.assert_allclose(np.asarray(heat[0]["z"]), np.round(ops[place].maps["gate_backward"][t0], 3), atol=1e-6)
    np.testing.assert_allclose(np.asarray(heat[1]["z"]), np.round(ops[place].maps["gate_forward"][t0], 3), atol=1e-6)
    assert "g = " in heat[0]["hovertemplate"] and "moves negated" in " ".join(heat[0]["colorbar"]["ticktext"])
    assert player["layout"]["sliders"][0]["currentvalue"]["prefix"] == "frame "
    said = " ".join(texts(at, "caption"))
    for sentence in next(iter(ops.values())).meanings.values():  # what the maps mean, from the operator
        assert sentence in said
    assert "subtracts" in said and "between a convolution and its BatchNorm" in said
    locality = titled_spec(at, "How local is each gate")
    assert [t["name"] for t in locality["data"]] == ["backward shift", "forward shift"]
    forward_locality = [r["locality"] if np.isfinite(r["locality"]) else 0 for r in rows[GSM_PLACES:]]
    np.testing.assert_allclose(plotly_array(locality["data"][1]["y"]), forward_locality, rtol=1e-5)
    means = [t for t in titled_spec(at, "Mean gate per place")["data"] if t.get("name") == "mean g, backward shift"]
    np.testing.assert_allclose(plotly_array(means[0]["y"]), [r["mean"] for r in rows[:GSM_PLACES]], rtol=1e-5)
    matrix = titled_spec(at, "mean gate per place and frame")
    assert [plotly_array(t["z"]).shape for t in matrix["data"]] == [(GSM_PLACES, FRAMES)] * 2
    assert at.query_params["layer"] == place
    assert any("has no HF modules" in i for i in texts(at, "info")) is False


def test_gsm_backwards_side_by_side():
    """Reversal on: one row per gate, left on the clip, right on the reversed clip at the same frame."""
    from hfnet_core.analysis import operator_maps as om

    at = _page("gate_maps", "gsm_demo", rev="1", layer="gsm.3b_1x1", pair="3")  # a short place in a link works
    assert choices(at)["layer"] == "gsm.inception_3b_1x1" and at.button_group[0].value == "gsm.inception_3b_1x1"
    player = player_spec(at)
    assert player["layout"]["sliders"][0]["active"] == 3
    titles = [a["text"] for a in player["layout"]["annotations"]]
    assert titles == ["backward shift · forward", "backward shift · backwards", "forward shift · forward",
                      "forward shift · backwards"]
    pb = _pred(at, reverse=True).operator_maps["gsm.inception_3b_1x1"]
    heat = _heat(player)
    # the backwards panel at frame 3 = the reversed clip's gate at its frame T-1-3 (the same source frame)
    np.testing.assert_allclose(np.asarray(heat[1]["z"]), np.round(pb.maps["gate_backward"][FRAMES - 1 - 3], 3),
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(heat[3]["z"]), np.round(pb.maps["gate_forward"][FRAMES - 1 - 3], 3),
                               atol=1e-6)
    diff = titled_spec(at, "Forward − backwards")
    assert [plotly_array(t["z"]).shape for t in diff["data"]] == [(GSM_PLACES, FRAMES)] * 2
    fwd = _pred(at).operator_maps
    expect = (om.frame_matrix(om.of_kind(fwd, "gsm"), "gate_forward")[1]
              - np.stack([m.mean(axis=(1, 2)) for m in om.backward_aligned(
                  om.of_kind(_pred(at, True).operator_maps, "gsm"), "gate_forward").values()]))
    np.testing.assert_allclose(plotly_array(diff["data"][1]["z"]), expect, atol=1e-5)
    assert any("later" in c for c in texts(at, "caption"))


def test_gsm_pick_a_place_and_a_frame():
    at = _page("gate_maps", "gsm_demo")
    at.button_group[0].set_value("gsm.inception_4c_1x1").run()
    assert_ok(at)
    assert choices(at)["layer"] == "gsm.inception_4c_1x1" and at.query_params["layer"] == "gsm.inception_4c_1x1"
    assert player_spec(at)["layout"]["annotations"][0]["text"] == "4c_1x1 · backward shift"
    at.select_slider(key="w_pair").set_value(7).run()  # the last frame: a pair index HF could not take
    assert_ok(at)
    assert player_spec(at)["layout"]["sliders"][0]["active"] == 7 and at.query_params["pair"] == "7"


# --------------------------------------------------------------------------------------------------
# Gate maps: TSM


def test_tsm_shows_what_the_shift_brings_in():
    from app.model_facts import tsm_channel_shares
    from hfnet_core.analysis import operator_maps as om

    at = _page("gate_maps", "tsm_demo")
    info = " ".join(texts(at, "info"))
    assert "TSM has no gate" in info and "2/8 of the channels" in info and "25%" in info
    assert "how much signal those channels carry" in info
    sel = selection(at)
    shares = tsm_channel_shares(sel.a.checkpoint)
    assert len(shares) == TSM_SITES and set(shares.values()) == {0.25}
    ops = om.of_kind(_pred(at).operator_maps, "tsm")
    rows = om.neighbour_rows(ops, shares)
    assert len(at.button_group[0].options) == TSM_SITES
    chart = titled_spec(at, "How much of each layer's features came from the neighbouring frames")
    bars = [t for t in chart["data"] if t["type"] == "bar"]
    assert len(bars) == 1
    np.testing.assert_allclose(bars[0]["y"], [r["mean_inner"] for r in rows], rtol=1e-6)
    ticks = [t for t in chart["data"] if t["type"] == "scatter"][0]
    assert ticks["y"] == [0.25] * TSM_SITES  # the fixed channel share beside each bar
    player = player_spec(at)
    heat = _heat(player)
    assert len(heat) == 1 and heat[0]["zmin"] == 0 and heat[0]["zmax"] == pytest.approx(0.5)
    site = choices(at)["layer"]
    assert site == max(rows, key=lambda r: r["spatial_std"])["label"]
    t0 = player["layout"]["sliders"][0]["active"]
    np.testing.assert_allclose(np.asarray(heat[0]["z"]), np.round(ops[site].maps["from_neighbours"][t0], 3), atol=1e-6)
    assert 0.0 <= np.asarray(heat[0]["z"]).min() and np.asarray(heat[0]["z"]).max() <= 1.0
    matrix = titled_spec(at, "share from the neighbours per site and frame")
    assert plotly_array(matrix["data"][0]["z"]).shape == (TSM_SITES, FRAMES)


def test_tsm_backwards():
    at = _page("gate_maps", "tsm_demo", rev="1")
    player = player_spec(at)
    assert [a["text"] for a in player["layout"]["annotations"]] == ["forward", "backwards"]
    site = choices(at)["layer"]
    pb = _pred(at, reverse=True).operator_maps[site].maps["from_neighbours"]
    t0 = player["layout"]["sliders"][0]["active"]
    np.testing.assert_allclose(np.asarray(_heat(player)[1]["z"]), np.round(pb[FRAMES - 1 - t0], 3), atol=1e-6)
    chart = titled_spec(at, "How much of each layer's features")
    assert [t["name"] for t in chart["data"] if t["type"] == "bar"] == [
        "features from neighbours (forward)", "features from neighbours (backwards)"]
    assert len(titled_spec(at, "share from the neighbours")["data"]) == 2


# --------------------------------------------------------------------------------------------------
# Gate maps: several kinds, several models, no operator


def test_several_operator_kinds_get_a_selector():
    at = _page("gate_maps", "tsm_hf_demo")
    radio = at.radio(key="gate_op")
    assert radio.options == ["TSM (temporal shift module, Lin et al. 2019)",
                             "HF (hierarchical feature aggregation, this paper)"]
    assert any("TSM has no gate" in i for i in texts(at, "info"))
    radio.set_value("hf").run()
    assert_ok(at)
    assert len(at.button_group[0].options) == 10 and not any("TSM has no gate" in i for i in texts(at, "info"))
    assert titled_spec(at, "How local")  # HF's own view
    assert choices(at)["layer"].startswith("inception_")
    radio = at.radio(key="gate_op")
    radio.set_value("tsm").run()
    assert_ok(at)
    assert choices(at)["layer"].startswith("tsm.")


def test_a_link_to_an_hf_layer_opens_the_hf_view():
    at = _page("gate_maps", "tsm_hf_demo", layer="4a")
    assert at.radio(key="gate_op").value == "hf" and choices(at)["layer"] == "inception_4a"


def test_gsm_and_tsm_models_side_by_side():
    at = new_app()
    at.query_params.update({"a": "gsm_demo.safetensors", "b": "tsm_demo.safetensors"})
    at.run()
    at.switch_page("views/gate_maps.py").run()
    assert_ok(at)
    radio = at.radio(key="w_gate_model")
    assert radio.options == ["A · gsm_demo", "B · tsm_demo"]
    assert player_spec(at)["layout"]["annotations"][0]["text"].endswith("backward shift")
    radio.set_value("B").run()
    assert_ok(at)
    assert any("TSM has no gate" in i for i in texts(at, "info")) and choices(at)["layer"].startswith("tsm.")


def test_hf_trn_and_plain_models():
    at = _page("gate_maps", "hf_trn_demo", b="tsn_demo")
    assert len(at.button_group[0].options) == 10 and titled_spec(at, "How local")
    assert any("B · tsn_demo is a plain TSN: no temporal operator" in m for m in texts(at, "markdown"))
    at = _page("gate_maps", "tsn_demo")
    info = " ".join(texts(at, "info"))
    assert "has no HF modules and no other temporal operator (GSM, TSM)" in info and "final average" in info
    assert not plotly_specs(at)


# --------------------------------------------------------------------------------------------------
# Model cards


def test_model_cards_list_each_operator():
    from hfnet_core.complexity import count_flops

    at = _page("model_cards", "gsm_demo", "tsm_demo")
    g = _card_table(at, "GSM (gate-shift module, Sudhakaran et al. 2020)")
    t = _card_table(at, "TSM (temporal shift module, Lin et al. 2019)")
    assert g["sites"] == "10" and t["sites"] == "11"
    assert g["where"].startswith("between a convolution and its BatchNorm: 3a_1x1, 3b_1x1")
    assert t["where"].startswith("before conv2_3x3_reduce, 3a") and "2/8 = 25% of the channels" in t["options"]
    assert t["parameters"] == "0 (parameter-free)" and t["FLOPs"].startswith("0 (it moves data")
    sel = selection(at)
    f = count_flops(sel.a.checkpoint.model)
    share = sum(v for k, v in f["temporal_sites"].items() if k.startswith("gsm.")) / f["total"]
    assert g["FLOPs"].endswith(f"({share:.2%} of the clip)") and share > 0
    params = sum(p.numel() for p in sel.a.checkpoint.model.temporal_parameters())
    assert g["parameters"].startswith(f"{params:,} (")
    ops = next(d.value for d in at.dataframe if "params (published)" in d.value.columns)
    assert list(ops["model"]) == ["TSN (BN-Inception)", "GSM (BN-Inception)", "HF-TSN (BN-Inception)",
                                  "TSM (BN-Inception)", "TSM (ResNet-50)"]
    rows = {r["model"]: r for r in ops.to_dict("records")}
    assert rows["GSM (BN-Inception)"]["params (published)"] == "10.50M"
    assert rows["GSM (BN-Inception)"]["FLOPs (published)"] == "16.46G"
    assert rows["GSM (BN-Inception)"]["FLOPs (ours)"] == "16.46G" and rows["GSM (BN-Inception)"]["same digits"] == "✓"
    assert "A · gsm_demo (width ×0.25, 64 px, 8 frames, 16 classes)" == rows["GSM (BN-Inception)"]["loaded here"]
    assert "B · tsm_demo" in rows["TSM (BN-Inception)"]["loaded here"]
    assert rows["TSM (BN-Inception)"]["params (published)"] == "-"
    assert rows["TSN (BN-Inception)"]["loaded here"] == ""
    table_one = next(d.value for d in at.dataframe if "paper acc. %" in d.value.columns)
    assert not "".join(table_one["loaded here"])  # GSM / TSM are no Table I architecture


def _card_table(at, operator: str) -> dict[str, str]:
    """A card's operator table (rows: sites, where, options, parameters, FLOPs) for one operator column."""
    df = next(t.value for t in at.table if operator in t.value.columns)
    return dict(zip(df[""], df[operator]))


def test_model_cards_hf_trn_is_not_a_table_one_row():
    at = _page("model_cards", "hf_trn_demo", "tsm_hf_demo")
    table_one = next(d.value for d in at.dataframe if "paper acc. %" in d.value.columns)
    assert not "".join(table_one["loaded here"])  # Table I is TSN rows; an HF-TRN is not one of them
    headers = [tuple(t.value.columns) for t in at.table]
    assert ("", "TSM (temporal shift module, Lin et al. 2019)", "HF (hierarchical feature aggregation, this paper)") \
        in headers
    assert _card_table(at, "HF (hierarchical feature aggregation, this paper)")["options"].startswith(
        "conservative (paper)")


# --------------------------------------------------------------------------------------------------
# Clip lab and Attributions with GSM / TSM as A / B


def test_clip_lab_runs_gsm_and_tsm():
    at = _page("clip_lab", "gsm_demo", "tsm_demo", rev="1")
    md = " ".join(texts(at, "markdown"))
    assert "**A · gsm_demo** · forward" in md and "**B · tsm_demo** · backwards" in md
    assert len(plotly_specs(at)) >= 4  # both models, both directions
    assert "max |Δlogit|" in md + " ".join(texts(at, "caption"))


def test_grad_cam_at_operator_outputs():
    at = _page("attributions", "gsm_demo", "tsm_demo")
    la, lb = at.selectbox(key="at_layer_A"), at.selectbox(key="at_layer_B")
    assert "gsm.inception_3b_1x1" in la.options and "tsm.inception_4a" in lb.options
    la.set_value("gsm.inception_3b_1x1")
    lb.set_value("tsm.inception_4a").run()
    assert_ok(at)
    titles = [str((s["layout"].get("title") or {}).get("text", "")) for s in plotly_specs(at)]
    assert any("A · gsm_demo: Grad-CAM at gsm.inception_3b_1x1" in t for t in titles)
    assert any("B · tsm_demo: Grad-CAM at tsm.inception_4a" in t for t in titles)
    assert not texts(at, "error")


def test_where_a_plain_model_lets_frames_meet():
    from types import SimpleNamespace

    from app.model_facts import mixing_words

    def plain(consensus):
        model = SimpleNamespace(describe=lambda: {"temporal": []})
        return SimpleNamespace(config=SimpleNamespace(consensus=consensus), model=model)

    assert mixing_words(plain("avg")) == "the final average (a plain TSN)"
    assert mixing_words(plain("trn")).startswith("the relation head")
