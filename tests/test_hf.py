"""HF module (hfnet_core/hf.py) against an independent per-frame reference of the paper's Eq. 1-2.

The reference below is written from the paper, not from hf.py: a plain loop over frames t, the gate as
an explicit 2x3x3 sum over the stacked pair [F'_t, F'_{t+1}] (Eq. 2), and Eq. 1 term by term.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from hfnet_core.temporal.hf import GATE_IMPLS, HFModule

C, H, W = 5, 6, 7  # odd, non-square feature maps
TOL64 = 1e-10


def gate_reference(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Eq. 2 for one pair of frames, (C, H, W) each: tanh(sum over the 2x3x3 taps + B) -> (H, W)."""
    pair = (F.pad(a, (1, 1, 1, 1)), F.pad(b, (1, 1, 1, 1)))  # zero padding in space
    z = torch.full((a.shape[1], a.shape[2]), float(bias[0]), dtype=a.dtype)
    for dt in range(2):
        for i in range(3):
            for j in range(3):
                window = pair[dt][:, i:i + a.shape[1], j:j + a.shape[2]]
                z = z + torch.einsum("c,chw->hw", weight[0, :, dt, i, j], window)
    return torch.tanh(z)


def hf_reference(clip: torch.Tensor, gate_in: tuple, gate_out: tuple | None = None) -> tuple:
    """Eq. 1 for one clip (T, C, H, W): F_t = F'_t + G_t * F'_{t+1} - G_{t-1} * F'_t.

    ``gate_out`` (non-conservative ablation): what frame t loses uses a second, independent gate.
    Returns (F, G) with G_{T-1} = 0 (no successor to exchange with).
    """
    t_len = clip.shape[0]

    def gates(params: tuple) -> list[torch.Tensor]:
        g = [gate_reference(clip[t], clip[t + 1], *params) for t in range(t_len - 1)]
        return g + [torch.zeros(clip.shape[2:], dtype=clip.dtype)]

    g_in = gates(gate_in)
    g_out = g_in if gate_out is None else gates(gate_out)
    out = []
    for t in range(t_len):
        f = clip[t].clone()
        if t + 1 < t_len:
            f = f + g_in[t] * clip[t + 1]
        if t > 0:
            f = f - g_out[t - 1] * clip[t]
        out.append(f)
    return torch.stack(out), torch.stack(g_in)


def random_module(conservative: bool = True, impl: str = "matmul", seed: int = 0, scale: float = 0.2) -> HFModule:
    torch.manual_seed(seed)
    m = HFModule(C, conservative=conservative, impl=impl).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0.0, scale)
    return m


def params_of(gate) -> tuple:
    return gate.weight.detach(), gate.bias.detach()


def run(m: HFModule, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    n, t = clips.shape[:2]
    out, maps = m(clips.reshape(n * t, *clips.shape[2:]), t)
    g = maps["gate"]
    return out.view(n, t, *clips.shape[2:]), g


@pytest.mark.parametrize("impl", GATE_IMPLS)
@pytest.mark.parametrize("t_len", [1, 2, 3, 8])
@pytest.mark.parametrize("conservative", [True, False])
def test_matches_per_frame_reference(impl, t_len, conservative):
    m = random_module(conservative, impl, seed=t_len)
    torch.manual_seed(100 + t_len)
    clips = torch.randn(3, t_len, C, H, W, dtype=torch.float64)
    with torch.no_grad():
        out, g = run(m, clips)
    gate_out = None if conservative else params_of(m.gate_out)
    for i in range(clips.shape[0]):
        ref_out, ref_g = hf_reference(clips[i], params_of(m.gate), gate_out)
        assert (out[i] - ref_out).abs().max() <= TOL64
        assert (g[i] - ref_g).abs().max() <= TOL64
    if t_len > 1:  # the test is not vacuous: the gates do move features
        assert (out - clips).abs().max() > 1e-2


@pytest.mark.parametrize("impl", GATE_IMPLS)
def test_no_leak_across_clips(impl):
    m = random_module(impl=impl, seed=1)
    torch.manual_seed(2)
    clips = torch.randn(3, 4, C, H, W, dtype=torch.float64)
    changed = clips.clone()
    changed[1] = torch.randn(4, C, H, W, dtype=torch.float64) * 10
    with torch.no_grad():
        a, ga = run(m, clips)
        b, gb = run(m, changed)
    assert torch.equal(a[0], b[0]) and torch.equal(ga[0], gb[0])
    assert torch.equal(a[2], b[2]) and torch.equal(ga[2], gb[2])
    assert not torch.equal(a[1], b[1])


@pytest.mark.parametrize("conservative", [True, False])
def test_implementations_agree(conservative):
    torch.manual_seed(3)
    clips = torch.randn(2, 5, C, H, W, dtype=torch.float64)
    outs = []
    for impl in GATE_IMPLS:
        m = random_module(conservative, impl, seed=4)  # same seed -> same parameters
        with torch.no_grad():
            outs.append(run(m, clips))
    for out, g in outs[1:]:
        assert (out - outs[0][0]).abs().max() <= 1e-12
        assert (g - outs[0][1]).abs().max() <= 1e-12
    # float32 too (what the models run in)
    outs32 = []
    for impl in GATE_IMPLS:
        m = random_module(conservative, impl, seed=4).float()
        with torch.no_grad():
            outs32.append(run(m, clips.float())[0])
    for out in outs32[1:]:
        assert (out - outs32[0]).abs().max() <= 1e-5


@pytest.mark.parametrize("impl", GATE_IMPLS)
def test_conservation(impl):
    torch.manual_seed(5)
    clips = torch.randn(2, 8, C, H, W, dtype=torch.float64)
    m = random_module(True, impl, seed=6, scale=0.5)
    with torch.no_grad():
        out, _ = run(m, clips)
    assert (out.sum(dim=1) - clips.sum(dim=1)).abs().max() <= 1e-12
    nc = random_module(False, impl, seed=6, scale=0.5)
    with torch.no_grad():
        out_nc, _ = run(nc, clips)
    assert (out_nc.sum(dim=1) - clips.sum(dim=1)).abs().max() > 1e-3


@pytest.mark.parametrize("impl", GATE_IMPLS)
def test_gate_range_and_last_frame(impl):
    torch.manual_seed(7)
    clips = torch.randn(2, 6, C, H, W, dtype=torch.float64) * 5
    m = random_module(True, impl, seed=8, scale=3.0)  # large weights: saturated gates
    with torch.no_grad():
        _, g = run(m, clips)
    assert g.shape == (2, 6, H, W)
    assert g.min() >= -1 and g.max() <= 1
    assert (g[:, :-1].abs() > 0.999).any()  # saturation reached, still in range
    assert torch.equal(g[:, -1], torch.zeros_like(g[:, -1]))


@pytest.mark.parametrize("impl", GATE_IMPLS)
@pytest.mark.parametrize("zero_init", [True, False])
def test_gradients_reach_gates(impl, zero_init):
    torch.manual_seed(9)
    m = HFModule(C, impl=impl).double() if zero_init else random_module(True, impl, seed=10)
    clips = torch.randn(2, 4, C, H, W, dtype=torch.float64)
    target = torch.randn(2 * 4, C, H, W, dtype=torch.float64)
    out, _ = m(clips.reshape(8, C, H, W), 4)
    (out * target).sum().backward()
    assert m.gate.weight.grad is not None and m.gate.weight.grad.abs().max() > 0
    assert m.gate.bias.grad is not None and m.gate.bias.grad.abs() > 0
    # both temporal taps of the kernel learn
    assert m.gate.weight.grad[0, :, 0].abs().max() > 0 and m.gate.weight.grad[0, :, 1].abs().max() > 0


def test_gradient_matches_finite_differences():
    m = random_module(True, "matmul", seed=11)
    torch.manual_seed(12)
    x = torch.randn(6, C, H, W, dtype=torch.float64, requires_grad=True)

    def f(inp, weight, bias):
        return functional_call(m, {"gate.weight": weight, "gate.bias": bias}, (inp, 3))[0]

    weight = m.gate.weight.detach().clone().requires_grad_()
    bias = m.gate.bias.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x, weight, bias), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("impl", GATE_IMPLS)
@pytest.mark.parametrize("conservative", [True, False])
def test_zero_init_is_identity(impl, conservative):
    m = HFModule(C, conservative=conservative, impl=impl)
    assert all(torch.count_nonzero(p) == 0 for p in m.parameters())
    x = torch.randn(12, C, H, W)
    with torch.no_grad():
        out, maps = m(x, 4)
        g = maps["gate"]
    assert torch.equal(out, x)
    assert torch.equal(g, torch.zeros(3, 4, H, W))


@pytest.mark.parametrize("channels", [1, 64, 1024])
def test_parameter_count_and_layout(channels):
    m = HFModule(channels)
    assert sum(p.numel() for p in m.parameters()) == 2 * channels * 9 + 1
    assert tuple(m.gate.weight.shape) == (1, channels, 2, 3, 3) and tuple(m.gate.bias.shape) == (1,)
    assert sorted(m.state_dict()) == ["gate.bias", "gate.weight"]  # the fixed taps are not saved
    nc = HFModule(channels, conservative=False)
    assert sum(p.numel() for p in nc.parameters()) == 2 * (2 * channels * 9 + 1)
    assert sorted(nc.state_dict()) == ["gate.bias", "gate.weight", "gate_out.bias", "gate_out.weight"]


@pytest.mark.parametrize("impl", GATE_IMPLS)
def test_checkpoint_independent_of_impl(impl):
    src = random_module(True, "concat", seed=13)
    dst = HFModule(C, impl=impl).double()
    dst.load_state_dict(src.state_dict(), strict=True)
    x = torch.randn(6, C, H, W, dtype=torch.float64)
    with torch.no_grad():
        assert (dst(x, 3)[0] - src(x, 3)[0]).abs().max() <= 1e-12


@pytest.mark.parametrize("impl", GATE_IMPLS)
@pytest.mark.parametrize("conservative", [True, False])
def test_channels_last(impl, conservative):
    m = random_module(conservative, impl, seed=14)
    torch.manual_seed(15)
    x = torch.randn(8, C, H, W, dtype=torch.float64)
    xc = x.contiguous(memory_format=torch.channels_last)
    assert not xc.is_contiguous()
    with torch.no_grad():
        a, ma = m(x, 4)
        b, mb = m(xc, 4)
        ga, gb = ma["gate"], mb["gate"]
    assert (a - b).abs().max() <= 1e-12 and (ga - gb).abs().max() <= 1e-12
    # every op keeps the format: the next block's convolutions get channels_last without a copy
    assert b.is_contiguous(memory_format=torch.channels_last)
    assert a.is_contiguous()


def test_rejects_bad_input():
    m = HFModule(C)
    with pytest.raises(ValueError, match="multiple of num_segments"):
        m(torch.zeros(7, C, H, W), 4)
    with pytest.raises(ValueError, match="unknown gate implementation"):
        HFModule(C, impl="fft")


@pytest.mark.parametrize("impl", GATE_IMPLS)
@pytest.mark.parametrize("hw", [(1, 1), (1, 4), (2, 2), (3, 1), (7, 7)])
def test_tiny_feature_maps_match_reference(impl, hw):
    """Border handling of the 3x3 window (zero padding) where the map is as small as the window."""
    m = random_module(True, impl, seed=16)
    torch.manual_seed(17)
    clips = torch.randn(2, 3, C, *hw, dtype=torch.float64)
    with torch.no_grad():
        out, g = run(m, clips)
        for fmt in (torch.contiguous_format, torch.channels_last):
            out_f, _ = m(clips.reshape(6, C, *hw).contiguous(memory_format=fmt), 3)
            assert (out_f.view_as(out) - out).abs().max() <= 1e-12
    for i in range(2):
        ref_out, ref_g = hf_reference(clips[i], params_of(m.gate))
        assert (out[i] - ref_out).abs().max() <= TOL64 and (g[i] - ref_g).abs().max() <= TOL64


@pytest.mark.parametrize("conservative", [True, False])
def test_parts_are_the_concatenation(conservative):
    """A block may hand HF its branches (``TemporalRun.join``): the result is HF of their concatenation."""
    m = random_module(conservative, seed=18)
    assert HFModule.accepts_parts
    torch.manual_seed(19)
    x = torch.randn(6, C, H, W, dtype=torch.float64)
    parts = [x[:, :2], x[:, 2:3], x[:, 3:]]
    with torch.no_grad():
        a, ma = m(x, 3)
        b, mb = m(parts, 3)
    assert torch.equal(a, b) and all(torch.equal(ma[k], mb[k]) for k in ma)
    with pytest.raises(ValueError, match="multiple of num_segments"):
        m(parts, 4)


def test_tap_matrix_is_row_major():
    """The (18, C) tap matrix is a contiguous copy: BLAS on the permuted view is several times slower."""
    from hfnet_core.temporal.hf import tap_matrix
    w = torch.randn(1, C, 2, 3, 3, dtype=torch.float64)
    m = tap_matrix(w, torch.float64)
    assert m.is_contiguous() and m.shape == (18, C)
    for k in range(18):
        assert torch.equal(m[k], w[0, :, k // 9, (k % 9) // 3, k % 3])
