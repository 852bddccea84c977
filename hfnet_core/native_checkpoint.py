"""hfnet's own checkpoint format: safetensors weights + JSON metadata in one file, rebuilt from the file alone.

Why safetensors: loading it never runs code (a pickled ``.pth`` can). The JSON header carries the full
``ModelConfig``, class names, input convention, training summary and library version, so
``load_native_checkpoint`` needs nothing but the path. ``hfnet_core.checkpoint.load_checkpoint`` is the one
entry point for any file (this format or a foreign one, through ``hfnet_core.importers``).

Loading checks before it allocates (``hfnet_core.limits``, docs/limits.md): the header against the file,
every metadata field's type and range, the memory the described model needs (on the meta device), and
every key and shape of the file against that model - only then is the real model built and filled.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from . import __version__
from .atomic import atomic_path
from .errors import CheckpointError, ConfigError, HfnetError
from .limits import check_class_names, check_format_version, check_model_config, checked_meta_model
from .model import ModelConfig, VideoClassifier
from .paths import check_path_text, regular_file_problem
from .safetensors_file import SafetensorsHeader, looks_like_safetensors, read_header, read_tensors

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


def _existing_file(path: str | os.PathLike[str]) -> Path:
    p = Path(check_path_text(path))
    problem = regular_file_problem(p)
    if problem:
        raise CheckpointError(p, problem, "Check the path.")
    return p


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
    """Write ``model`` to ``path`` atomically. ``dtype=torch.float16`` halves the file (floats only).

    A failed write (disk full, permission denied) raises ``atomic.WriteError``; the previous file is intact.
    """
    if len(class_names) != model.config.num_classes:
        raise CheckpointError(
            path, f"{len(class_names)} class names for a model with {model.config.num_classes} classes."
        )
    try:
        check_class_names(list(class_names))
    except ConfigError as e:
        raise CheckpointError(path, e.problem, e.hint) from None
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
    """The JSON metadata of an hfnet checkpoint, without loading weights; every field it describes the
    model with is type- and range-checked (``limits.check_model_config``)."""
    p = _existing_file(path)
    return _hfnet_metadata(p, read_header(p))


def _hfnet_metadata(p: Path, header: SafetensorsHeader) -> dict[str, Any]:
    raw = header.metadata.get("hfnet")
    if raw is None:
        raise CheckpointError(p, "is a safetensors file without hfnet metadata.",
                              "Convert it with `hfnet convert` (see README: Bring your own checkpoint).")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(p, f"has corrupt hfnet metadata ({str(e)[:120]}).") from None
    if not isinstance(meta, dict):
        raise CheckpointError(p, "has corrupt hfnet metadata (not a JSON object).")
    if meta.get("format") != FORMAT:
        raise CheckpointError(p, f"metadata format is {str(meta.get('format'))[:60]!r}, expected {FORMAT!r}.")
    try:
        check_format_version(meta.get("format_version"), FORMAT_VERSION)
        if "model_config" not in meta:
            raise ConfigError("has no model_config in its metadata.")
        config = check_model_config(meta["model_config"])
        check_class_names(meta.get("class_names") or [], config.get("num_classes", ModelConfig.num_classes))
    except ConfigError as e:
        raise CheckpointError(p, e.problem, e.hint) from None
    return meta


def is_native_checkpoint(path: str | os.PathLike[str]) -> bool:
    try:
        read_metadata(path)
        return True
    except CheckpointError:
        return False


def architecture_mismatch(own: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]]) -> list[str]:
    """What keeps ``given`` (key -> shape, from a file) from loading into a model with ``own`` keys and
    shapes: missing keys, unexpected keys, wrong shapes, each listed by name. Empty when they match."""
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    wrong = sorted(k for k in set(own) & set(given) if tuple(own[k]) != tuple(given[k]))
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_short(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_short(unexpected)}")
    if wrong:
        parts.append("wrong shapes: " + _short(
            [f"{k} file {tuple(given[k])} vs model {tuple(own[k])}" for k in wrong]))
    return parts


def _check_architecture(own: dict[str, tuple[int, ...]], given: dict[str, tuple[int, ...]], path: Any) -> None:
    parts = architecture_mismatch(own, given)
    if parts:
        raise CheckpointError(path, "does not match the model architecture: " + "; ".join(parts) + ".",
                              "Check the architecture / class count / HF placement it was trained with.")


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Any = None) -> None:
    """Load with every model key filled and every file key used, else an error naming the leftovers."""
    own = model.state_dict()
    _check_architecture(_shapes(own), _shapes(state), path)
    converted = {k: v.to(own[k].dtype) for k, v in state.items()}
    model.load_state_dict(converted, strict=True)


def _short(items: list[str], n: int = 12) -> str:
    return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")


def load_native_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LoadedCheckpoint:
    """Rebuild a model from an hfnet ``.safetensors`` file alone, in eval mode on ``device``."""
    p = _existing_file(path)
    if not looks_like_safetensors(p):
        raise CheckpointError(p, "is not an hfnet .safetensors checkpoint.",
                              "Load it with hfnet_core.checkpoint.load_checkpoint, which imports foreign formats.")
    header = read_header(p)
    meta = _hfnet_metadata(p, header)
    try:
        meta_model = checked_meta_model(meta["model_config"], p)  # fields, then memory: nothing allocated
        config = ModelConfig.from_dict(meta["model_config"])
    except ConfigError as e:
        raise CheckpointError(p, e.problem, e.hint) from None
    except HfnetError:  # a resource limit, naming the file already
        raise
    except (TypeError, ValueError) as e:
        raise CheckpointError(p, f"has a model config this hfnet cannot build ({e}).") from None
    _check_architecture(_shapes(meta_model.state_dict()), header.shapes(), p)  # before any tensor is read
    model = VideoClassifier(config)
    load_state_dict_strict(model, read_tensors(p, header), p)
    model.to(device).eval()
    return LoadedCheckpoint(model, config, list(meta.get("class_names") or []), meta, file_sha256(p), str(p))


def existing_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path when it names an existing regular file, else a ``CheckpointError`` saying why."""
    return _existing_file(path)
