"""Limits checked before anything is allocated: config values, the memory a model would need, tensor sizes.

Why: a file of a few kilobytes can *describe* a model of any size. Building first and checking after is
what let one 1.4 MB checkpoint (``num_segments: 100000``) take a server to 8 GB. So a config read from a
file goes through three checks, cheapest first, before any real tensor or module exists:

1. every field's type and range (``check_model_config``): nothing is built;
2. an analytic bound for the one part whose construction grows faster than linearly with a field, TRN's
   list of every frame relation (2^T - T - 1 tuples for T segments);
3. the model built on the ``meta`` device (shapes, no storage) and one clip run through it, counting the
   parameters and the peak of live activations (``estimate_model_memory``); refused above
   ``max_model_bytes()`` (default 4 GiB, env ``HFNET_MAX_MODEL_BYTES``).

Tensors a file declares are bounded too (``check_tensor``): an element count, and no expanded
(stride-0 / overlapping) views, which are small on disk and huge once written out. Every number is
explained in docs/limits.md.
"""

from __future__ import annotations

import functools
import json
import math
import numbers
import os
import weakref
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .errors import ConfigError, ResourceLimitError

# --- model config fields -------------------------------------------------------------------------------

MAX_NUM_CLASSES = 100_000  # the largest public action datasets have < 1,000; ImageNet-21k has ~21,800
MAX_NUM_SEGMENTS = 512  # video models use 8-64 frames; 128 for the longest clips
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 32, 1024  # crop side in pixels (the paper: 224)
MAX_WIDTH_MULT = 4.0  # channel multiplier (the paper: 1.0; the CPU demo models: 0.25)
MAX_NAME_CHARS = 200  # backbone, consensus, hf_impl, name, one HF block name
MAX_PLACEMENT_CHARS = 2_000  # hf_placement as one comma-separated string
MAX_PLACEMENT_ITEMS = 256
MAX_TEMPORAL_OPS = 64  # entries of the ``temporal`` operator list
MAX_SMALL_JSON_CHARS = 4_096  # one ``temporal`` entry or the input convention, JSON-encoded
MAX_CLASS_NAME_CHARS = 256

# --- memory and tensors -----------------------------------------------------------------------------------

DEFAULT_MAX_MODEL_BYTES = 4 * 2**30  # fits a laptop beside the app; the paper's HF-TRN needs ~0.5 GiB
ENV_MAX_MODEL_BYTES = "HFNET_MAX_MODEL_BYTES"
#: Real CPU peak / tracked peak of live activations, measured 1.4-2.0 on BN-Inception and ResNet-50 (see
#: docs/limits.md): allocator rounding and convolution workspaces the meta device does not see.
ACTIVATION_SAFETY = 2.0
MAX_TENSOR_ELEMENTS = 2**30  # one tensor; the largest legitimate one (100k classes x 8192 features) is 2**29.6


def max_model_bytes(override: int | None = None) -> int:
    """The memory limit for one model: ``override``, else ``$HFNET_MAX_MODEL_BYTES``, else 4 GiB.

    The environment value is a number of bytes, optionally with a K/M/G/T suffix (powers of 1024).
    """
    if override is not None:
        return _positive_bytes(override, "max_bytes")
    raw = os.environ.get(ENV_MAX_MODEL_BYTES, "").strip()
    if not raw:
        return DEFAULT_MAX_MODEL_BYTES
    return _positive_bytes(raw, ENV_MAX_MODEL_BYTES)


def _positive_bytes(value: Any, what: str) -> int:
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        scale = 1
        if text and text[-1] in "KMGT":
            scale, text = 1024 ** ("KMGT".index(text[-1]) + 1), text[:-1]
        try:
            value = float(text) * scale
        except ValueError:
            raise ConfigError(f"{what}={value!r} is not a size in bytes.", hint="Use e.g. 4294967296 or 4G.") from None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what}={value!r} must be a positive number of bytes.")
    return int(value)


def _show(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else text[: n - 3] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_int(field: str, value: Any, low: int, high: int, what: str = "") -> int:
    """``value`` as an int in [low, high]; bools, strings and floats (even 8.0) are refused."""
    if not _is_int(value):
        raise ConfigError(f"{field} = {_show(value)} is not an integer{what}.")
    if not low <= value <= high:
        raise ConfigError(f"{field} = {_show(value)} is out of range: hfnet accepts {low} to {high}{what} "
                          "(docs/limits.md).")
    return int(value)


def _check_real(field: str, value: Any, low: float, high: float, low_open: bool, high_open: bool) -> float:
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ConfigError(f"{field} = {_show(value)} is not a finite number.")
    v = float(value)
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if below or above:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ConfigError(f"{field} = {_show(value)} is out of range: hfnet accepts {interval} (docs/limits.md).")
    return v


def _check_str(field: str, value: Any, max_chars: int = MAX_NAME_CHARS, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{field} = {_show(value)} is not a string.")
    if len(value) > max_chars:
        raise ConfigError(f"{field} is {len(value)} characters long; at most {max_chars} are accepted.")
    if not value and not allow_empty:
        raise ConfigError(f"{field} is empty.")
    if "\x00" in value:
        raise ConfigError(f"{field} contains a NUL character.")
    return value


def _check_bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{field} = {_show(value)} is not true or false.")
    return value


def _check_small_json(field: str, value: Any) -> None:
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise ConfigError(f"{field} = {_show(value)} is not plain JSON data (finite numbers, strings, lists, "
                          "objects).") from None
    if len(text) > MAX_SMALL_JSON_CHARS:
        raise ConfigError(f"{field} is {len(text)} characters of JSON; at most {MAX_SMALL_JSON_CHARS} are accepted.")


def _check_placement(value: Any) -> None:
    if isinstance(value, str):
        _check_str("model_config.hf_placement", value, MAX_PLACEMENT_CHARS)
        return
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"model_config.hf_placement = {_show(value)} is neither a preset name nor a list of "
                          "block names.")
    if len(value) > MAX_PLACEMENT_ITEMS:
        raise ConfigError(f"model_config.hf_placement lists {len(value)} blocks; at most {MAX_PLACEMENT_ITEMS} "
                          "are accepted.")
    for i, item in enumerate(value):
        _check_str(f"model_config.hf_placement[{i}]", item)


def _check_temporal(value: Any) -> None:
    """Only the shape: a short list of small dicts. What each entry means is checked where it is built."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"model_config.temporal = {_show(value)} is not a list of operators.")
    if len(value) > MAX_TEMPORAL_OPS:
        raise ConfigError(f"model_config.temporal lists {len(value)} operators; at most {MAX_TEMPORAL_OPS} "
                          "are accepted.")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping) or not all(isinstance(k, str) for k in item):
            raise ConfigError(f"model_config.temporal[{i}] = {_show(item)} is not an object with string keys.")
        _check_small_json(f"model_config.temporal[{i}]", dict(item))


def _check_convention(value: Any) -> None:
    if value is None:
        return
    field = "model_config.input_convention"
    if not isinstance(value, Mapping):
        raise ConfigError(f"{field} = {_show(value)} is not an object.")
    _check_small_json(field, dict(value))
    order = value.get("channel_order")
    if order not in ("RGB", "BGR"):
        raise ConfigError(f"{field}.channel_order = {_show(order)}; expected 'RGB' or 'BGR'.")
    _check_real(f"{field}.scale", value.get("scale"), 0.0, 1e6, True, False)
    for key in ("mean", "std"):
        seq = value.get(key)
        if not isinstance(seq, (list, tuple)) or len(seq) != 3:
            raise ConfigError(f"{field}.{key} = {_show(seq)} is not a list of 3 numbers.")
        for j, x in enumerate(seq):
            _check_real(f"{field}.{key}[{j}]", x, -1e6 if key == "mean" else 0.0, 1e6, key == "std", False)


#: field -> check of its value. Fields not listed (future ones) are left to ``ModelConfig.from_dict``.
_FIELD_CHECKS: dict[str, Any] = {
    "backbone": lambda v: _check_str("model_config.backbone", v, allow_empty=False),
    "width_mult": lambda v: _check_real("model_config.width_mult", v, 0.0, MAX_WIDTH_MULT, True, False),
    "num_classes": lambda v: check_int("model_config.num_classes", v, 1, MAX_NUM_CLASSES, " classes"),
    "num_segments": lambda v: check_int("model_config.num_segments", v, 1, MAX_NUM_SEGMENTS, " frames per clip"),
    "input_size": lambda v: check_int("model_config.input_size", v, MIN_INPUT_SIZE, MAX_INPUT_SIZE, " pixels"),
    "consensus": lambda v: _check_str("model_config.consensus", v, allow_empty=False),
    "hf_placement": _check_placement,
    "hf_conservative": lambda v: _check_bool("model_config.hf_conservative", v),
    "hf_impl": lambda v: _check_str("model_config.hf_impl", v, allow_empty=False),
    "dropout": lambda v: _check_real("model_config.dropout", v, 0.0, 1.0, False, True),
    "input_convention": _check_convention,
    "name": lambda v: _check_str("model_config.name", v),
    "temporal": _check_temporal,
    "consensus_args": lambda v: _check_small_json("model_config.consensus_args", v),
}


def check_model_config(config: Any) -> dict[str, Any]:
    """Type- and range-check every known field of a model config dict (as stored in a checkpoint).

    Returns the dict unchanged; raises ``ConfigError`` naming the field, its value and the accepted range.
    Nothing is built. Missing fields keep ``ModelConfig``'s defaults; unknown ones are left to
    ``ModelConfig.from_dict``.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"model_config = {_show(config)} is not an object.")
    if not all(isinstance(k, str) for k in config):
        raise ConfigError("model_config has a key that is not a string.")
    for key, check in _FIELD_CHECKS.items():
        if key in config:
            check(config[key])
    return dict(config)


def check_class_names(names: Any, num_classes: int | None = None) -> list[str]:
    """A list of at most ``MAX_NUM_CLASSES`` strings of bounded length (and ``num_classes`` of them if given)."""
    if not isinstance(names, (list, tuple)):
        raise ConfigError(f"class_names = {_show(names)} is not a list.")
    if len(names) > MAX_NUM_CLASSES:
        raise ConfigError(f"class_names lists {len(names)} names; at most {MAX_NUM_CLASSES} are accepted.")
    for i, name in enumerate(names):
        _check_str(f"class_names[{i}]", name, MAX_CLASS_NAME_CHARS)
    if num_classes is not None and len(names) != num_classes:
        raise ConfigError(f"lists {len(names)} class names for {num_classes} classes.")
    return list(names)


def check_format_version(value: Any, newest: int) -> int:
    """A checkpoint's ``format_version``: an integer from 1 to ``newest``."""
    if not _is_int(value) or value < 1:
        raise ConfigError(f"format_version = {_show(value)} is not a format version (a positive integer).")
    if value > newest:
        raise ConfigError(f"was written by a newer hfnet (format {value}; this hfnet reads up to {newest}).",
                          hint="Upgrade hfnet.")
    return int(value)


# --- memory of a model ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelMemory:
    """What a model of one config needs in memory, in bytes, estimated without allocating it."""

    parameter_bytes: int  # parameters and buffers, as built (float32)
    activation_bytes: int  # ACTIVATION_SAFETY x the peak of live tensors while one clip runs (inference)
    bookkeeping_bytes: int  # Python-side structures the meta device cannot see (TRN's relation lists)
    activations_measured: bool = True  # False: the meta forward failed; activations are not counted

    @property
    def total(self) -> int:
        return self.parameter_bytes + self.activation_bytes + self.bookkeeping_bytes

    def describe(self) -> str:
        parts = [f"{format_bytes(self.parameter_bytes)} of parameters"]
        if self.activations_measured:
            parts.append(f"{format_bytes(self.activation_bytes)} of activations for one clip")
        if self.bookkeeping_bytes:
            parts.append(f"{format_bytes(self.bookkeeping_bytes)} of TRN relation lists")
        return f"{format_bytes(self.total)} ({', '.join(parts)})"


def format_bytes(n: float) -> str:
    """``n`` bytes for a message: MiB below a quarter GiB, GiB above."""
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def _trn_bound(num_segments: int, feature_dim: int = 256) -> tuple[int, int]:
    """(bookkeeping, activation) bytes of a TRN head over ``num_segments`` frames, from the formula.

    ``heads.TRNHead`` keeps at most ``TRN_MAX_EVAL_RELATIONS`` frame tuples per scale (k = T..2) as index
    tensors and, at evaluation, gathers each scale's tuples into one (R, k * feature_dim) float tensor;
    heads beyond ``TRN_MAX_SEGMENTS`` frames are refused before anything is computed.
    """
    from .heads import TRN_MAX_EVAL_RELATIONS, TRN_MAX_SEGMENTS

    t = num_segments
    if t > TRN_MAX_SEGMENTS:
        raise ResourceLimitError(f"model_config.num_segments = {t}: a TRN head over {t} frames is refused (one MLP "
                                 f"per scale grows quadratically; at most {TRN_MAX_SEGMENTS} frames per clip).")
    counts = {k: min(math.comb(t, k), TRN_MAX_EVAL_RELATIONS) for k in range(2, t + 1)}
    bookkeeping = sum(c * k * 8 for k, c in counts.items())
    gather = max((c * k * feature_dim * 4 for k, c in counts.items()), default=0)
    return bookkeeping, int(ACTIVATION_SAFETY * gather)


def _config_dict(config: Any) -> dict[str, Any]:
    return dict(config.to_dict() if hasattr(config, "to_dict") else config)


def _build_meta(config: dict[str, Any]) -> nn.Module:
    from .model import ModelConfig, VideoClassifier

    try:
        with torch.device("meta"):
            return VideoClassifier(ModelConfig.from_dict(config))
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"model_config describes a model hfnet cannot build ({e}).") from None


class _PeakLive(torch.utils._python_dispatch.TorchDispatchMode):
    """Tracks the bytes of live tensors that ops allocate (views and in-place results share storage and are
    not counted); a tensor's bytes are released when Python frees it, as on a real device."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _release(self, n: int) -> None:
        self.live -= n

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, (tuple, list)) else (out,)
        for ret, value in zip(func._schema.returns, results):
            if ret.alias_info is not None:
                continue
            for t in value if isinstance(value, (tuple, list)) else (value,):
                if isinstance(t, Tensor):
                    n = t.numel() * t.element_size()
                    self.live += n
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(t, self._release, n)
        return out


def _peak_activation_bytes(model: nn.Module, num_segments: int, input_size: int) -> int:
    model.eval()
    run = getattr(model, "inspect", None) or model  # inspect = what the app runs: logits, features, gates
    tracker = _PeakLive()
    with torch.device("meta"), torch.no_grad(), tracker:
        run(torch.empty(1, num_segments, 3, input_size, input_size))  # the input clip counts too
    return tracker.peak


def _prebound(config: dict[str, Any]) -> tuple[int, int]:
    """Analytic (bookkeeping, activation) bytes for what construction or evaluation allocates superlinearly."""
    if str(config.get("consensus", "")).lower() == "trn":
        from .model import ModelConfig

        args = config.get("consensus_args") or {}
        dim = args.get("img_feature_dim", 256) if isinstance(args, Mapping) else 256
        return _trn_bound(int(config.get("num_segments", ModelConfig.num_segments)),
                          dim if _is_int(dim) and 0 < dim <= 65536 else 256)
    return 0, 0


@functools.lru_cache(maxsize=64)
def _estimate_cached(key: str) -> ModelMemory:
    config = json.loads(key)
    bookkeeping, _ = _prebound(config)
    model = _build_meta(config)
    params = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    cfg = model.config
    try:
        peak = _peak_activation_bytes(model, cfg.num_segments, cfg.input_size)
    except (NotImplementedError, RuntimeError, ValueError) as e:
        if isinstance(e, NotImplementedError) or "meta" in str(e).lower():
            # an op without a meta kernel (or one that reads values): count parameters only
            return ModelMemory(params, 0, bookkeeping, activations_measured=False)
        raise ConfigError(f"model_config describes a model that cannot run on a clip of {cfg.num_segments} "
                          f"frames of {cfg.input_size} px ({' '.join(str(e).split())[:200]}).") from None
    return ModelMemory(params, int(ACTIVATION_SAFETY * peak), bookkeeping)


def estimate_model_memory(config: Any) -> ModelMemory:
    """The memory a model of ``config`` (a dict or ``ModelConfig``) needs for one clip, never allocated.

    The config is checked first (``check_model_config``); results are cached per config.
    """
    d = check_model_config(_config_dict(config))
    return _estimate_cached(json.dumps(d, sort_keys=True, default=str))


def _within_limit(d: dict[str, Any], path: Any, max_bytes: int | None) -> ModelMemory:
    limit = max_model_bytes(max_bytes)
    try:
        bookkeeping, activation = _prebound(d)
    except ResourceLimitError as e:  # a structural bound (TRN frames): name the file
        raise ResourceLimitError(path=path, problem=e.problem, hint="Check the frame count the file records.") from None
    if bookkeeping + activation > limit:  # refused before anything is constructed
        raise _too_big(path, f"its TRN head over {d.get('num_segments')} frames would need "
                             f"{format_bytes(bookkeeping + activation)} for its frame relations alone", limit)
    need = _estimate_cached(json.dumps(d, sort_keys=True, default=str))
    if need.total > limit:
        raise _too_big(path, f"the model it describes would need {need.describe()}", limit)
    return need


def checked_meta_model(config: Any, path: str | os.PathLike[str] | None = None,
                       max_bytes: int | None = None) -> nn.Module:
    """The model of ``config`` on the meta device, once its fields and memory are within the limits.

    Its ``state_dict()`` gives every key and shape a file must supply, so callers can check a file against
    the model before building the real one. Raises ``ConfigError`` (a field) or ``ResourceLimitError``.
    """
    d = check_model_config(_config_dict(config))
    _within_limit(d, path, max_bytes)
    return _build_meta(d)


def check_model_memory(config: Any, path: str | os.PathLike[str] | None = None,
                       max_bytes: int | None = None) -> ModelMemory:
    """``estimate_model_memory`` with the limit applied (``ResourceLimitError`` above it)."""
    return _within_limit(check_model_config(_config_dict(config)), path, max_bytes)


def _too_big(path: Any, what: str, limit: int) -> ResourceLimitError:
    return ResourceLimitError(
        path=path, problem=f"{what}, over the limit of {format_bytes(limit)}.",
        hint=f"If the file is genuine and this machine has the memory, raise the limit with "
             f"{ENV_MAX_MODEL_BYTES} (bytes, e.g. 16G); see docs/limits.md.")


# --- tensors a file declares -----------------------------------------------------------------------------------


def check_declared_elements(name: str, shape: Any, path: Any = None) -> int:
    """The element count of a declared shape (a list of non-negative ints), within ``MAX_TENSOR_ELEMENTS``."""
    if not isinstance(shape, (list, tuple)) or len(shape) > 16 or not all(_is_int(s) and s >= 0 for s in shape):
        raise ResourceLimitError(path=path, problem=f"tensor {name!r} declares the shape {_show(shape)}, which is "
                                                    "not a list of at most 16 non-negative integers.")
    numel = math.prod(int(s) for s in shape)
    if numel > MAX_TENSOR_ELEMENTS:
        raise ResourceLimitError(path=path, problem=f"tensor {name!r} declares {numel:,} elements "
                                                    f"(shape {list(shape)}); at most {MAX_TENSOR_ELEMENTS:,} "
                                                    "are accepted.", hint="See docs/limits.md.")
    return numel


def _span(t: Tensor) -> int:
    """Number of storage elements a strided tensor reaches (1 + the largest offset)."""
    return 1 + sum((s - 1) * abs(st) for s, st in zip(t.shape, t.stride()) if s > 0)


def check_tensor(name: str, t: Tensor, path: Any = None) -> int:
    """Refuse a tensor with too many elements, or an expanded (stride-0 / overlapping) view; returns its
    materialised size in bytes."""
    check_declared_elements(name, list(t.shape), path)
    n = t.numel()
    if n > 1 and not t.is_sparse and (_span(t) < n or torch._debug_has_internal_overlap(t) == 1):
        full = n * t.element_size()
        raise ResourceLimitError(
            path=path,
            problem=f"tensor {name!r} of shape {list(t.shape)} is an expanded view (strides {list(t.stride())}): "
                    f"its {n:,} elements repeat {_span(t):,} stored values, and written out it would take "
                    f"{format_bytes(full)}.",
            hint="hfnet refuses expanded tensors (they are how a small file turns into a huge one). If the file "
                 "is genuine, re-save it with every tensor cloned (tensor.clone()) and convert that.")
    return n * t.element_size()


def check_tensors(tensors: Mapping[str, Tensor], path: Any = None, max_bytes: int | None = None) -> int:
    """``check_tensor`` on each, and their total materialised size within ``max_model_bytes()``."""
    limit = max_model_bytes(max_bytes)
    total = 0
    for name, t in tensors.items():
        total += check_tensor(name, t, path)
    if total > limit:
        raise _too_big(path, f"its tensors take {format_bytes(total)}", limit)
    return total


__all__ = [
    "MAX_NUM_CLASSES", "MAX_NUM_SEGMENTS", "MIN_INPUT_SIZE", "MAX_INPUT_SIZE", "MAX_WIDTH_MULT",
    "MAX_TENSOR_ELEMENTS", "DEFAULT_MAX_MODEL_BYTES", "ENV_MAX_MODEL_BYTES", "ModelMemory", "max_model_bytes",
    "format_bytes",
    "check_int", "check_model_config", "check_class_names", "check_format_version", "estimate_model_memory",
    "checked_meta_model", "check_model_memory", "check_declared_elements", "check_tensor", "check_tensors",
]
