"""Which pixels of which frames a prediction depends on: Integrated Gradients, Saliency and Grad-CAM.

Integrated Gradients is summed here (Captum's integration rule, so the numbers equal Captum's) in
batches of alphas chosen to fit a memory budget, with checkpointed backbone stages at full width, so it
can report progress and be cancelled between batches (``hfnet_core.analysis.attribution_jobs`` runs it
as a background job).

Every function takes a ``VideoClassifier``, one clip ``x`` (1, T, 3, H, W) in the model's input convention
and a target class, and returns per-frame maps ``(T, H, W)`` float32 in [0, 1]: attribution magnitude
(absolute value, summed over colour channels) for IG and Saliency, the ReLU'd class-activation map
upsampled to the input size for Grad-CAM. Maps are normalised jointly over the clip (not per frame), so
frames stay comparable: a frame the model ignores stays dark.

Shared model state
------------------
Captum registers hooks on the modules it inspects, and the explorer caches one model instance for every
browser session; a hook left on (or merely present during) another session's forward pass would corrupt
both. Integrated Gradients and Saliency therefore run on a private ``copy.deepcopy(model)`` (milliseconds
for the demo models, ~50 ms at full width) with parameter gradients switched off; Grad-CAM needs no
copy (below). A lock would not be enough: other
pages run the shared model without taking it. The caller's model is never touched - no hooks, no
``requires_grad`` changes, no mode change.

Grad-CAM layers (``layer_choices``)
----------------------------------
* ``base_model.<conv>`` / ``base_model.<conv>_bn`` / ``base_model.<conv>_relu``: a backbone convolution's
  output (before any operator placed after it), its BatchNorm's and its ReLU's outputs.
* ``inception_3a`` ... (``layer1.0`` ...): a block's output, before the operator placed after it.
* ``<op>.<module>`` (``hf.inception_3a``, ``gsm.inception_3a_1x1``, ``tsm.layer1.0.conv1``): a temporal
  operator's output.

Grad-CAM is computed here, not by Captum: ``model.forward_intermediates(x, taps=[...])`` returns the
chosen activation as part of the autograd graph in the same pass as the logits, so no hook and no
wrapper module is needed and the shared model is never modified (its parameters' ``.grad`` stay
untouched: only the gradient with respect to the activation is asked for).
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


__all__ = [
    "DEFAULT_IG_STEPS",
    "IG_METHODS",
    "grad_cam",
    "ig_alphas",
    "integrated_gradients",
    "integrated_gradients_raw",
    "layer_choices",
    "normalise_maps",
    "overlay",
    "saliency",
    "saved_bytes_per_clip",
]

#: IG steps: 16 keeps one demo-model clip at ~1 s on a 2-core CPU (convergence delta ~1e-2 of f(x)-f(0)).
DEFAULT_IG_STEPS = 16
_RELU_SUFFIX = "_relu"


# --- model handling ---------------------------------------------------------------------------------

def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode, parameters without gradients: hooks placed on it stay private."""
    private = copy.deepcopy(model).eval()
    for p in private.parameters():
        p.requires_grad_(False)
    return private


def _prepare_input(model: nn.Module, x: Tensor) -> Tensor:
    if x.dim() == 4:
        x = x.unsqueeze(0)
    if x.dim() != 5 or x.shape[0] != 1 or x.shape[2] != 3:
        raise ValueError(f"attributions take one clip of shape (1, T, 3, H, W), got {tuple(x.shape)}")
    device = next(model.parameters()).device
    # A fresh normal tensor even if the caller made x under inference_mode.
    return x.detach().to(device=device, dtype=torch.float32).clone()


def _check_target(model: nn.Module, target: int) -> int:
    k = model.config.num_classes
    t = int(target)
    if not 0 <= t < k:
        raise ValueError(f"target class {t} is out of range for a model with {k} classes")
    return t


def _layer_taps(model: nn.Module) -> dict[str, str]:
    """Public Grad-CAM layer name -> ``forward_intermediates`` tap, in network order."""
    blocks = set(model.base_model.block_names)
    out: dict[str, str] = {}
    for tap in model.intermediate_names():
        module, sep, side = tap.rpartition(":")
        if not sep:  # "<op>.<module>": an operator's output
            out[tap] = tap
        elif side == "out":
            out[module if module in blocks else f"base_model.{module}"] = tap
    return out


def layer_choices(model: nn.Module) -> list[str]:
    """Grad-CAM layers of ``model`` in network order: backbone conv / BN / ReLU outputs, every block
    output and every temporal operator's output (see the module docstring for the naming)."""
    return list(_layer_taps(model))


# --- maps -------------------------------------------------------------------------------------------

def normalise_maps(maps: np.ndarray | Tensor, percentile: float = 100.0) -> np.ndarray:
    """Scale non-negative maps to [0, 1] by their ``percentile`` over the whole clip (clipping above).

    IG and Saliency use 99.5: a handful of extreme pixels would otherwise make every map black.
    """
    m = maps.detach().cpu().numpy() if isinstance(maps, Tensor) else np.asarray(maps)
    m = np.nan_to_num(m.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    m = np.maximum(m, 0.0)
    scale = float(np.percentile(m, percentile)) if m.size else 0.0
    if scale <= 0.0:
        scale = float(m.max()) if m.size else 0.0
    if scale <= 0.0:
        return np.zeros_like(m, dtype=np.float32)
    return np.clip(m / scale, 0.0, 1.0).astype(np.float32)


def _pixel_maps(attr: Tensor) -> np.ndarray:
    """(1, T, 3, H, W) attributions -> (T, H, W) |a| summed over colour, normalised."""
    return normalise_maps(attr.detach()[0].abs().sum(dim=1), percentile=99.5)


#: Ways to place IG's steps on [0, 1] (the same names and points as Captum's ``method``).
IG_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def ig_alphas(steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of an ``steps``-point rule for integrating over alpha in [0, 1], as Captum
    defines them: Gauss-Legendre nodes and weights mapped to [0, 1], or a Riemann sum."""
    n = int(steps)
    if n < 1:
        raise ValueError(f"Integrated Gradients needs at least 1 step, got {n}")
    if method == "gausslegendre":
        nodes, w = np.polynomial.legendre.leggauss(n)
        return 0.5 * (nodes + 1.0), 0.5 * w
    if method == "riemann_trapezoid":  # Captum's weights: 1/n, halved at both ends
        if n < 2:
            raise ValueError("the trapezoid rule needs at least 2 steps")
        w = np.full(n, 1.0 / n)
        w[[0, -1]] /= 2.0
        return np.linspace(0.0, 1.0, n), w
    w = np.full(n, 1.0 / n)
    if method == "riemann_left":
        return np.linspace(0.0, 1.0 - 1.0 / n, n), w
    if method == "riemann_right":
        return np.linspace(1.0 / n, 1.0, n), w
    if method == "riemann_middle":
        return np.linspace(0.5 / n, 1.0 - 0.5 / n, n), w
    raise ValueError(f"unknown integration method {method!r}; choose one of {IG_METHODS}")


def _checkpoint_backbone(private: nn.Module) -> bool:
    """Recompute each backbone stage in the backward pass instead of keeping its activations.

    Backward through a full-width BN-Inception keeps ~630 MB of activations for one 8-frame 224 px
    clip; with the stem and every block checkpointed only their inputs stay (~5x less), at the price of
    a second forward per stage. Applied to the *private* copy only, through the backbone interface
    (``stem(x, run)``, ``block(name, x, run)``; ``hfnet_core.backbones.base``). Returns False (nothing changed)
    for a backbone without it.
    """
    from torch.utils.checkpoint import checkpoint

    if not _checkpoint_backbone_possible(private):
        return False
    bm = private.base_model
    stem, block = bm.stem, bm.block
    bm.stem = lambda *args: checkpoint(stem, *args, use_reentrant=False)
    bm.block = lambda *args: checkpoint(block, *args, use_reentrant=False)
    return True


def saved_bytes_per_clip(model: nn.Module, x: Tensor, checkpointed: bool = False) -> int:
    """Bytes autograd keeps for one backward pass of ``model`` on one clip shaped like ``x`` (what IG
    holds per alpha of a batch). Measured with saved-tensor hooks on a forward pass of a copy on the
    ``meta`` device: shapes only, no arithmetic, no memory."""
    ghost = copy.deepcopy(model).eval().to("meta")
    for p in ghost.parameters():
        p.requires_grad_(False)
    if checkpointed:
        _checkpoint_backbone(ghost)
    shape = (1,) + tuple(x.shape[-4:])
    xi = torch.zeros(shape, device="meta", dtype=torch.float32, requires_grad=True)
    total = [0]

    def pack(t: Tensor) -> Tensor:
        total[0] += t.numel() * t.element_size()
        return t

    with torch.inference_mode(False), torch.enable_grad():
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ghost(xi)
    return int(total[0])


#: Memory IG may add for its activations (MB), ``HFNET_IG_MEMORY_MB``. Measured at full width
#: (BN-Inception 1.0, 8 frames, 224 px): one alpha keeps ~630 MB without checkpointing (peak +580 MB),
#: ~115 MB with it (peak +355 MB: recomputed stage internals, gradients and inputs come on top, ~3x).
IG_MEMORY_MB = 450.0
_CHECKPOINT_OVERHEAD = 3.0
_plans: dict[tuple, tuple[int, bool]] = {}


def ig_plan(model: nn.Module, x: Tensor, max_batch: int = 4, memory_mb: float | None = None) -> tuple[int, bool]:
    """(alphas per backward pass, checkpoint?) that keep IG's added memory under ``memory_mb``.

    Without checkpointing if one clip's activations fit the budget (as many alphas per pass as fit, at
    most ``max_batch``), else with checkpointed stages (one alpha, or more if they fit). Memoised per
    model configuration and clip shape.
    """
    import os

    budget = float(memory_mb if memory_mb is not None else os.environ.get("HFNET_IG_MEMORY_MB") or IG_MEMORY_MB)
    cfg = getattr(model, "config", None)
    key = (repr(cfg) if cfg is not None else id(model), tuple(x.shape[-4:]), int(max_batch), budget)
    if key in _plans:
        return _plans[key]
    mb = 2.0**20
    plain = saved_bytes_per_clip(model, x) / mb
    if plain <= budget:
        plan = (int(max(1, min(max_batch, budget // max(plain, 1e-6)))), False)
    else:
        ck = saved_bytes_per_clip(model, x, checkpointed=True) / mb * _CHECKPOINT_OVERHEAD
        plan = (int(max(1, min(max_batch, budget // max(ck, 1e-6)))), _checkpoint_backbone_possible(model))
    _plans[key] = plan
    return plan


def _checkpoint_backbone_possible(model: nn.Module) -> bool:
    bm = getattr(model, "base_model", None)
    return callable(getattr(bm, "stem", None)) and callable(getattr(bm, "block", None))


def integrated_gradients_raw(model: nn.Module, x: Tensor, target: int, steps: int = DEFAULT_IG_STEPS,
                             baseline: Tensor | None = None, internal_batch_size: int = 4, *,
                             batch_size: int | None = None, progress: Callable[[float, str], None] | None = None,
                             cancel: Callable[[], bool] | None = None, method: str = "gausslegendre",
                             checkpoint: bool | None = None) -> tuple[Tensor, float]:
    """IG attributions (1, T, 3, H, W) and the convergence delta (sum of attributions minus
    f(x) - f(baseline) for the target logit). Baseline: zeros in the model's convention, i.e. a frame of
    the convention's mean colour.

    The integral over alpha is a ``steps``-point sum (``ig_alphas``: Captum's Gauss-Legendre rule by
    default, so the result equals ``captum.attr.IntegratedGradients``) evaluated ``batch_size`` alphas
    per backward pass. Between passes it reports ``progress(fraction, message)`` and stops with
    ``JobCancelled`` once ``cancel()`` is true. With ``checkpoint`` the backbone's stages are recomputed
    in the backward pass (``_checkpoint_backbone``); the numbers do not change.

    ``batch_size`` / ``checkpoint`` left as None are chosen by ``ig_plan`` so the added memory stays
    within ``HFNET_IG_MEMORY_MB`` (at most ``internal_batch_size`` alphas per pass): a demo model runs
    4 alphas per pass, a full-width BN-Inception one checkpointed alpha (+~355 MB instead of +1.8 GB).
    """
    from hfnet_core.analysis.jobs import JobCancelled

    target = _check_target(model, target)
    alphas, weights = ig_alphas(steps, method)
    if batch_size is None or checkpoint is None:
        auto_batch, auto_checkpoint = ig_plan(model, x, max(1, int(internal_batch_size)))
        batch_size = auto_batch if batch_size is None else batch_size
        checkpoint = auto_checkpoint if checkpoint is None else checkpoint
    per_pass = max(1, int(batch_size))
    private = _private_copy(model)
    if checkpoint:
        _checkpoint_backbone(private)
    xi = _prepare_input(private, x)
    base = torch.zeros_like(xi) if baseline is None else _prepare_input(private, baseline)
    diff = xi - base
    total_grad = torch.zeros_like(xi, dtype=torch.float64)
    n = len(alphas)
    with torch.inference_mode(False), torch.enable_grad():
        for start in range(0, n, per_pass):
            if cancel is not None and cancel():
                raise JobCancelled("cancelled")
            a = torch.as_tensor(alphas[start:start + per_pass], dtype=xi.dtype, device=xi.device)
            w = torch.as_tensor(weights[start:start + per_pass], dtype=torch.float64, device=xi.device)
            shape = (-1,) + (1,) * (xi.dim() - 1)
            scaled = (base + a.view(shape) * diff).requires_grad_(True)  # (b, T, 3, H, W)
            out = private(scaled)[:, target].sum()
            (grads,) = torch.autograd.grad(out, scaled)
            total_grad += (grads.double() * w.view(shape)).sum(dim=0, keepdim=True)
            del scaled, out, grads
            if progress is not None:
                done = min(n, start + per_pass)
                progress(done / n, f"Integrated Gradients: step {done} of {n}")
    attr = (total_grad * diff.double()).float()
    with torch.inference_mode():
        gap = private(xi)[0, target] - private(base)[0, target]
    delta = float(attr.double().sum() - gap.double())
    return attr.detach(), delta


def integrated_gradients(model: nn.Module, x: Tensor, target: int, steps: int = DEFAULT_IG_STEPS,
                         baseline: Tensor | None = None, internal_batch_size: int = 4, *,
                         batch_size: int | None = None, progress: Callable[[float, str], None] | None = None,
                         cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Integrated Gradients per frame: (T, H, W) in [0, 1] (see ``integrated_gradients_raw``)."""
    attr, _ = integrated_gradients_raw(model, x, target, steps, baseline, internal_batch_size,
                                       batch_size=batch_size, progress=progress, cancel=cancel)
    return _pixel_maps(attr)


def saliency(model: nn.Module, x: Tensor, target: int, *, progress: Callable[[float, str], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> np.ndarray:
    """Saliency (|d logit_target / d pixel|) per frame: (T, H, W) in [0, 1]. One backward pass:
    ``cancel`` is checked before it, ``progress`` reported after it."""
    from captum.attr import Saliency

    from hfnet_core.analysis.jobs import JobCancelled

    target = _check_target(model, target)
    if cancel is not None and cancel():
        raise JobCancelled("cancelled")
    private = _private_copy(model)
    xi = _prepare_input(private, x).requires_grad_(True)
    with torch.inference_mode(False), torch.enable_grad():
        attr = Saliency(private).attribute(xi, target=target, abs=True)
    if progress is not None:
        progress(1.0, "Saliency: done")
    return _pixel_maps(attr)


def grad_cam(model: nn.Module, x: Tensor, target: int, layer_name: str) -> np.ndarray:
    """Grad-CAM at ``layer_name`` (one of ``layer_choices(model)``), per frame, upsampled (bilinear) to
    the input size: (T, H, W) in [0, 1]. Each frame gets its own channel weights (the mean gradient over
    that frame's positions), as for an image model applied to T images."""
    target = _check_target(model, target)
    taps = _layer_taps(model)
    if layer_name not in taps:
        raise ValueError(f"{layer_name!r} is not a Grad-CAM layer of this model; "
                         f"block outputs: {list(model.base_model.block_names)}")
    if model.training:  # BatchNorm in training mode would update the shared model's statistics
        model = _private_copy(model)
    xi = _prepare_input(model, x)
    with torch.inference_mode(False), torch.enable_grad():
        out = model.forward_intermediates(xi, taps=[taps[layer_name]], record=False)
        act = out.intermediates[taps[layer_name]]  # (T, C, h, w): one clip's frames
        (grad,) = torch.autograd.grad(out.logits[0, target], act)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = torch.relu((weights * act).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=tuple(xi.shape[-2:]), mode="bilinear", align_corners=False)
    return normalise_maps(cam[:, 0], percentile=100.0)  # (N*T = T, H, W)


# --- display ----------------------------------------------------------------------------------------

# A perceptually ordered black -> purple -> orange -> yellow ramp (anchor colours of "inferno").
_RAMP = np.array([
    [0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
    [250, 193, 39], [252, 255, 164],
], dtype=np.float32)


def heat_colours(maps: np.ndarray) -> np.ndarray:
    """[0, 1] maps (..., H, W) -> RGB float (..., H, W, 3) on the ramp above."""
    m = np.clip(np.asarray(maps, dtype=np.float32), 0.0, 1.0) * (len(_RAMP) - 1)
    lo = np.floor(m).astype(np.int64).clip(0, len(_RAMP) - 2)
    frac = (m - lo)[..., None]
    return _RAMP[lo] * (1.0 - frac) + _RAMP[lo + 1] * frac


def overlay(frames: np.ndarray, maps: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend maps (T, H, W) in [0, 1] over uint8 RGB frames (T, H', W', 3); maps are resized (bilinear)
    to the frames when sizes differ. Weak attribution lets the frame show through."""
    frames = np.asarray(frames)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[0] != frames.shape[0]:
        raise ValueError(f"{maps.shape[0]} maps for {frames.shape[0]} frames")
    if maps.shape[1:] != frames.shape[1:3]:
        maps = F.interpolate(torch.from_numpy(maps)[:, None], size=frames.shape[1:3], mode="bilinear",
                             align_corners=False)[:, 0].numpy()
    w = (float(alpha) * np.clip(maps, 0.0, 1.0))[..., None]
    out = frames.astype(np.float32) * (1.0 - w) + heat_colours(maps) * w
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
