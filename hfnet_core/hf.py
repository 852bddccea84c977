"""The HF module: hierarchical feature aggregation between adjacent frames (paper Sec. III, Eq. 1-7).

For a block output F+ of T frames, a learned gate G-_t in [-1, 1] (one value per pixel, shared by all
channels) moves G-_t * F+_{t+1} into frame t and takes the same amount out of frame t+1:

    F_t = F+_t + G-_t * F+_{t+1} - G-_{t-1} * F+_t                      (Eq. 1)
        = G-_t * F-_t + (1 - G+_t) * F+_t                               (Eq. 7)

with F- = shift_left(F+), G+ = shift_right(G-), both zero-padded at the sequence ends. G > 0 averages a
frame with its successor, G < 0 subtracts the successor (differencing). Whatever frame t+1 hands to
frame t (G-_t * F+_{t+1}) it loses itself (G+_{t+1} * F+_{t+1}, the same product), so the total feature
flow sum_t F_t = sum_t F+_t is conserved (up to rounding: this file evaluates Eq. 7 directly, as one
product and one multiply-add over the features, which is the cheapest form).

The gate is a 3-D convolution with a 2x3x3 kernel and one output channel over the stacked pair
[F+_t, F+_{t+1}] (Eq. 2, 5): 2*C*9 + 1 parameters. Because the kernel's two temporal taps act on
different frames, conv3d([F+, F-]) == conv2d(F+, W_0) + shift_left(conv2d(F+, W_1)); the "shift" and
"matmul" implementations use that identity to avoid materialising the concatenation. All three
implementations share the same parameters (``gate.weight`` of shape (1, C, 2, 3, 3)), so a checkpoint
does not depend on which one runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GATE_IMPLS = ("concat", "shift", "matmul")


class GateConv(nn.Module):
    """tanh(conv3d([F+_t, F+_{t+1}])) with a 2x3x3 kernel, one output channel, zero-padded ends.

    Returns G-, shape (N, T, H, W); G-_{T-1} is 0 because the last frame has no successor to exchange
    with (the paper multiplies it by the zero padding of F-; we make that explicit so the returned gate
    map shows only transfers that happen).
    """

    def __init__(self, channels: int, impl: str = "matmul") -> None:
        super().__init__()
        if impl not in GATE_IMPLS:
            raise ValueError(f"unknown gate implementation {impl!r}; choose one of {GATE_IMPLS}")
        self.channels = channels
        self.impl = impl
        self.weight = nn.Parameter(torch.zeros(1, channels, 2, 3, 3))
        self.bias = nn.Parameter(torch.zeros(1))
        # Fixed one-hot taps that sum the 18 per-tap 1x1 responses into the two 3x3 responses.
        taps = torch.zeros(2, 18, 3, 3)
        for k in range(18):
            taps[k // 9, k, (k % 9) // 3, k % 3] = 1.0
        self.register_buffer("_taps", taps, persistent=False)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel=2x3x3, out_channels=1, impl={self.impl}"

    def pre_activation(self, x: Tensor, num_segments: int) -> Tensor:
        """W * [F+_t, F+_{t+1}] + B as (N, T, H, W); x is (N*T, C, H, W)."""
        nt, c, h, w = x.shape
        n = nt // num_segments
        if self.impl == "concat":
            nxt = x.view(n, num_segments, c, h, w)[:, 1:]
            nxt = torch.cat([nxt, nxt.new_zeros(n, 1, c, h, w)], dim=1).reshape(nt, c, h, w)
            pair = torch.stack([x, nxt], dim=2)  # (NT, C, 2, H, W)
            z = F.conv3d(pair, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=(0, 1, 1))
            return z.view(n, num_segments, h, w)
        if self.impl == "shift":
            w2 = self.weight.permute(2, 1, 0, 3, 4).reshape(2, c, 3, 3)  # tap 0 -> F+_t, tap 1 -> F+_{t+1}
            y = F.conv2d(x, w2.to(x.dtype), padding=1)
        else:  # "matmul": one GEMM to the 18 per-tap maps, then a fixed 3x3 tap sum on 18 channels
            y = F.conv2d(_per_tap_maps(x, self.weight), self._taps.to(x.dtype), padding=1)
        y = y.view(n, num_segments, 2, h, w)
        here, there = y[:, :, 0], y[:, :, 1]
        there = torch.cat([there[:, 1:], there.new_zeros(n, 1, h, w)], dim=1)
        return here + there + self.bias.to(here.dtype)

    def forward(self, x: Tensor, num_segments: int) -> Tensor:
        g = torch.tanh(self.pre_activation(x, num_segments))
        last = torch.ones(num_segments, 1, 1, dtype=g.dtype, device=g.device)
        last[-1] = 0.0
        return g * last


def _per_tap_maps(x: Tensor, weight: Tensor) -> Tensor:
    """(N*T, C, H, W) -> (N*T, 18, H, W): channel k = sum_c weight[0, c, k // 9, (k % 9) // 3, k % 3] * x[:, c].

    A plain matrix product in whichever memory format ``x`` has (a 1x1 convolution would make oneDNN
    copy a contiguous input into its blocked layout first); the result keeps that format.
    """
    nt, c, h, w = x.shape
    w18 = weight.permute(2, 3, 4, 1, 0).reshape(18, c).to(x.dtype)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = x.permute(0, 2, 3, 1).reshape(nt * h * w, c) @ w18.t()  # (NHW, C) view of NHWC memory
        return y.view(nt, h, w, 18).permute(0, 3, 1, 2)
    return torch.matmul(w18, x.reshape(nt, c, h * w)).view(nt, 18, h, w)


def shift_right(g: Tensor) -> Tensor:
    """G+_t = G-_{t-1}, zero at t = 0; g is (N, T, H, W)."""
    return torch.cat([g.new_zeros(g[:, :1].shape), g[:, :-1]], dim=1)


class HFModule(nn.Module):
    """Hierarchical feature aggregation after one backbone block.

    Args:
        channels: channels C of the block output.
        conservative: True = the paper's HF (one gate: what frame t+1 gives, frame t receives).
            False = Table I's ablation: a second, independent gate decides what frame t+1 loses, so
            the transfer no longer conserves the feature flow (2 x (2*C*9 + 1) parameters).
        impl: gate implementation ("matmul", "shift" or "concat"); same parameters, same result.

    Both gates start at zero (weights and bias), so a fresh module is the identity and an HF model
    starts exactly as the TSN it extends - the recipe of the authors' later GSM, which keeps a
    pretrained backbone's features intact at step 0 while gradients still reach the gate
    (dL/dW depends on F+, not on W).
    """

    def __init__(self, channels: int, conservative: bool = True, impl: str = "matmul") -> None:
        super().__init__()
        self.channels = channels
        self.conservative = conservative
        self.gate = GateConv(channels, impl)
        self.gate_out = None if conservative else GateConv(channels, impl)

    def forward(self, x: Tensor, num_segments: int) -> tuple[Tensor, Tensor]:
        """x: (N*T, C, H, W) -> (aggregated features (N*T, C, H, W), gate G- (N, T, H, W))."""
        nt, c, h, w = x.shape
        if nt % num_segments:
            raise ValueError(f"batch of {nt} frames is not a multiple of num_segments={num_segments}")
        g_in = self.gate(x, num_segments)
        g_out = g_in if self.gate_out is None else self.gate_out(x, num_segments)
        # F_t = (1 - G+_t) * F+_t + G-_t * F+_{t+1} (Eq. 7), written as two passes over the features: a
        # product, then an in-place multiply-add with the next frame. The flat (N*T) shift never carries
        # features across clips because G-_{T-1} = 0 for the last frame of every clip. The products keep
        # x's memory format (channels_last in, channels_last out).
        keep = 1.0 - shift_right(g_out).reshape(nt, 1, h, w).to(x.dtype)
        out = x * keep
        out[:-1].addcmul_(g_in.reshape(nt, 1, h, w)[:-1].to(x.dtype), x[1:])
        return out, g_in
