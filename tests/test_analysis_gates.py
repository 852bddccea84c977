"""hfnet_core.analysis.gates: summaries of HF gate maps, and the figures built from them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfnet_core.analysis.gates import gate_matrix, pair_gates, short_block_name, summarise_gates, upsample_gate


def _gates() -> dict[str, np.ndarray]:
    a = np.zeros((4, 2, 2), np.float32)
    a[0] = 0.5  # pair 0->1 averaging everywhere
    a[1] = -1.0  # pair 1->2 differencing everywhere
    a[2] = [[0.2, -0.2], [0.0, 0.005]]
    a[3] = 0.9  # the last frame: never counted (G-_{T-1} has no partner)
    return {"inception_3a": a, "inception_5b": np.full((4, 1, 1), -0.25, np.float32)}


def test_summary_values():
    rows = summarise_gates(_gates())
    assert [r["block"] for r in rows] == ["inception_3a", "inception_5b"]
    assert [r["short"] for r in rows] == ["3a", "5b"]
    r = rows[0]
    vals = np.concatenate([np.full(4, 0.5), np.full(4, -1.0), [0.2, -0.2, 0.0, 0.005]])
    assert r["mean"] == pytest.approx(vals.mean(), abs=1e-6)
    assert r["mean_abs"] == pytest.approx(np.abs(vals).mean(), abs=1e-6)
    assert r["share_averaging"] == pytest.approx(5 / 12)
    assert r["share_differencing"] == pytest.approx(5 / 12)
    assert r["share_neutral"] == pytest.approx(2 / 12)
    assert r["pairs"] == 3 and (r["height"], r["width"]) == (2, 2)
    assert (r["min"], r["max"]) == (-1.0, 0.5)  # 0.9 of the last frame is excluded
    assert rows[1]["share_differencing"] == 1.0 and rows[1]["mean"] == pytest.approx(-0.25)


def test_shares_sum_to_one():
    g = {"b": np.random.default_rng(0).uniform(-1, 1, (8, 5, 5))}
    r = summarise_gates(g)[0]
    assert r["share_averaging"] + r["share_differencing"] + r["share_neutral"] == pytest.approx(1.0)


def test_accepts_batched_tensors():
    t = torch.from_numpy(_gates()["inception_3a"])[None]
    assert pair_gates(t).shape == (3, 2, 2)
    with pytest.raises(ValueError, match="one clip"):
        pair_gates(torch.zeros(2, 4, 2, 2))
    with pytest.raises(ValueError):
        pair_gates(np.zeros((1, 2, 2)))


def test_matrix():
    names, m = gate_matrix(_gates())
    assert names == ["inception_3a", "inception_5b"] and m.shape == (2, 3)
    np.testing.assert_allclose(m[0], [0.5, -1.0, 0.00125], atol=1e-6)
    _, mabs = gate_matrix(_gates(), "mean_abs")
    np.testing.assert_allclose(mabs[0], [0.5, 1.0, 0.10125], atol=1e-6)
    assert gate_matrix({})[1].shape == (0, 0)


def test_upsample():
    g = np.array([[[-1.0, 1.0], [1.0, -1.0]]], np.float32)
    up = upsample_gate(g, 8)
    assert up.shape == (1, 8, 8)
    assert up.min() >= -1 and up.max() <= 1
    assert up[0, 0, 0] == pytest.approx(-1.0) and up[0, 0, 7] == pytest.approx(1.0)


def test_short_names():
    assert short_block_name("inception_4e") == "4e"
    assert short_block_name("layer2.1") == "layer2.1"


def test_gate_figures_build():
    """The Gate maps figures (plain dicts for speed) are valid Plotly figures with the fixed [-1, 1] range."""
    import plotly.graph_objects as go

    from app.figures import gate_animation_figure, gate_grid_figure, gate_matrix_figure, gate_summary_figure

    gates = _gates()
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    grid = gate_grid_figure(gates, frames, 0.5)
    fig = go.Figure(grid)  # validates
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 2 * 3 and all(h.zmin == -1 and h.zmax == 1 for h in heat)
    assert sum(t.type == "image" for t in fig.data) == 6
    anim = go.Figure(gate_animation_figure(gates, frames, 0.5, blocks=["inception_5b"]))
    assert len(anim.frames) == 3 and anim.layout.sliders[0].steps[2].label == "2→3"
    assert len(go.Figure(gate_grid_figure(gates, None)).data) == 6  # bare maps, no images
    gate_summary_figure(summarise_gates(gates))
    gate_matrix_figure(gates)


# --- locality and behaviour ---------------------------------------------------------------------------

from hfnet_core.analysis.gates import (  # noqa: E402
    AVERAGING_RGB, BEHAVIOURS, DIFFERENCING_RGB, gate_locality, gate_overlay, most_local_layer,
)


def _clip(pairs: list[np.ndarray]) -> np.ndarray:
    """Pair maps -> a (T, H, W) clip with the always-zero last frame appended."""
    p = np.stack(pairs).astype(np.float32)
    return np.concatenate([p, np.zeros((1, *p.shape[1:]), np.float32)])


def _row(g: np.ndarray) -> dict:
    return gate_locality({"inception_3a": g})[0]


def test_locality_known_values():
    ones = np.ones((4, 4))
    r = _row(_clip([ones, ones, ones]))
    assert r["locality"] == 0.0 and r["behaviour"] == "fixed_averaging" and r["fixed"]
    assert r["saturation"] == 1.0 and r["mean"] == 1.0

    r = _row(_clip([-ones, -ones]))
    assert r["behaviour"] == "fixed_differencing" and r["fixed"] and r["locality"] == 0.0

    checker = np.indices((4, 4)).sum(axis=0) % 2 * 2.0 - 1.0  # +1 / -1 alternating: std 1, mean |G| 1
    r = _row(_clip([checker, -checker]))
    assert r["locality"] == pytest.approx(1.0) and r["behaviour"] == "local" and not r["fixed"]
    assert r["mean"] == pytest.approx(0.0) and r["saturation"] == 1.0

    # {0, .8, .8, .8}: mean .6, std sqrt(.12) -> locality 1/sqrt(3)
    m = np.array([[0.0, 0.8], [0.8, 0.8]])
    r = _row(_clip([m, m]))
    assert r["locality"] == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    assert r["spatial_std"] == pytest.approx(np.sqrt(0.12), abs=1e-6)
    assert r["saturation"] == 0.0 and r["behaviour"] == "local"


def test_global_decisions_are_not_local():
    """Constant per pair but changing between pairs: a global choice, locality 0, 'uniform'."""
    r = _row(_clip([np.full((3, 3), 0.5), np.full((3, 3), -0.5)]))
    assert r["locality"] == 0.0 and r["behaviour"] == "uniform" and not r["fixed"]
    r = _row(_clip([np.full((3, 3), 0.5)]))
    assert r["behaviour"] == "uniform"


def test_inactive_and_degenerate_maps():
    r = _row(np.zeros((4, 3, 3), np.float32))
    assert np.isnan(r["locality"]) and r["behaviour"] == "inactive"
    small = np.random.default_rng(0).uniform(-0.04, 0.04, (5, 6, 6)).astype(np.float32)
    assert _row(small)["behaviour"] == "inactive"  # varies, but too weak to matter
    r = _row(np.full((4, 1, 1), 0.3, np.float32))
    assert np.isnan(r["locality"]) and r["behaviour"] == "uniform"  # one position cannot choose locally
    assert set(BEHAVIOURS) == {"local", "fixed_averaging", "fixed_differencing", "uniform", "inactive"}


def test_nearly_saturated_counts_as_fixed():
    """Mean G >= 0.9: within 0.1 of the all-(+1) map, whatever the small variation left."""
    rng = np.random.default_rng(1)
    g = np.clip(1.0 - np.abs(rng.normal(0, 0.08, (7, 8, 8))), -1, 1)
    r = _row(_clip(list(g)))
    assert r["mean"] >= 0.9 and r["behaviour"] == "fixed_averaging"
    r = _row(_clip(list(-g)))
    assert r["behaviour"] == "fixed_differencing"


def test_locality_of_batches_and_tensors():
    a = _clip([np.array([[0.0, 0.8], [0.8, 0.8]])] * 2)
    batch = np.stack([a, a])
    r = gate_locality({"b": torch.from_numpy(batch)})[0]
    assert r["pairs"] == 4 and r["locality"] == pytest.approx(1 / np.sqrt(3), abs=1e-6)
    assert r["height"] == 2 and r["width"] == 2


def test_most_local_layer():
    ones = np.ones((4, 4))
    checker = np.indices((4, 4)).sum(axis=0) % 2 * 2.0 - 1.0
    m = np.array([[0.0, 0.8], [0.8, 0.8]])
    gates = {"inception_3a": _clip([-ones]), "inception_3b": _clip([m]), "inception_4a": _clip([checker]),
             "inception_4e": _clip([ones])}
    assert most_local_layer(gates) == "inception_4a"
    assert most_local_layer({"x": _clip([ones])}) == "x"
    assert most_local_layer({}) is None


def test_demo_model_layers(tmp_path):
    """The shipped demo HF-TSN: 3a differences everywhere, 3c/4b/4e transfer everywhere (FINDINGS)."""
    from pathlib import Path

    from hfnet_core.analysis.clips import decode_video, model_input
    from hfnet_core.analysis.inference import run_clip
    from hfnet_core.checkpoint import load_checkpoint

    root = Path(__file__).resolve().parents[1]
    ck = load_checkpoint(root / "checkpoints" / "hf_tsn_demo.safetensors")
    frames, _ = decode_video(root / "checkpoints" / "samples" / "00_moving_sth_from_left_to_right.mp4")
    rows = {r["short"]: r for r in gate_locality(run_clip(ck, model_input(frames, ck.config,
                                                                           ck.model.input_convention)).gates)}
    assert rows["3a"]["behaviour"] == "fixed_differencing"
    assert {rows[b]["behaviour"] for b in ("3c", "4b", "4e")} == {"fixed_averaging"}
    local = [b for b, r in rows.items() if r["behaviour"] == "local"]
    assert len(local) >= 3 and all(rows[b]["locality"] > 0.3 for b in local)


# --- overlay ----------------------------------------------------------------------------------------

def test_overlay_colours_never_mix_with_content():
    """A pure red frame under G = 0 stays grey; under G = +1 it turns blue, under G = -1 red - the
    same as a pure blue or a grey frame would: the content's hue never reaches the output."""
    t, s = 3, 8
    red = np.zeros((t, s, s, 3), np.uint8)
    red[..., 0] = 97
    blue = np.zeros_like(red)
    blue[..., 2] = 254  # luminance 28.96 vs the red frame's 29.00
    g = np.stack([np.zeros((2, 2)), np.ones((2, 2)), -np.ones((2, 2))]).astype(np.float32)
    out_red = gate_overlay(red, g, opacity=0.8)
    out_blue = gate_overlay(blue, g, opacity=0.8)
    assert out_red.shape == red.shape and out_red.dtype == np.uint8
    grey = out_red[0]
    assert np.all(grey[..., 0] == grey[..., 1]) and np.all(grey[..., 1] == grey[..., 2])  # G=0: no hue at all
    lum = 97 * 0.299
    base = lum * (1 - 0.35) + 255 * 0.35
    np.testing.assert_allclose(out_red[1, 0, 0], base * 0.2 + np.array(AVERAGING_RGB) * 0.8, atol=0.51)
    np.testing.assert_allclose(out_red[2, 0, 0], base * 0.2 + np.array(DIFFERENCING_RGB) * 0.8, atol=0.51)
    assert np.abs(out_red.astype(int) - out_blue.astype(int)).max() <= 1  # same luminance -> same output


def test_overlay_shapes():
    frames = np.full((4, 16, 12, 3), 128, np.uint8)
    maps = np.zeros((3, 4, 3), np.float32)
    maps[:, 0, 0] = 1.0
    out = gate_overlay(frames, maps)  # T-1 maps: the last frame gets no colour
    assert out.shape == (4, 16, 12, 3)
    assert np.all(out[3] == out[3, 0, 0]) and out[0, 0, 0, 2] > out[0, 0, 0, 0]
    with pytest.raises(ValueError, match="gate maps"):
        gate_overlay(frames, np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match="frames"):
        gate_overlay(frames[0], maps)
