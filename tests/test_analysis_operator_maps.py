"""Reading GSM's and TSM's maps (``hfnet_core.analysis.operator_maps``): exact rows on designed maps, the
real TSM operator's neighbour share on a known input, alignment of the backwards clip, exports."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hfnet_core.analysis import operator_maps as om
from hfnet_core.analysis.gates import gate_locality
from hfnet_core.temporal.tsm import TemporalShift

T = 6


def _ops(op: str, maps_by_site: dict[str, dict[str, np.ndarray]]) -> dict[str, SimpleNamespace]:
    return {f"{op}.{m}": SimpleNamespace(op=op, module=m, side="out", maps=maps, meanings={n: f"meaning of {n}"
                                                                                         for n in maps})
            for m, maps in maps_by_site.items()}


def test_site_short():
    assert om.site_short("gsm.inception_3a_1x1") == "3a_1x1"
    assert om.site_short("tsm.conv2_3x3_reduce") == "conv2_3x3_reduce"
    assert om.site_short("tsm.layer1.0.conv1") == "layer1.0.conv1"


def test_gate_rows_count_every_frame():
    """A GSM gate's rows use all T maps (HF's reading drops the last one): the last frame changes the mean."""
    g = np.full((T, 4, 4), 0.2, np.float32)
    g[-1] = 1.0
    ops = _ops("gsm", {"inception_3a_1x1": {"gate_backward": g, "gate_forward": -g}})
    (row,) = om.gate_rows(ops, "gate_backward")
    assert row["mean"] == pytest.approx((0.2 * (T - 1) + 1.0) / T)
    assert row["frames"] == T and row["label"] == "gsm.inception_3a_1x1" and row["short"] == "3a_1x1"
    np.testing.assert_allclose(row["per_frame_mean"], [0.2] * (T - 1) + [1.0], rtol=1e-6)
    # the same numbers HF's reading gives when the T maps are its T-1 pairs (a zero frame appended)
    hf = gate_locality({"x": np.concatenate([g, np.zeros((1, 4, 4), np.float32)])})[0]
    for k in ("mean", "mean_abs", "locality", "saturation", "behaviour"):
        assert row[k] == (pytest.approx(hf[k]) if isinstance(hf[k], float) else hf[k])
    assert row["share_moves"] == 1.0 and row["share_negated"] == 0.0
    assert "share_averaging" not in row and "pairs" not in row
    (neg,) = om.gate_rows(ops, "gate_forward")
    assert neg["share_negated"] == 1.0 and neg["mean"] == pytest.approx(-row["mean"])


def test_gate_behaviours():
    half = np.full((T, 2, 2), 0.5, np.float32)
    half[:, 0] = -0.5  # top row negated, bottom row moves: a per-position choice
    ops = _ops("gsm", {"a": {"gate_backward": np.full((T, 2, 2), 0.97, np.float32)},
                       "b": {"gate_backward": half},
                       "c": {"gate_backward": np.full((T, 2, 2), 0.3, np.float32)},
                       "d": {"gate_backward": np.zeros((T, 2, 2), np.float32)}})
    rows = {r["module"]: r for r in om.gate_rows(ops, "gate_backward")}
    assert rows["a"]["behaviour"] == "fixed_averaging" and rows["a"]["fixed"]
    assert rows["b"]["behaviour"] == "local" and rows["b"]["locality"] == pytest.approx(1.0)
    assert rows["c"]["behaviour"] == "uniform" and rows["c"]["locality"] == 0.0
    assert rows["d"]["behaviour"] == "inactive" and np.isnan(rows["d"]["locality"])
    assert set(om.GATE_BEHAVIOURS) >= {r["behaviour"] for r in rows.values()}
    assert om.most_local_site(list(rows.values())) == "gsm.b"
    assert om.most_local_site([]) is None


def test_neighbour_share_of_the_real_shift():
    """TSM on a constant input: every channel has the same magnitude, so inner frames get exactly the moved
    channels' share (2 * fold / C); at the two edge frames one neighbour is beyond the clip, so fold of the
    channels are zeros and fold of the remaining C - fold came from the other neighbour."""
    c, div = 20, 8  # fold 2: 4 of 20 channels move (not 2/8: integer division, as the original)
    op = TemporalShift(c, div)
    x = torch.ones(T, c, 3, 3)
    _, maps = op(x, T, inspect=True)
    ops = _ops("tsm", {"inception_3a": {"from_neighbours": maps["from_neighbours"].numpy()}})
    share = 2 * (c // div) / c
    (row,) = om.neighbour_rows(ops, {"tsm.inception_3a": share})
    assert row["mean_inner"] == pytest.approx(share) and row["ratio"] == pytest.approx(1.0)
    edge = (c // div) / (c - c // div)
    np.testing.assert_allclose(row["per_frame_mean"][[0, -1]], [edge, edge], rtol=1e-6)
    assert row["mean"] == pytest.approx((share * (T - 2) + 2 * edge) / T)
    assert row["spatial_std"] == pytest.approx(0.0, abs=1e-7) and row["channel_share"] == share
    (bare,) = om.neighbour_rows(ops)
    assert bare["channel_share"] is None and bare["ratio"] is None


def test_backward_alignment_and_matrix():
    a = np.arange(T * 4, dtype=np.float32).reshape(T, 2, 2)
    ops = _ops("tsm", {"s1": {"from_neighbours": a}, "s2": {"from_neighbours": 2 * a}})
    aligned = om.backward_aligned(ops, "from_neighbours")
    np.testing.assert_array_equal(aligned["tsm.s1"][0], a[T - 1])  # reversed frame T-1 is forward frame 0
    np.testing.assert_array_equal(aligned["tsm.s2"][::-1], 2 * a)
    labels, m = om.frame_matrix(ops, "from_neighbours")
    assert labels == ["tsm.s1", "tsm.s2"] and m.shape == (2, T)
    np.testing.assert_allclose(m[1], 2 * a.mean(axis=(1, 2)))
    assert om.frame_matrix(ops, "nothing")[0] == []
    two = _ops("gsm", {"x": {"gate_backward": a, "gate_forward": a}})
    assert om.map_names(two) == ["gate_backward", "gate_forward"]
    assert om.frame_maps(a[None]).shape == a.shape
    with pytest.raises(ValueError):
        om.frame_maps(np.stack([a, a]))


def test_exports_name_what_they_hold():
    g = np.random.default_rng(0).uniform(-1, 1, (T, 3, 3)).astype(np.float32)
    ops = _ops("gsm", {"inception_3a_1x1": {"gate_backward": g, "gate_forward": g / 2}})
    rows = om.gate_rows(ops, "gate_backward") + om.gate_rows(ops, "gate_forward")
    text = om.operator_summary_csv(rows, "clip.mp4", {"name": "A · gsm"}, {"direction": "forward"}).decode()
    lines = text.strip().splitlines()
    assert lines[0].startswith("clip,model,block,short") and lines[0].endswith(f"frame_{T - 1},settings")
    assert len(lines) == 3 and all(",A · gsm," in ln and ln.endswith("direction=forward") for ln in lines[1:])
    data = np.load(io.BytesIO(om.operator_maps_npz(ops, "clip.mp4", {"name": "A · gsm"}, {}, rows)),
                   allow_pickle=False)
    np.testing.assert_array_equal(data["gate_backward/gsm.inception_3a_1x1"], g)
    np.testing.assert_array_equal(data["gate_forward/gsm.inception_3a_1x1"], g / 2)
    assert list(data["sites"]) == ["gsm.inception_3a_1x1"]
    meta = json.loads(str(data["metadata"]))
    assert meta["format"] == "hfnet-operator-maps" and meta["clip"] == "clip.mp4"
    assert meta["meanings"]["gate_forward"] == "meaning of gate_forward"
    assert [s["map"] for s in meta["sites"]] == ["gate_backward", "gate_forward"]
