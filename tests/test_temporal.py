"""Temporal operators: TSM and GSM against independent per-frame references written from their definitions,
the operator registry and placement, inspection maps, and models that combine operators."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hfnet_core.backbones import build_backbone
from hfnet_core.errors import ConfigError
from hfnet_core.model import build_model
from hfnet_core.model_config import ModelConfig
from hfnet_core.temporal import available_operators, get_operator, resolve
from hfnet_core.temporal.gsm import PLACES, GateShift
from hfnet_core.temporal.tsm import TemporalShift


def _clips(n: int, t: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, t, c, h, w, generator=g, dtype=torch.float64)


# --- TSM ------------------------------------------------------------------------------------------------

def tsm_reference(clip: np.ndarray, shift_div: int) -> np.ndarray:
    """Lin et al.: channel c < fold takes frame t+1's value, fold <= c < 2 fold takes frame t-1's, the rest
    stays; zeros beyond the clip. ``clip`` is (T, C, H, W); loops over frames and channels."""
    t_len, c_len = clip.shape[:2]
    fold = c_len // shift_div
    out = np.zeros_like(clip)
    for t in range(t_len):
        for c in range(c_len):
            if c < fold:
                src = t + 1
            elif c < 2 * fold:
                src = t - 1
            else:
                src = t
            if 0 <= src < t_len:
                out[t, c] = clip[src, c]
    return out


@pytest.mark.parametrize("shift_div,channels", [(8, 16), (8, 20), (4, 7), (3, 9), (2, 4)])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_tsm_matches_per_frame_reference(shift_div, channels, memory_format):
    n, t = 3, 5
    clips = _clips(n, t, channels, 4, 3)
    op = TemporalShift(channels, shift_div)
    x = clips.reshape(n * t, channels, 4, 3).contiguous(memory_format=memory_format)
    out, maps = op(x, t)
    assert maps == {} and out.shape == x.shape
    out = out.reshape(n, t, channels, 4, 3).numpy()
    for i in range(n):  # clips never exchange frames
        np.testing.assert_array_equal(out[i], tsm_reference(clips[i].numpy(), shift_div))


def test_tsm_inspection_share_from_neighbours():
    clips = _clips(2, 4, 16, 3, 3).abs() + 0.1
    op = TemporalShift(16, 8)
    out, maps = op(clips.reshape(8, 16, 3, 3), 4, inspect=True)
    share = maps["from_neighbours"]
    assert share.shape == (2, 4, 3, 3)
    o = out.reshape(2, 4, 16, 3, 3).abs()
    np.testing.assert_allclose(share, o[:, :, :4].sum(2) / o.sum(2), rtol=1e-12)
    # the last frame receives nothing from t+1 and the first nothing from t-1 (zero padding)
    assert torch.equal(o[:, -1, :2], torch.zeros_like(o[:, -1, :2])) and torch.equal(o[:, 0, 2:4], torch.zeros_like(o[:, 0, 2:4]))


def test_tsm_placements_follow_the_original():
    with torch.device("meta"):
        r50, r101, bni = (build_backbone(n, 0.25) for n in ("resnet50", "resnet101", "bninception"))
    tsm = get_operator("tsm")
    sites = tsm.presets(r50, {})["blockres"]
    assert len(sites) == 16 and sites[0].key == "layer1.0.conv1:in" and sites[-1].key == "layer4.2.conv1:in"
    assert [s.key for s in tsm.presets(r50, {})["block"]][:2] == ["layer1.0:in", "layer1.1:in"]
    # ResNet-101 (a stage of >= 23 blocks): every second block of every stage
    deep = [s.module for s in tsm.presets(r101, {})["blockres"]]
    assert deep[:2] == ["layer1.0.conv1", "layer1.2.conv1"] and len(deep) == 2 + 2 + 12 + 2
    assert all(int(m.split(".")[1]) % 2 == 0 for m in deep)
    # BN-Inception: the input of every stage after the first, before all of a block's branches
    b = [s.key for s in tsm.presets(bni, {})["all"]]
    assert b[0] == "conv2_3x3_reduce:in" and b[1:] == [f"{n}:in" for n in bni.block_names]
    with pytest.raises(ConfigError, match="blockres"):
        tsm.presets(bni, {"place": "blockres"})


def test_tsm_model_shifts_where_the_config_says():
    """A TSM model = the TSN on the same weights with TSM's shift applied at each site (checked by running
    the backbone by hand, shifting with the reference)."""
    torch.manual_seed(0)
    tsm = build_model("tsm_resnet18_demo", num_classes=4, num_segments=3).double().eval()
    x = torch.randn(1, 3, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        ref_logits = tsm(x)
        bb = tsm.base_model
        y = bb.stem(x.reshape(3, 3, 64, 64))
        for name in bb.block_names:
            blk = getattr(bb, name.split(".")[0])[int(name.split(".")[1])]
            shifted = torch.from_numpy(tsm_reference(y.numpy(), 8))
            branch = torch.relu(blk.bn1(blk.conv1(shifted)))
            branch = blk.bn2(blk.conv2(branch))
            short = y if blk.downsample is None else blk.downsample(y)
            y = torch.relu(branch + short)
        logits = tsm.head(bb.pool(y).reshape(1, 3, -1))
    torch.testing.assert_close(logits, ref_logits, rtol=1e-10, atol=1e-10)


# --- GSM ------------------------------------------------------------------------------------------------

def gsm_reference(clip: np.ndarray, weight: np.ndarray, bias: np.ndarray, bn: dict) -> tuple[np.ndarray, np.ndarray]:
    """Sudhakaran et al.'s gate-shift on one clip (T, C, H, W), from the definition: gates from an explicit
    3x3x3 grouped convolution of ReLU(BN(x)) (zero padding), then per frame and channel
    first half  out[t, k] = (1 - g1[t]) x[t, s] + g1[t+1] x[t+1, s]
    second half out[t, k] = (1 - g2[t]) x[t, s] + g2[t-1] x[t-1, s]
    with s the source channel of the published channel order: within a half of C/2 channels, output 2j+i is
    input i*C/4 + j. Returns (out, gates (2, T, H, W))."""
    t_len, c_len, h, w = clip.shape
    half, quarter = c_len // 2, c_len // 4
    z = (clip - bn["mean"][None, :, None, None]) / np.sqrt(bn["var"][None, :, None, None] + bn["eps"])
    z = np.maximum(z * bn["weight"][None, :, None, None] + bn["bias"][None, :, None, None], 0.0)
    zp = np.pad(z, ((1, 1), (0, 0), (1, 1), (1, 1)))
    gates = np.zeros((2, t_len, h, w))
    for g in range(2):
        for t in range(t_len):
            acc = np.full((h, w), bias[g])
            for ci in range(half):
                c = g * half + ci
                for dt, dy, dx in itertools.product(range(3), repeat=3):
                    acc += weight[g, ci, dt, dy, dx] * zp[t + dt, c, dy:dy + h, dx:dx + w]
            gates[g, t] = np.tanh(acc)
    out = np.zeros_like(clip)
    for k in range(c_len):
        first = k < half
        kk = k if first else k - half
        s = (kk % 2) * quarter + kk // 2 + (0 if first else half)
        g = gates[0] if first else gates[1]
        for t in range(t_len):
            out[t, k] = (1 - g[t]) * clip[t, s]
            nb = t + 1 if first else t - 1
            if 0 <= nb < t_len:
                out[t, k] += g[nb] * clip[nb, s]
    return out, gates


def _random_gsm(c: int, seed: int = 0) -> GateShift:
    g = torch.Generator().manual_seed(seed)
    op = GateShift(c).double().eval()
    with torch.no_grad():
        op.conv3D.weight.copy_(torch.randn(op.conv3D.weight.shape, generator=g, dtype=torch.float64) * 0.3)
        op.conv3D.bias.copy_(torch.randn(2, generator=g, dtype=torch.float64) * 0.2)
        op.bn.running_mean.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.1)
        op.bn.running_var.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
        op.bn.weight.copy_(torch.rand(c, generator=g, dtype=torch.float64) + 0.5)
        op.bn.bias.copy_(torch.randn(c, generator=g, dtype=torch.float64) * 0.1)
    return op


@pytest.mark.parametrize("channels,t_len", [(8, 4), (12, 3), (16, 5)])
def test_gsm_matches_per_frame_reference(channels, t_len):
    n = 2
    op = _random_gsm(channels)
    clips = _clips(n, t_len, channels, 5, 4, seed=3)
    with torch.no_grad():
        out, maps = op(clips.reshape(n * t_len, channels, 5, 4), t_len)
    out = out.reshape(n, t_len, channels, 5, 4).numpy()
    bn = {"mean": op.bn.running_mean.numpy(), "var": op.bn.running_var.numpy(), "eps": op.bn.eps,
          "weight": op.bn.weight.detach().numpy(), "bias": op.bn.bias.detach().numpy()}
    for i in range(n):
        ref, gates = gsm_reference(clips[i].numpy(), op.conv3D.weight.detach().numpy(),
                                   op.conv3D.bias.detach().numpy(), bn)
        np.testing.assert_allclose(out[i], ref, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(maps["gate_backward"][i].numpy(), gates[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(maps["gate_forward"][i].numpy(), gates[1], rtol=1e-10, atol=1e-12)


def test_fresh_gsm_is_the_channel_reordering_alone():
    """Zero gates move nothing: what is left is the published channel order - a sharp test of the plumbing."""
    c = 16
    op = GateShift(c).eval()
    x = torch.randn(6, c, 3, 3)
    with torch.no_grad():
        out, maps = op(x, 3)
    assert torch.equal(maps["gate_backward"], torch.zeros(2, 3, 3, 3))
    order = [0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15]
    assert torch.equal(out, x[:, order])


def test_gsm_sits_between_conv_and_bn_at_the_published_places():
    model = build_model("gsm_bninception_demo", num_classes=3, num_segments=2)
    assert [s.key for _, s in model.placements] == [f"{p}:out" for p in PLACES]
    keys = [k for k in model.state_dict() if k.startswith("gsm.")]
    assert "gsm.inception_3a_1x1.conv3D.weight" in keys and "gsm.inception_5b_1x1.bn.running_var" in keys
    full = {p: build_backbone("bninception").get_submodule(p).out_channels for p in PLACES}
    assert list(full.values()) == [64, 64, 128, 224, 192, 160, 96, 128, 352, 352]


# --- registry, placement, inspection ---------------------------------------------------------------------

def test_registry_and_argument_errors():
    assert {"hf", "tsm", "gsm"} <= set(available_operators())
    with torch.device("meta"):
        bb = build_backbone("bninception", 0.25)
        with pytest.raises(ConfigError, match="unknown temporal operator 'lstm'"):
            resolve([{"op": "lstm", "where": "all", "args": {}}], bb)
        with pytest.raises(ConfigError, match="shift_div"):
            resolve([{"op": "tsm", "where": "all", "args": {"shift_div": 1}}], bb)
        with pytest.raises(ConfigError, match="unknown options"):
            resolve([{"op": "hf", "where": "all", "args": {"gain": 2}}], bb)
        with pytest.raises(ConfigError, match="two temporal operators"):
            resolve([{"op": "hf", "where": "3a", "args": {}}, {"op": "hf", "where": "inception_3a", "args": {}}], bb)
    with pytest.raises(ConfigError, match="temporal\\[0\\]"):
        ModelConfig(temporal=[{"op": "hf", "where": "all", "args": {"x": [1, 2]}}])
    with pytest.raises(ConfigError, match="at most"):
        ModelConfig(temporal=[{"op": "hf"}] * 65)


def test_operators_combine_and_report_their_maps():
    """HF after the blocks and GSM inside them, in one model: each operator's maps come back in one pass."""
    cfg = ModelConfig(width_mult=0.25, num_classes=3, num_segments=3, input_size=64, temporal=[
        {"op": "gsm", "where": "all", "args": {}}, {"op": "hf", "where": "last5", "args": {}},
        {"op": "tsm", "where": ["inception_3a:in"], "args": {"shift_div": 4}}])
    model = build_model(cfg).eval()
    x = torch.randn(2, 3, 3, 64, 64) * 50
    with torch.no_grad():
        ins = model.inspect(x)
        plain = model(x)
    torch.testing.assert_close(ins.logits, plain)
    ops = [r.op for r in ins.temporal.values()]
    assert ops.count("gsm") == 10 and ops.count("hf") == 5 and ops.count("tsm") == 1
    assert list(ins.temporal)[0] == "tsm.inception_3a"  # network order: 3a's input comes first
    assert set(ins.gates) == set(model.hf_blocks)
    g = ins.temporal["gsm.inception_4a_1x1"].maps
    assert set(g) == {"gate_backward", "gate_forward"} and g["gate_backward"].shape[:2] == (2, 3)
    assert set(ins.temporal["tsm.inception_3a"].maps) == {"from_neighbours"}
    desc = {e["op"]: e for e in model.describe()["temporal"]}
    assert len(desc["gsm"]["sites"]) == 10 and desc["tsm"]["shift_div"] == 4 and desc["hf"]["conservative"]


def test_fresh_operators_keep_a_tsn_unchanged_except_gsm_order():
    """Fresh HF is the identity; fresh GSM only reorders channels - so an HF model starts as its TSN."""
    torch.manual_seed(0)
    hf = build_model("hf_tsn_bninception_demo", num_classes=3, num_segments=3, input_size=64).eval()
    tsn = build_model("tsn_bninception_demo", num_classes=3, num_segments=3, input_size=64).eval()
    tsn.load_state_dict({k: v for k, v in hf.state_dict().items() if not k.startswith("hf.")})
    x = torch.randn(1, 3, 3, 64, 64) * 50
    with torch.no_grad():
        torch.testing.assert_close(hf(x), tsn(x))


def test_intermediate_names_and_taps():
    model = build_model("gsm_bninception_demo", num_classes=3, num_segments=2, input_size=64).eval()
    names = model.intermediate_names()
    for n in ("conv1_7x7_s2:out", "conv1_7x7_s2_bn:out", "conv1_7x7_s2_relu:out", "inception_3a:out",
              "gsm.inception_3a_1x1", "inception_3a_1x1:out"):
        assert n in names
    assert names.index("inception_3a_1x1:out") < names.index("gsm.inception_3a_1x1")
    x = torch.randn(1, 2, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_intermediates(x, taps=["inception_3a_1x1:out", "gsm.inception_3a_1x1"])
    pre, post = out.intermediates["inception_3a_1x1:out"], out.intermediates["gsm.inception_3a_1x1"]
    assert pre.shape == post.shape and not torch.equal(pre, post)  # GSM reorders channels even when fresh
    with pytest.raises(ConfigError, match="unknown intermediate"):
        model.forward_intermediates(x, taps=["inception_9z:out"])
