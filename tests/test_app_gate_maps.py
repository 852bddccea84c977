"""Gate maps page through AppTest: layer summary, maps over the frames, fragment controls, non-HF models."""

from __future__ import annotations

import pytest

from _app_fixtures import app_env, assert_ok, demo_dir, new_app, plotly_specs, texts  # noqa: F401

pytestmark = pytest.mark.usefixtures("app_env")
N_BLOCKS, PAIRS = 10, 7  # BNInception has 10 HF layers (3a..5b); 8 frames -> 7 pairs


def _gate_page():
    at = new_app().run()
    at.switch_page("views/gate_maps.py").run()
    assert_ok(at)
    return at


def _by_kind(at):
    specs = plotly_specs(at)
    anim = [s for s in specs if s.get("frames")]
    grid = [s for s in specs if not s.get("frames") and sum(t["type"] == "heatmap" for t in s["data"]) > N_BLOCKS]
    return specs, anim, grid


def test_default_page():
    at = _gate_page()
    assert at.title[0].value.endswith("Gate maps")
    assert any("averaging" in m and "differencing" in m and "where the object is" in m for m in texts(at, "markdown"))
    specs, anim, grid = _by_kind(at)
    assert len(specs) == 4  # summary, layer x pair matrix, animation, grid
    assert len(anim) == 1 and len(anim[0]["frames"]) == PAIRS
    heat = [t for t in grid[0]["data"] if t["type"] == "heatmap"]
    assert len(heat) == N_BLOCKS * PAIRS
    assert all(t["zmin"] == -1 and t["zmax"] == 1 for t in heat)
    assert sum(t["type"] == "image" for t in grid[0]["data"]) == N_BLOCKS * PAIRS  # maps over the frames
    summary = specs[0]
    assert [t["name"] for t in summary["data"]][:2] == ["averaging (G > 0)", "differencing (G < 0)"]


def test_controls_change_the_maps():
    at = _gate_page()
    at.slider(key="gate_opacity").set_value(1.0).run()
    assert_ok(at)
    _, anim, grid = _by_kind(at)
    assert not any(t["type"] == "image" for t in grid[0]["data"])  # opaque maps: no frames underneath
    at.slider(key="gate_opacity").set_value(0.3).run()
    _, _, grid = _by_kind(at)
    assert {t["opacity"] for t in grid[0]["data"] if t["type"] == "heatmap"} == {0.3}
    at.multiselect(key="gate_layers").set_value(["inception_3a", "inception_4e"]).run()
    assert_ok(at)
    specs = plotly_specs(at)
    grid = [s for s in specs if not s.get("frames") and any(t["type"] == "image" for t in s["data"])]
    assert sum(t["type"] == "heatmap" for t in grid[0]["data"]) == 2 * PAIRS
    at.toggle(key="gate_smooth").set_value(False).run()
    _, anim, _ = _by_kind(at)
    assert all(t.get("zsmooth") in (False, None) for t in anim[0]["data"] if t["type"] == "heatmap")


def test_model_without_hf():
    at = new_app()
    at.session_state["hf_model_A_choice"] = "tsn_demo.safetensors"
    at.session_state["hf_model_B_choice"] = "(none)"
    at.run()
    at.switch_page("views/gate_maps.py").run()
    assert_ok(at)
    assert any("has no HF modules" in i for i in texts(at, "info"))
    assert not plotly_specs(at)


def test_two_hf_models_can_be_picked():
    at = new_app()
    at.session_state["hf_model_B_choice"] = "hf_tsn_demo.safetensors"
    at.run()
    at.switch_page("views/gate_maps.py").run()
    assert_ok(at)
    radio = at.radio(key="gate_model")
    assert radio.options == ["A · hf_tsn_demo", "B · hf_tsn_demo"]
    radio.set_value("B · hf_tsn_demo").run()
    assert_ok(at)
    assert any("through **B · hf_tsn_demo**" in m for m in texts(at, "markdown"))
