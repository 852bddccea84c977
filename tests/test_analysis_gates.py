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
