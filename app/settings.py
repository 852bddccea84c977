"""Where the explorer finds things and what it allows: environment, folders, limits, the path policy.

Environment: ``HFNET_CHECKPOINT_DIR`` (default ``checkpoints/``), ``HFNET_SAMPLES_DIR`` (default
``checkpoints/samples/``), ``HFNET_DATA_ROOT`` (clips may be opened only from under it),
``HFNET_MAX_UPLOAD_MB`` (default 100), ``HFNET_TORCH_THREADS`` (default 1, see ``configure_torch``).

**One path policy** for everything a user names - a typed model path, a clip under the data root, a
listed checkpoint: the path is resolved (``..`` and symlinks followed) and must end up inside one of its
roots. A symlink that points out of its root is refused, wherever it sits.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hfnet_core.analysis.clips import ClipError
from hfnet_core.errors import CheckpointError
from hfnet_core.paths import PathError, resolve_inside

__all__ = [
    "REPO_ROOT", "DEFAULT_A", "DEFAULT_B", "MODEL_SUFFIXES", "checkpoint_dir", "samples_dir", "data_root",
    "max_upload_bytes", "configure_torch", "device", "list_checkpoints", "file_stamp", "inside",
    "user_file", "model_path", "clip_path",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_A = "hf_tsn_demo.safetensors"
DEFAULT_B = "tsn_demo.safetensors"
MODEL_SUFFIXES = (".safetensors", ".pth", ".pt", ".tar", ".ckpt")


def checkpoint_dir() -> Path:
    return Path(os.environ.get("HFNET_CHECKPOINT_DIR") or REPO_ROOT / "checkpoints").expanduser()


def samples_dir() -> Path:
    return Path(os.environ.get("HFNET_SAMPLES_DIR") or REPO_ROOT / "checkpoints" / "samples").expanduser()


def data_root() -> Path | None:
    root = os.environ.get("HFNET_DATA_ROOT")
    return Path(root).expanduser().resolve() if root else None


def max_upload_bytes() -> int:
    return int(float(os.environ.get("HFNET_MAX_UPLOAD_MB", "100")) * 1024 * 1024)


def configure_torch() -> None:
    """One intra-op thread per inference (``HFNET_TORCH_THREADS``, default 1).

    The server runs each browser session in its own thread; on a small shared CPU, several sessions each
    asking torch for every core oversubscribe it. Measured on this 2-core machine under load: two demo
    ``inspect`` passes took 1.7-2.8 s with 2 threads and 0.08-0.2 s with 1.
    """
    want = int(os.environ.get("HFNET_TORCH_THREADS", "1") or 1)
    if want > 0 and torch.get_num_threads() != want:
        torch.set_num_threads(want)


def device() -> str:
    """CUDA when available, else CPU."""
    from hfnet_core.device import pick_device

    return str(pick_device())


def file_stamp(path: Path) -> tuple[int, int]:
    """(mtime, size): part of every cache key of a file, so a rewritten file is read again."""
    s = path.stat()
    return s.st_mtime_ns, s.st_size


def inside(path: Path, roots: list[Path]) -> Path | None:
    """``path`` resolved (``..`` and symlinks followed) when it lies inside one of ``roots``, else None
    (``hfnet_core.paths.resolve_inside``: the one path policy of the library, the CLI and the app)."""
    try:
        return resolve_inside(roots, path, kind="any")
    except PathError:
        return None


def list_checkpoints() -> list[Path]:
    """``*.safetensors`` files of the checkpoint folder that the path policy lets the app open."""
    d = checkpoint_dir()
    if not d.is_dir():
        return []
    return sorted(p for p in d.glob("*.safetensors") if p.is_file() and inside(p, [d]) is not None)


def user_file(typed: str, suffixes: tuple[str, ...], what: str = "file") -> Path:
    """A file the user typed: relative to the checkpoint folder; it must resolve inside that folder or the
    data root (``hfnet_core.paths.resolve_inside``) and end in one of ``suffixes``. Raises ``PathError`` /
    ``CheckpointError`` saying which rule it breaks."""
    roots = [checkpoint_dir()] + ([data_root()] if data_root() else [])
    where = "the checkpoint folder" + (" or the data root" if data_root() else "")
    resolved = resolve_inside(roots, typed.strip(), kind="file", what=where)
    if resolved.suffix.lower() not in suffixes:
        raise CheckpointError(resolved, f"has an unexpected extension for a {what}; expected one of "
                                        f"{', '.join(suffixes)}.")
    return resolved


def model_path(typed: str) -> Path:
    """A model the user typed or picked from the list, by the path policy (``user_file``)."""
    return user_file(typed, MODEL_SUFFIXES, "checkpoint")


def clip_path(relative: str) -> Path:
    """A clip under the data root, by the same policy as ``model_path``. Raises ``ClipError`` / ``PathError``."""
    root = data_root()
    if root is None:
        raise ClipError("clips open from a folder only under a data root; set HFNET_DATA_ROOT.")
    return resolve_inside(root, relative.strip(), kind="file", what="the data root")