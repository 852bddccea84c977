"""hfnet_core.analysis.teaching: numpy Eq. 1 equals temporal.hf.HFModule and conserves the sum over frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hfnet_core.analysis.teaching import consensus, expand_gates, frame_sums, hf_eq1, moving_bump
from hfnet_core.temporal.hf import HFModule


class _FixedGate(nn.Module):
    """Stands in for HFModule.gate: returns given gate values G-_t (N, T, H, W) instead of computing them."""

    def __init__(self, g: torch.Tensor) -> None:
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor, num_segments: int) -> torch.Tensor:
        return self.g


def _hf_module(features: np.ndarray, gates: np.ndarray) -> np.ndarray:
    t, p = features.shape
    m = HFModule(1)
    m.gate = _FixedGate(torch.from_numpy(gates).reshape(1, t, 1, p))
    x = torch.from_numpy(features).reshape(t, 1, 1, p)
    out, maps = m(x, t)
    g = maps["gate"]
    return out.reshape(t, p).numpy()


@pytest.mark.parametrize("gates", [0.5, -0.7, 1.0, np.array([0.3, -0.2, 0.9, -1.0])])
def test_matches_hf_module(gates):
    f = moving_bump(5, 12)
    g = expand_gates(gates, 5, 12)
    np.testing.assert_allclose(hf_eq1(f, gates), _hf_module(f, g), atol=1e-12)


def test_matches_hf_module_per_position():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(6, 9))
    g = rng.uniform(-1, 1, size=(5, 9))
    np.testing.assert_allclose(hf_eq1(f, g), _hf_module(f, expand_gates(g, 6, 9)), atol=1e-12)


def test_eq7_form():
    """Eq. 7: F = G- * F- + (1 - G+) * F+ (F- = shift_left(F+), G+ = shift_right(G-))."""
    rng = np.random.default_rng(2)
    f = rng.normal(size=(5, 7))
    g = expand_gates(rng.uniform(-1, 1, size=(4, 7)), 5, 7)
    f_minus = np.vstack([f[1:], np.zeros((1, 7))])
    g_plus = np.vstack([np.zeros((1, 7)), g[:-1]])
    np.testing.assert_allclose(hf_eq1(f, g[:-1]), g * f_minus + (1 - g_plus) * f, atol=1e-12)


@pytest.mark.parametrize("g", [-1.0, -0.3, 0.0, 0.4, 1.0])
def test_conservation_and_tsn_consensus(g):
    f = moving_bump(5, 12, speed=2.0)
    out = hf_eq1(f, g)
    np.testing.assert_allclose(frame_sums(out), frame_sums(f), atol=1e-12)
    np.testing.assert_allclose(consensus(out), consensus(f), atol=1e-12)  # why last-block HF can't move TSN


def test_modes():
    f = moving_bump(5, 12, speed=2.0)
    np.testing.assert_array_equal(hf_eq1(f, 0.0), f)
    avg = hf_eq1(f, 0.5)
    # averaging: frame 0 picks up the bump of frame 1 (position 4), positively
    assert avg[0, 4] > f[0, 4] + 0.4
    diff = hf_eq1(f, -0.5)
    assert diff[0, 4] < -0.2  # differencing: negative where the bump goes next
    assert diff[1, 4] > f[1, 4]  # and stronger where it is (it hands back a negative share)


def test_bump():
    f = moving_bump(5, 12, start=2.0, speed=2.0)
    assert f.shape == (5, 12)
    assert [int(np.argmax(r)) for r in f] == [2, 4, 6, 8, 10]


def test_gate_validation():
    with pytest.raises(ValueError, match="shape|scalar"):
        expand_gates(np.zeros(3), 5, 12)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        expand_gates(1.5, 5, 12)
    assert expand_gates(0.3, 5, 12)[-1].sum() == 0  # G_{T-1} = 0
