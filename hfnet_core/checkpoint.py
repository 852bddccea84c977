"""hfnet checkpoints: safetensors weights + JSON metadata in one file, rebuilt from the file alone.

Why safetensors: loading it never runs code (a pickled ``.pth`` can). The JSON header carries the full
``ModelConfig``, class names, input convention, training summary and library version, so ``load_checkpoint``
needs nothing but the path. Foreign formats (TSN/TSM/GSM ``.pth``, mmaction2, torchvision) go through
``hfnet_core.importers``, which reads pickles only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from . import __version__
from .atomic import atomic_path
from .errors import CheckpointError
from .model import ModelConfig, VideoClassifier

FORMAT = "hfnet-checkpoint"
FORMAT_VERSION = 2  # 2: model configs describe temporal operators (``temporal``); 1 had ``hf_*`` fields


@dataclass
class LoadedCheckpoint:
    model: VideoClassifier
    config: ModelConfig
    class_names: list[str]
    metadata: dict[str, Any]
    sha256: str
    path: str = ""
    #: For imported foreign files: what was mapped / dropped (empty for native checkpoints).
    import_report: dict[str, Any] = field(default_factory=dict)


def file_sha256(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: VideoClassifier,
    class_names: list[str],
    training: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` to ``path`` atomically. ``dtype=torch.float16`` halves the file (floats only)."""
    if len(class_names) != model.config.num_classes:
        raise CheckpointError(
            path, f"{len(class_names)} class names for a model with {model.config.num_classes} classes."
        )
    tensors = {}
    kept_fp32 = []
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if dtype is not None and v.is_floating_point():
            low = v.to(dtype)
            # BN running variances of a 0-255 input easily exceed fp16's 65504: never let a smaller
            # dtype turn a finite value into inf (that silently breaks every prediction).
            if bool(torch.isfinite(low).all()) or not bool(torch.isfinite(v).all()):
                v = low
            else:
                kept_fp32.append(k)
        tensors[k] = v.contiguous()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hfnet_version": __version__,
        "model_config": model.config.to_dict(),
        "class_names": list(class_names),
        "input_convention": model.input_convention.to_dict(),
        "training": training or {},
        "extra": extra or {},
        "kept_float32": kept_fp32,
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"hfnet": json.dumps(meta)})
    return Path(path)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of an hfnet checkpoint, without loading weights."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "no such file.", "Check the path.")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = (f.metadata() or {}).get("hfnet")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(p, f"is not a readable safetensors file ({e}).",
                              "Is it truncated, or a checkpoint of another codebase (try `hfnet convert`)?") from e
    if raw is None:
        raise CheckpointError(p, "is a safetensors file without hfnet metadata.",
                              "Convert it with `hfnet convert` (see README: Bring your own checkpoint).")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(p, f"has corrupt hfnet metadata ({e}).") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(p, f"metadata format is {meta.get('format')!r}, expected {FORMAT!r}.")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(p, f"was written by a newer hfnet (format {meta['format_version']}).",
                              "Upgrade hfnet.")
    return meta


def is_native_checkpoint(path: str | os.PathLike[str]) -> bool:
    try:
        read_metadata(path)
        return True
    except CheckpointError:
        return False


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Any = None) -> None:
    """Load with every model key filled and every file key used, else an error naming the leftovers."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_short(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
        if wrong:
            parts.append("wrong shapes: " + _short(
                [f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong]))
        raise CheckpointError(path, "does not match the model architecture: " + "; ".join(parts) + ".",
                              "Check the architecture / class count / HF placement it was trained with.")
    converted = {k: v.to(own[k].dtype) for k, v in state.items()}
    model.load_state_dict(converted, strict=True)


def _short(items: list[str], n: int = 12) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                    **import_options: Any) -> LoadedCheckpoint:
    """Rebuild a model from a checkpoint file alone, in eval mode on ``device``.

    Files named ``*.safetensors`` or starting with a safetensors header are read as native hfnet files
    (a corrupt or foreign one raises ``CheckpointError``); anything else is handed to
    ``hfnet_core.importers`` (which auto-detects TSN/TSM/GSM/mmaction2/torchvision formats and needs
    ``import_options`` such as ``num_segments`` where the file does not record them).
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "no such file.", "Check the path.")
    if p.suffix.lower() != ".safetensors" and not _looks_like_safetensors(p):  # by name or by content
        from .importers import import_checkpoint  # foreign formats

        loaded = import_checkpoint(p, **import_options)
        loaded.model.to(device).eval()
        return loaded
    meta = read_metadata(p)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        model = VideoClassifier(config)
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(p, f"has a model config this hfnet cannot build ({e}).") from e
    class_names = list(meta.get("class_names") or [])
    if len(class_names) != config.num_classes:
        raise CheckpointError(p, f"lists {len(class_names)} class names for {config.num_classes} classes.")
    try:
        with safe_open(str(p), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(p, f"weights cannot be read ({e}).", "The file may be truncated.") from e
    load_state_dict_strict(model, state, p)
    model.to(device).eval()
    return LoadedCheckpoint(model, config, class_names, meta, file_sha256(p), str(p))


def _looks_like_safetensors(p: Path) -> bool:
    """safetensors = 8-byte little-endian header length, then a JSON object."""
    with open(p, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return p.suffix == ".safetensors"  # let read_metadata explain what is wrong
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n <= p.stat().st_size
