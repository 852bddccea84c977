"""Gate maps page through AppTest: the player over grey frames, locality and flags per layer, the
backwards clip side by side, layer / pair in the selection, non-HF models."""

from __future__ import annotations

import numpy as np
import pytest

from _app_fixtures import (app_env, assert_ok, choices, demo_dir, new_app, page_from_link, player_spec,  # noqa: F401
                           plotly_array, plotly_specs, selection, texts, titled_spec)

pytestmark = pytest.mark.usefixtures("app_env")
N_BLOCKS, PAIRS = 10, 7  # BNInception has 10 HF layers (3a..5b); 8 frames -> 7 pairs


def _gate_page(**query):
    return page_from_link("gate_maps", **query)


def test_default_page():
    at = _gate_page()
    assert any(t.startswith("Gate maps") for t in (m.lstrip("# ") for m in texts(at, "markdown")))
    player = player_spec(at)
    assert len(player["frames"]) == PAIRS
    images = [t for t in player["data"] if t["type"] == "image"]
    heat = [t for t in player["data"] if t["type"] == "heatmap"]
    assert len(images) == 1 and len(heat) == 1  # one panel: the chosen layer over its (grey) frame
    assert heat[0]["zmin"] == -1 and heat[0]["zmax"] == 1 and heat[0]["opacity"] < 0.01  # values for hover
    assert player["layout"]["updatemenus"][0]["font"]["size"] >= 18  # a ▶ one can hit
    from app.loaders import predict
    from hfnet_core.analysis.gates import most_local_layer

    sel = selection(at)
    pred_layer = choices(at)["layer"]
    assert pred_layer == most_local_layer(predict(sel.a, sel.clip).gates)  # the default: the most local layer
    pills = at.button_group[0]
    assert pills.value == pred_layer and len(pills.options) == N_BLOCKS
    locality = titled_spec(at, "How local")
    assert len(locality["data"]) == 1 and len(locality["data"][0]["y"]) == N_BLOCKS
    summary = next(s for s in plotly_specs(at) if any(t.get("name") == "averaging (G > 0)" for t in s["data"]))
    assert [t["name"] for t in summary["data"]][:2] == ["averaging (G > 0)", "differencing (G < 0)"]
    def grids():
        return [s for s in plotly_specs(at) if not s.get("frames")
                and sum(t["type"] == "heatmap" for t in s["data"]) == N_BLOCKS * PAIRS]

    assert not grids()  # every map at once only on request
    at.toggle(key="gate_grid_on").set_value(True).run()
    assert len(grids()) == 1 and sum(t["type"] == "image" for t in grids()[0]["data"]) == N_BLOCKS * PAIRS
    assert at.query_params["layer"] == pred_layer


def test_overlay_is_grey_under_the_gates():
    """The frame under a gate map is desaturated: where the gate is ~0, the pixel is grey (R = G = B)."""
    import base64
    import io

    from PIL import Image

    at = _gate_page()
    player = player_spec(at)
    img = next(t for t in player["data"] if t["type"] == "image")
    heat = np.asarray(next(t for t in player["data"] if t["type"] == "heatmap")["z"], dtype=float)
    rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(img["source"].split(",", 1)[1]))).convert("RGB"),
                     dtype=float)
    # the colourful demo frame: any colour left in the image is the gate's (blue or red), never the content's
    chroma = rgb.max(axis=2) - rgb.min(axis=2)
    quiet = np.abs(heat) < 0.02
    if quiet.any():
        cell = (rgb.shape[0] // heat.shape[0], rgb.shape[1] // heat.shape[1])
        ys, xs = np.nonzero(quiet)
        patch = chroma[ys[0] * cell[0]:(ys[0] + 1) * cell[0], xs[0] * cell[1]:(xs[0] + 1) * cell[1]]
        assert patch.mean() < 20
    blue_or_red = (rgb[..., 2] - rgb[..., 1] > 0) | (rgb[..., 0] - rgb[..., 1] > 0)
    green = (rgb[..., 1] - np.maximum(rgb[..., 0], rgb[..., 2])) > 12  # content colour a gate never makes
    assert blue_or_red.mean() > 0.2 and green.mean() < 0.01


def test_layer_pair_and_controls():
    at = _gate_page()
    at.button_group[0].set_value("inception_3b").run()
    assert_ok(at)
    assert choices(at)["layer"] == "inception_3b" and at.query_params["layer"] == "inception_3b"
    assert "layer 3b" in player_spec(at)["layout"]["annotations"][0]["text"]
    at.select_slider(key="w_pair").set_value(4).run()
    assert_ok(at)
    assert player_spec(at)["layout"]["sliders"][0]["active"] == 4 and at.query_params["pair"] == "4"
    before = player_spec(at)["data"][0]["source"]
    at.slider(key="gate_opacity").set_value(0.3).run()
    assert player_spec(at)["data"][0]["source"] != before
    at.toggle(key="gate_smooth").set_value(False).run()
    assert_ok(at)


def test_layer_and_pair_from_the_url():
    at = _gate_page(layer="4a", pair="2")  # a short block name in a link works too
    assert choices(at)["layer"] == "inception_4a" and at.button_group[0].value == "inception_4a"
    assert player_spec(at)["layout"]["sliders"][0]["active"] == 2


def test_backwards_side_by_side():
    """Reversal on: a second panel shows the gate computed on the backwards clip for the same frame pair,
    and a difference matrix compares forward and backwards on the same pairs."""
    at = _gate_page(rev="1")
    assert at.toggle(key="w_reverse").value is True
    player = player_spec(at)
    titles = [a["text"] for a in player["layout"]["annotations"]]
    assert any(t.endswith("· forward") for t in titles) and any(t.endswith("· backwards") for t in titles)
    assert sum(t["type"] == "image" for t in player["data"]) == 2
    assert player["layout"]["sliders"][0]["steps"][0]["label"] == "0↔1"
    diff = titled_spec(at, "Forward − backwards")
    assert plotly_array(diff["data"][0]["z"]).shape == (N_BLOCKS, PAIRS)
    assert len(titled_spec(at, "How local")["data"]) == 2  # forward and backwards locality
    assert any("backwards:" in m for m in texts(at, "markdown"))


def test_backwards_maps_are_the_reversed_clips_gates_on_the_same_pair():
    """The backwards panel of pair t is G of the reversed input at pair T-2-t (the same two frames)."""
    from app.figures import backward_aligned
    from app.loaders import predict

    at = _gate_page(rev="1")
    sel = selection(at)
    pb = predict(sel.a, sel.clip, reverse=True)
    aligned = backward_aligned(pb.gates)
    raw = pb.gates["inception_3a"]
    np.testing.assert_array_equal(aligned["inception_3a"][0], raw[PAIRS - 1])
    np.testing.assert_array_equal(aligned["inception_3a"][PAIRS - 1], raw[0])


def test_fixed_layers_are_flagged():
    """A layer whose gate is ~+1 everywhere is flagged on its pill and in the warning."""
    from app import loaders
    from hfnet_core.analysis.inference import run_clip

    def pinned(ckpt, x, k=5):
        p = run_clip(ckpt, x, k)
        if "inception_3a" in p.gates:
            g = p.gates["inception_3a"].copy()
            g[:-1] = 0.99
            p.gates["inception_3a"] = g
        return p

    loaders._predict_cached.clear()
    import pytest as _pytest

    mp = _pytest.MonkeyPatch()
    mp.setattr(loaders, "run_clip", pinned)
    try:
        at = _gate_page()
        assert at.button_group[0].options[0] == "3a ⚑ fixed +1"
        warn = [w for w in texts(at, "warning") if "Not a local choice" in w]
        assert warn and "layer 3a" in warn[0] and "fixed one-frame transfer" in warn[0]
        ticks = titled_spec(at, "How local")["data"][0]["x"]
        assert ticks[0] == "3a ⚑"
    finally:
        mp.undo()
        loaders._predict_cached.clear()


def test_model_without_hf():
    at = new_app()
    at.query_params.update({"a": "tsn_demo.safetensors", "b": "none"})
    at.run()
    at.switch_page("views/gate_maps.py").run()
    assert_ok(at)
    assert any("has no HF modules" in i for i in texts(at, "info"))
    assert not plotly_specs(at)


def test_two_hf_models_can_be_picked():
    at = new_app()
    at.query_params["b"] = "hf_tsn_demo.safetensors"
    at.run()
    at.switch_page("views/gate_maps.py").run()
    assert_ok(at)
    radio = at.radio(key="w_gate_model")
    assert radio.options == ["A · hf_tsn_demo", "B · hf_tsn_demo"]
    radio.set_value("B").run()  # the value is the slot; the label names the model
    assert_ok(at)
    assert any(m.startswith("**B · hf_tsn_demo** on") for m in texts(at, "markdown"))
    assert at.query_params["gate"] == "B"
