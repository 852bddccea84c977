"""Params / FLOPs: the counting convention reproduces Table I where it can, and the counters are right."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hfnet_core.complexity import (
    PAPER_TABLE_ONE,
    count_flops,
    count_params,
    format_table,
    per_block_costs,
    table_one,
)
from hfnet_core.model import build_model


@pytest.fixture(scope="module")
def rows():
    return {r["label"]: r for r in table_one()}  # full width, 16 frames, 224 px, 174 classes (meta device)


def test_rows_that_must_match_the_paper(rows):
    for label in ("Baseline", "Baseline+10HF"):
        r = rows[label]
        assert r["params_match"] and r["flops_match"], r
        assert (r["params_m"], r["flops_g"]) == (r["paper_params_m"], r["paper_flops_g"])


def test_exact_counts(rows):
    base, hf10 = rows["Baseline"], rows["Baseline+10HF"]
    assert base["params"] == 10_468_622  # state dict incl. BN running stats, no num_batches_tracked
    assert base["params_trainable"] == 10_448_590
    assert hf10["params"] - base["params"] == 119_242  # sum over blocks of 2*C*9 + 1
    assert round((hf10["flops"] - base["flops"]) / 1e9, 2) == 0.34  # = the gates' MACs
    nc = rows["Baseline+10HF (non-Conservative)"]
    assert nc["params"] - base["params"] == 2 * 119_242
    assert nc["flops"] - base["flops"] == 2 * (hf10["flops"] - base["flops"])
    assert rows["Baseline+1HF"]["hf_blocks"] == ["inception_5b"]
    assert rows["Baseline+5HF"]["hf_blocks"] == [f"inception_{b}" for b in ("4c", "4d", "4e", "5a", "5b")]


def test_rows_that_differ_are_explained(rows):
    assert any("degenerate" in n for n in rows["Baseline+1HF"]["notes"])
    five = rows["Baseline+5HF"]
    assert (five["params_m"], five["flops_g"]) == (10.55, 32.84)
    assert five["params_match"] is False and any("10.53M" in n for n in five["notes"])
    nc = rows["Baseline+10HF (non-Conservative)"]
    assert nc["params_m"] == 10.71 and round(nc["params_trainable"] / 1e6, 2) == 10.69
    assert nc["notes"]
    text = format_table(list(rows.values()))
    for r in PAPER_TABLE_ONE:
        assert r.label in text
    assert "10.47M" in text and "33.07G" in text and "degenerate" in text


def test_param_counts_small_model():
    m = build_model("hf_tsn_bninception_demo_nonconservative", num_classes=4)
    p = count_params(m)
    state = m.state_dict()
    assert p["paper"] + p["num_batches_tracked"] == sum(v.numel() for v in state.values())
    assert p["num_batches_tracked"] == sum(1 for k in state if k.endswith("num_batches_tracked"))
    assert p["trainable"] == p["parameters"] == sum(q.numel() for q in m.parameters())
    assert p["paper"] == p["parameters"] + p["running_stats"]
    assert p["hf"] == sum(2 * (2 * c * 9 + 1) for c in m.base_model.block_channels.values())
    for q in m.hf.parameters():
        q.requires_grad_(False)
    assert count_params(m)["trainable"] == p["trainable"] - p["hf"]


def _hook_counts(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Independent count from module hooks on a real forward pass."""
    c = {"macs": 0, "bn_elems": 0, "pool_in": 0}

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            c["macs"] += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, nn.Linear):
            c["macs"] += out.numel() * mod.in_features
        elif isinstance(mod, nn.BatchNorm2d):
            c["bn_elems"] += out.numel()
        elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            c["pool_in"] += inp[0].numel()

    with torch.no_grad():  # the global average pool reads the last block's output
        y = model.base_model.stem(x.flatten(0, 1))
        for b in model.base_model.block_names:
            y = model.base_model.block(b, y)
        c["gap_in"] = y.numel()
    handles = [m.register_forward_hook(hook) for m in model.base_model.modules()]
    handles += [m.register_forward_hook(hook) for m in model.head.modules()]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return c


@pytest.mark.parametrize("impl", ["concat", "shift", "matmul"])
def test_flop_breakdown_against_hooks(impl):
    torch.manual_seed(0)
    model = build_model("hf_tsn_bninception_demo", num_classes=4, num_segments=2, hf_impl=impl).eval()
    f = count_flops(model, num_frames=2, size=64)
    h = _hook_counts(model, torch.randn(1, 2, 3, 64, 64))
    assert f["conv_linear_macs"] == h["macs"]
    assert f["bn"] == 2 * h["bn_elems"]
    assert f["relu"] == h["bn_elems"]  # every BN is followed by a ReLU in BN-Inception
    assert f["pool"] == h["pool_in"] + h["gap_in"]
    # the gate as the paper defines it: 2x3x3 conv3d, one output channel, over every frame position
    chans = model.base_model.block_channels
    gate = {}
    y_side = {}
    with torch.no_grad():
        y = model.base_model.stem(torch.zeros(2, 3, 64, 64))
        for b in model.base_model.block_names:
            y = model.base_model.block(b, y)
            y_side[b] = y.shape[-1] * y.shape[-2]
    for b in model.hf_blocks:
        gate[b] = 18 * chans[b] * 2 * y_side[b]
    assert f["hf_blocks"] == gate and f["hf_gate_macs"] == sum(gate.values())
    if impl == "concat":  # the running implementation multiplies exactly that
        assert f["hf_counted_conv_macs"] == f["hf_gate_macs"]
    assert f["total"] == f["conv_linear_macs"] + f["bn"] + f["relu"] + f["pool"] + f["hf_gate_macs"]
    assert f["total_with_elementwise"] > f["total"]


def test_flops_linear_in_frames_and_default_from_config():
    m8 = build_model("tsn_bninception_demo", num_segments=8)
    f8 = count_flops(m8)  # defaults: the config's 8 frames at 112 px
    assert (f8["num_frames"], f8["size"]) == (8, 112)
    f4 = count_flops(m8, num_frames=4)
    assert f8["total"] == 2 * f4["total"] and f8["conv_linear_macs"] == 2 * f4["conv_linear_macs"]
    with pytest.raises(TypeError):
        count_flops(nn.Linear(2, 2), 1, 8)


def test_per_block_costs_sum_to_all():
    costs = per_block_costs(width_mult=0.25, num_frames=2, size=64)
    model = build_model("hf_tsn_bninception_demo", num_segments=2)
    assert sum(c["params"] for c in costs.values()) == count_params(model)["hf"]
    assert sum(c["flops"] for c in costs.values()) == count_flops(model, 2, 64)["hf_gate_macs"]


def test_other_settings_have_no_paper_verdict():
    small = table_one(width_mult=0.25, num_classes=12, num_frames=2, size=64)
    assert all(r["params_match"] is None and r["flops_match"] is None for r in small)
    assert "*" not in format_table(small).split("\n\n")[0].split("\n", 2)[2]


def test_operator_rows_beside_their_papers():
    """GSM's paper prints 10.50M / 16.46G for its BN-Inception at 8 frames (TSN: 10.45M / 16.37G, trainable
    parameters): our count of the same architecture gives the same digits."""
    from hfnet_core.complexity import format_operator_table, operator_table

    rows = {r["model"]: r for r in operator_table()}
    for name in ("tsn_bninception", "gsm_bninception", "hf_tsn_bninception"):
        assert rows[name]["match"] is True, rows[name]
    gsm = rows["gsm_bninception"]
    assert gsm["params_temporal"] == 51_060  # per place 27 C + 2 (gate conv) + 2 C (BN3d affine); sum of C = 1760
    assert gsm["operators"] == {"gsm": 10} and rows["tsm_resnet50"]["operators"] == {"tsm": 16}
    assert rows["tsm_bninception"]["flops"] == rows["tsn_bninception"]["flops"]  # a shift costs nothing
    assert rows["tsm_bninception"]["match"] is None
    text = format_operator_table(list(rows.values()))
    assert "GSM x10" in text and "mmaction2" in text
