"""Read a foreign checkpoint file without ever running code from it.

* safetensors files are read with ``safetensors`` (tensors only, by design), after their header has been
  checked against the file (``hfnet_core.safetensors_file``).
* Pickle-based files (``.pth``, ``.pth.tar``, ``.pt``, ``.ckpt``; zip or legacy format) are read only with
  ``torch.load(path, map_location="cpu", weights_only=True)``: the unpickler builds tensors, containers
  and numbers and refuses every other global. A file that would need to import and call something else
  (a class of the training code, ``os.system``, ...) is refused with the names it asked for.

Bounded before and after loading (docs/limits.md): a zip container's central directory is read first, so
an entry that would inflate far beyond its compressed size (a zip bomb), a pickle record over
``MAX_PICKLE_BYTES`` or more tensor data than ``limits.max_model_bytes()`` is refused before any of it is
decompressed; every loaded tensor is then checked for its element count and for expansion (stride 0),
before anything materialises it.

A short, fixed list of *inert* metadata types found in real checkpoints is let through, so those files do
not need re-saving: ``argparse.Namespace`` (training args), numpy scalars/arrays (``best_prec1`` saved as a
numpy float), and mmengine's ``HistoryBuffer`` (logging history in mmaction2 1.x files), which is replaced by
a ``MetadataPlaceholder`` that stores its state and runs nothing of the original class.
"""

from __future__ import annotations

import argparse
import os
import pickle
import pickletools
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from ..errors import CheckpointError, ResourceLimitError
from ..limits import check_tensor, format_bytes, max_model_bytes
from ..paths import check_path_text, regular_file_problem
from ..safetensors_file import looks_like_safetensors, read_header, read_tensors

#: A pickle record (``data.pkl``) above this is not a checkpoint: real ones are kilobytes to a few MB.
MAX_PICKLE_BYTES = 64 * 2**20
#: A compressed zip entry may inflate at most this much (torch.save never compresses; float weights
#: compress by < 1.2x, so only a zip bomb comes near it). Entries under 1 MiB are exempt.
MAX_INFLATION = 20
#: How many containers (dicts, lists, ...) of a loaded object are walked looking for tensors.
MAX_WALK_NODES = 2_000_000


class MetadataPlaceholder:
    """Stands in for a metadata object of a training framework; keeps its pickled state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<placeholder for {type(self).__qualname__}>"


def _inert_globals() -> list[Any]:
    """(object, "module.name") pairs the unpickler may use in addition to torch's own allowlist."""
    import numpy as np

    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]

    items: list[Any] = [(argparse.Namespace, "argparse.Namespace"),
                        (MetadataPlaceholder, "mmengine.logging.history_buffer.HistoryBuffer")]
    # numpy scalars and arrays (torch's documented recipe), under both numpy 1 and numpy 2 module names.
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        items += [(multiarray.scalar, f"{mod}.scalar"), (multiarray._reconstruct, f"{mod}._reconstruct")]
    items += [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for dt in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_, np.uint8):
        cls = type(np.dtype(dt))
        items.append((cls, f"numpy.dtypes.{cls.__name__}"))
    return items


#: Phrases of torch's weights-only unpickler that mean "this file asks to run code".
_CODE_MARKERS = ("Unsupported global", "unrecognized function", "Can only build", "Can only create new object",
                 "is blocked", "Unsupported class")


def read_pickled(path: str | os.PathLike[str], max_bytes: int | None = None) -> Any:
    """The object stored in a ``torch.save`` / pickle file, loaded with ``weights_only=True`` on the CPU.

    The container is checked before loading (``check_container``) and every tensor after it
    (``check_loaded_tensors``); ``max_bytes`` overrides ``limits.max_model_bytes()``.
    """
    p = Path(check_path_text(path))
    problem = regular_file_problem(p)
    if problem:
        raise CheckpointError(p, problem, "Check the path.")
    if p.stat().st_size == 0:
        raise CheckpointError(p, "is empty.")
    check_container(p, max_bytes)
    obj = _load(p)
    check_loaded_tensors(obj, p, max_bytes)
    return obj


def _load(p: Path) -> Any:
    try:
        with torch.serialization.safe_globals(_inert_globals()), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        needs = _unsafe_globals(p) or _global_from_message(msg)
        if needs or any(m in msg for m in _CODE_MARKERS):
            what = f" ({', '.join(needs)})" if needs else ""
            raise CheckpointError(
                p,
                f"would need to run code to be unpickled{what}: loading it means importing and calling those "
                "objects, and hfnet never runs code from a checkpoint file.",
                "If you trust the file, re-save only its tensors in the environment that wrote it, e.g. "
                "`torch.save({'state_dict': ckpt['state_dict']}, 'clean.pth')`, and convert that.",
            ) from None
        raise _corrupt(p, msg) from None
    except MemoryError:
        raise CheckpointError(p, "cannot be read: loading it ran out of memory.",
                              "Is it a checkpoint at all? See docs/limits.md.") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, LookupError, AttributeError, TypeError,
            ArithmeticError, struct.error, AssertionError, NotImplementedError) as e:  # torch checks a damaged file
        raise _corrupt(p, f"{type(e).__name__}: {e}") from None


def check_container(path: str | os.PathLike[str], max_bytes: int | None = None) -> None:
    """Refuse a zip-format pickle whose central directory declares a zip bomb, an oversized pickle record
    or more data than the memory limit - read from the directory alone, before anything is inflated.

    Legacy (non-zip) pickles store their tensors raw, so what they can allocate is bounded by the file.
    """
    p = Path(path)
    try:
        if not zipfile.is_zipfile(p):
            return
        with zipfile.ZipFile(p) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error, NotImplementedError) as e:
        raise _corrupt(p, f"{type(e).__name__}: {e}") from None
    limit = max_model_bytes(max_bytes)
    total = 0
    for info in infos:
        total += info.file_size
        name = info.filename[:120]
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > max(2**20, MAX_INFLATION * info.compress_size):
            raise ResourceLimitError(
                path=p, problem=f"its zip entry {name!r} would inflate from {info.compress_size:,} to "
                                f"{info.file_size:,} bytes ({info.file_size / max(info.compress_size, 1):,.0f}x), "
                                f"more than the {MAX_INFLATION}x hfnet accepts: this is how a zip bomb looks.",
                hint="torch.save never compresses; if the file is genuine, re-save it with torch.save and "
                     "convert that (docs/limits.md).")
        if name.endswith(".pkl") and info.file_size > MAX_PICKLE_BYTES:
            raise ResourceLimitError(path=p, problem=f"its pickle {name!r} is {format_bytes(info.file_size)}; a checkpoint's "
                                                     f"pickle is at most {format_bytes(MAX_PICKLE_BYTES)}.",
                                     hint="Is it a checkpoint at all? See docs/limits.md.")
    if total > limit:
        raise ResourceLimitError(path=p, problem=f"it holds {format_bytes(total)} of data once unpacked, over the limit of "
                                                 f"{format_bytes(limit)}.",
                                 hint=f"If the file is genuine and this machine has the memory, raise "
                                      f"HFNET_MAX_MODEL_BYTES (docs/limits.md).")


def check_loaded_tensors(obj: Any, path: str | os.PathLike[str], max_bytes: int | None = None) -> int:
    """Walk a loaded object (each container once) and ``limits.check_tensor`` every tensor in it; their
    distinct storages must fit the memory limit. Returns the materialised bytes of all tensors."""
    limit = max_model_bytes(max_bytes)
    seen: set[int] = set()
    stack: list[tuple[str, Any]] = [("", obj)]
    total = 0
    nodes = 0
    while stack:
        name, item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        nodes += 1
        if nodes > MAX_WALK_NODES:
            raise ResourceLimitError(path=path, problem=f"holds more than {MAX_WALK_NODES:,} objects; a checkpoint "
                                                        "holds tensors and a little metadata.")
        if isinstance(item, torch.Tensor):
            total += check_tensor(name or "<top level>", item, path)
            if total > limit:
                raise ResourceLimitError(path=path, problem=f"its tensors take more than {format_bytes(limit)} once "
                                                            "materialised, over the limit.",
                                         hint="Raise HFNET_MAX_MODEL_BYTES if the file is genuine (docs/limits.md).")
        elif isinstance(item, Mapping):
            stack.extend((f"{name}.{k}" if name else str(k), v) for k, v in item.items())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((f"{name}[{i}]", v) for i, v in enumerate(item))
        elif isinstance(item, argparse.Namespace):
            stack.append((name, vars(item)))
    return total


def _corrupt(p: Path, msg: str) -> CheckpointError:
    if "WeightsUnpickler error:" in msg:  # torch's long preamble carries no information here
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in msg.splitlines() if line.strip()]
    detail = lines[0].split(". ")[0] if lines else "unknown error"
    if "legacy .tar format" in detail:
        return CheckpointError(p, "is in PyTorch's pre-0.4 .tar format, which cannot be read safely.",
                               "Re-save it with a current PyTorch (torch.save) and convert that.")
    if _looks_like_zip(p) or "zip archive" in detail:
        what = f"its zip archive is damaged or incomplete ({detail[:200]})"
    else:
        what = f"it is neither a torch.save zip archive nor a pickle that can be read safely ({detail[:200]})"
    return CheckpointError(
        p, f"cannot be read as a PyTorch checkpoint: {what}.",
        "Is the file truncated (an interrupted download?) or not a checkpoint at all? Compare its size "
        "or checksum with the original.",
    )


def _looks_like_zip(p: Path) -> bool:
    """Whether the file ends in a zip end-of-archive record. ``zipfile.is_zipfile`` itself raises on some
    damaged records (a ZIP64 locator naming several disks), which means the file *is* a damaged zip."""
    try:
        return zipfile.is_zipfile(p)
    except zipfile.BadZipFile:
        return True
    except (OSError, ValueError, struct.error):
        return False


def _global_from_message(msg: str) -> list[str]:
    """The global torch's weights-only unpickler refused, as it names it ("Unsupported global: GLOBAL x.y")."""
    m = re.search(r"(?:Unsupported global|global):\s*GLOBAL\s+([\w.]+)", msg)
    return [m.group(1)] if m else []


def _unsafe_globals(p: Path) -> list[str]:
    """Globals the file asks for beyond what the weights-only unpickler allows, found by a static scan of
    its pickle opcodes (nothing is executed)."""
    try:
        with torch.serialization.safe_globals(_inert_globals()):
            if _looks_like_zip(p):
                return sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(p)))
            allowed = set(torch._weights_only_unpickler._get_allowed_globals())
            allowed |= set(torch._weights_only_unpickler._get_user_allowed_globals())
    except Exception:
        return []
    return sorted(g for g in _scan_legacy_globals(p) if g not in allowed)


def _scan_legacy_globals(p: Path, max_pickles: int = 4) -> set[str]:
    """module.name of every GLOBAL / STACK_GLOBAL in the first pickles of a non-zip file."""
    found: set[str] = set()
    with open(p, "rb") as f:
        for _ in range(max_pickles):
            strings: list[str] = []
            try:
                for op, arg, _pos in pickletools.genops(f):
                    if op.name == "GLOBAL":
                        found.add(str(arg).replace(" ", "."))
                    elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                        found.add(f"{strings[-2]}.{strings[-1]}")
                    elif isinstance(arg, str) and "UNICODE" in op.name:
                        strings.append(arg)
                    if op.name == "STOP":
                        break
                else:
                    break
            except Exception:  # end of the pickles, or raw storage bytes
                break
    return found


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, header metadata) of a safetensors file, its header checked against the file first."""
    header = read_header(path)
    return read_tensors(path, header), dict(header.metadata)


__all__ = ["MetadataPlaceholder", "read_pickled", "check_container", "check_loaded_tensors", "read_safetensors",
           "looks_like_safetensors"]
