"""HF, the paper's operator: hierarchical feature aggregation between adjacent frames (Sec. III, Eq. 1-7).

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
"matmul" implementations use that identity to avoid materialising the concatenation; "matmul" (the
default, cheapest on CPU: benchmarks/bench_model.py) gets all 18 tap responses from one (18 x C) matrix
product over the features and sums each 3x3 window as shifted views of those small maps. All three
implementations share the same parameters (``gate.weight`` of shape (1, C, 2, 3, 3)), so a checkpoint
does not depend on which one runs.

Inference on the CPU (float32, no autograd) with the "matmul" gate runs the same computation as one fused
call (``hf_fused.py``): the per-tap product, the window sums, tanh and Eq. 7 written straight into the
output - or, given a block's branches (``TemporalRun.join``), into the block's concatenation. The code
below is the reference it is tested against, and what training, Grad-CAM and other devices run.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from . import hf_fused, register_operator
from .base import Site, TemporalOperator

#: MACs per gate pixel per input channel: a 2x3x3 kernel.
GATE_TAPS = 2 * 3 * 3

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
        bias = self.bias.to(x.dtype)
        if self.impl == "shift":
            w2 = self.weight.permute(2, 1, 0, 3, 4).reshape(2, c, 3, 3)  # tap 0 -> F+_t, tap 1 -> F+_{t+1}
            y = F.conv2d(x, w2.to(x.dtype), padding=1).view(n, num_segments, 2, h, w)
            z = y[:, :, 0] + bias
            z[:, :-1] += y[:, 1:, 1]  # zero padding after the last frame
            return z
        # "matmul": one GEMM gives the 18 per-tap maps; each 3x3 tap then adds a shifted window of its map.
        # Map k = dt*9 + 3*i + j is read at (y + i - 1, x + j - 1) of frame t + dt, zero outside (padding).
        maps = _per_tap_maps(x, self.weight).reshape(18, n, num_segments, h, w)
        z = maps[4] + bias  # the centre tap of F+_t covers every pixel
        for k in range(18):
            if k == 4:
                continue
            dt, di, dj = k // 9, (k % 9) // 3 - 1, k % 3 - 1
            dst = z[:, :-1] if dt else z  # F+_{t+1}: nothing after the last frame
            src = maps[k, :, 1:] if dt else maps[k]
            dst[..., max(0, -di):h - max(0, di), max(0, -dj):w - max(0, dj)] += \
                src[..., max(0, di):h + min(0, di), max(0, dj):w + min(0, dj)]
        return z

    def forward(self, x: Tensor, num_segments: int) -> Tensor:
        z = self.pre_activation(x, num_segments)
        z[:, -1] = 0.0  # tanh(0) = 0: no transfer from beyond the last frame
        return torch.tanh(z)


def _per_tap_maps(x: Tensor, weight: Tensor) -> Tensor:
    """(N*T, C, H, W) -> (18, N*T, H, W): map k = sum_c weight[0, c, k // 9, (k % 9) // 3, k % 3] * x[:, c].

    One matrix product that reads ``x`` in whichever memory format it has, with no copy of it (a 1x1
    convolution would make oneDNN reorder a contiguous input first). For channels_last the product is
    W (18 x C) @ X^T with X the (N*H*W, C) view of the NHWC memory: the faster orientation here.
    """
    nt, c, h, w = x.shape
    w18 = tap_matrix(weight, x.dtype)
    if _is_channels_last(x):
        return torch.mm(w18, x.permute(0, 2, 3, 1).reshape(nt * h * w, c).t()).view(18, nt, h, w)
    return torch.matmul(w18, x.reshape(nt, c, h * w)).view(nt, 18, h, w).transpose(0, 1)


def tap_matrix(weight: Tensor, dtype: torch.dtype) -> Tensor:
    """The gate weight (1, C, 2, 3, 3) as an (18, C) row-major matrix, row k = dt*9 + 3i + j.

    Contiguous on purpose: the permuted view has strides (1, 18), and a BLAS product with that operand
    runs several times slower here (torch.matmul then takes a non-folded batched path).
    """
    return weight.permute(2, 3, 4, 1, 0).reshape(18, weight.shape[1]).to(dtype).contiguous()


def _is_channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def shift_right(g: Tensor) -> Tensor:
    """G+_t = G-_{t-1}, zero at t = 0; g is (N, T, H, W)."""
    return torch.cat([g.new_zeros(g[:, :1].shape), g[:, :-1]], dim=1)


@register_operator("hf")
class HFModule(TemporalOperator):
    """Hierarchical feature aggregation after one backbone block (site: the block's output).

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

    Inspection maps: ``gate`` = G- (N, T, H, W) (and ``gate_out`` for the non-conservative ablation).

    ``fused`` (default True; not part of the state dict): use the fused CPU path where it applies (see the
    module docstring); False keeps the eager reference path everywhere.
    """

    default_side = "out"
    accepts_parts = True
    map_meanings = {
        "gate": "G-_t: what frame t takes from frame t+1 (> 0 averaging, < 0 differencing); 0 at the last frame",
        "gate_out": "non-conservative ablation: what frame t+1 loses (independent of what frame t takes)",
    }

    def __init__(self, channels: int, conservative: bool = True, impl: str = "matmul") -> None:
        super().__init__()
        self.channels = channels
        self.conservative = conservative
        self.gate = GateConv(channels, impl)
        self.gate_out = None if conservative else GateConv(channels, impl)
        self.fused = True
        self._kernel_cache: tuple | None = None

    @classmethod
    def from_args(cls, channels: int, args: Mapping[str, Any]) -> "HFModule":
        unknown = set(args) - {"conservative", "impl"}
        if unknown:
            raise ConfigError(f"hf: unknown options {sorted(unknown)}; HF takes conservative (bool) and impl")
        conservative = args.get("conservative", True)
        impl = args.get("impl", "matmul")
        if not isinstance(conservative, bool):
            raise ConfigError(f"hf: conservative must be true or false, got {conservative!r}")
        if impl not in GATE_IMPLS:
            raise ConfigError(f"hf: unknown gate implementation {impl!r}; choose one of {GATE_IMPLS}")
        return cls(channels, conservative, impl)

    @classmethod
    def presets(cls, backbone: Any, args: Mapping[str, Any]) -> dict[str, tuple[Site, ...]]:
        """The backbone's block groups (BN-Inception: none, last1, last5, all; ResNet: + stages, last_stage)."""
        return {name: tuple(Site(b, "out") for b in blocks) for name, blocks in backbone.placement_presets.items()}

    def macs(self, input_shape: tuple[int, int, int, int]) -> int:
        nt, c, h, w = input_shape
        return (1 if self.conservative else 2) * GATE_TAPS * c * nt * h * w

    def elementwise_ops(self, input_shape: tuple[int, int, int, int]) -> int:
        """tanh per gate pixel + Eq. 7's product, difference and shifted sum per feature element."""
        nt, c, h, w = input_shape
        gates = 1 if self.conservative else 2
        per_element = 3 if gates == 1 else 4  # non-conservative: a second product
        return gates * nt * h * w + per_element * nt * h * w * c

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "conservative": self.conservative, "impl": getattr(self.gate, "impl", None)}

    def forward(self, x: Tensor | Sequence[Tensor], num_segments: int,
                inspect: bool = False) -> tuple[Tensor, dict[str, Tensor]]:
        """x: (N*T, C, H, W), or its channel parts (a block's branches) -> (aggregated features
        (N*T, C, H, W), {"gate": G- (N, T, H, W)})."""
        parts = [x] if isinstance(x, Tensor) else list(x)
        if parts[0].shape[0] % num_segments:
            raise ValueError(f"batch of {parts[0].shape[0]} frames is not a multiple of num_segments={num_segments}")
        layout = hf_fused.layout_of(parts) if self.fused and getattr(self.gate, "impl", None) == "matmul" else None
        if layout is not None and not self._needs_autograd(parts) and hf_fused.kernel() is not None:
            return self._forward_fused(parts, num_segments, layout)
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        nt, c, h, w = x.shape
        g_in = self.gate(x, num_segments)
        g_out = g_in if self.gate_out is None else self.gate_out(x, num_segments)
        maps = {"gate": g_in} if self.gate_out is None else {"gate": g_in, "gate_out": g_out}
        # F_t = (1 - G+_t) * F+_t + G-_t * F+_{t+1} (Eq. 7), written as two passes over the features: a
        # product, then an in-place multiply-add with the next frame. The flat (N*T) shift never carries
        # features across clips because G-_{T-1} = 0 for the last frame of every clip.
        keep = torch.ones_like(g_out)
        keep[:, 1:] -= g_out[:, :-1]  # 1 - G+_t
        keep, g = keep.to(x.dtype), g_in.to(x.dtype)
        if _is_channels_last(x):
            # Broadcast over C in the NHWC view: the output stays channels_last and the loop runs over
            # contiguous channels (broadcasting the (N*T, 1, H, W) gate against the NCHW view of
            # channels_last memory is ~3x slower on CPU).
            xv = x.permute(0, 2, 3, 1)
            out = xv * keep.reshape(nt, h, w, 1)
            out[:-1].addcmul_(g.reshape(nt, h, w, 1)[:-1], xv[1:])
            return out.permute(0, 3, 1, 2), maps
        out = x * keep.reshape(nt, 1, h, w)
        out[:-1].addcmul_(g.reshape(nt, 1, h, w)[:-1], x[1:])
        return out, maps

    def _needs_autograd(self, parts: list[Tensor]) -> bool:
        if not torch.is_grad_enabled():
            return False
        return any(p.requires_grad for p in parts) or any(p.requires_grad for p in self.parameters())

    def _forward_fused(self, parts: list[Tensor], num_segments: int, layout: str) -> tuple[Tensor, dict[str, Tensor]]:
        gates = self._kernel_gates(layout)
        out, g, g_out = hf_fused.hf_fused(parts, num_segments, layout, *gates)
        return out, ({"gate": g} if g_out is None else {"gate": g, "gate_out": g_out})

    def _kernel_gates(self, layout: str) -> tuple[hf_fused.GateWeights, ...]:
        """The gates' parameters in the kernel's layout, rebuilt only when a parameter changed: in place (its
        version counter), its storage moved (``.data`` swapped), or the parameter object replaced - the key
        holds the parameter itself, so a replaced one cannot be freed and its address reused unnoticed."""
        convs = (self.gate,) if self.gate_out is None else (self.gate, self.gate_out)
        params = tuple(p for g in convs for p in (g.weight, g.bias))
        try:
            stamp = tuple((p.data_ptr(), p._version) for p in params)
        except RuntimeError:  # inference tensors (built under inference_mode) have no version counter
            stamp = None
        cached = self._kernel_cache
        fresh = (stamp is not None and cached is not None and cached[0] == layout and cached[2] == stamp
                 and all(a is b for a, b in zip(cached[1], params)))
        if not fresh:
            cached = (layout, params, stamp, tuple(hf_fused.gate_weights(g.weight, g.bias, layout) for g in convs))
            self._kernel_cache = cached  # one tuple, replaced whole: safe for concurrent callers
        return cached[3]
