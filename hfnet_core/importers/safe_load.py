"""Read a foreign checkpoint file without ever running code from it.

* safetensors files are read with ``safetensors`` (tensors only, by design).
* Pickle-based files (``.pth``, ``.pth.tar``, ``.pt``, ``.ckpt``; zip or legacy format) are read only with
  ``torch.load(path, map_location="cpu", weights_only=True)``: the unpickler builds tensors, containers
  and numbers and refuses every other global. A file that would need to import and call something else
  (a class of the training code, ``os.system``, ...) is refused with the names it asked for.

A short, fixed list of *inert* metadata types found in real checkpoints is let through, so those files do
not need re-saving: ``argparse.Namespace`` (training args), numpy scalars/arrays (``best_prec1`` saved as a
numpy float), and mmengine's ``HistoryBuffer`` (logging history in mmaction2 1.x files), which is replaced by
a ``MetadataPlaceholder`` that stores its state and runs nothing of the original class.
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import pickletools
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from ..checkpoint import CheckpointError


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


def read_pickled(path: str | os.PathLike[str]) -> Any:
    """The object stored in a ``torch.save`` / pickle file, loaded with ``weights_only=True`` on the CPU."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "no such file.", "Check the path.")
    if p.stat().st_size == 0:
        raise CheckpointError(p, "is empty.")
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
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError,
            AttributeError, TypeError) as e:
        raise _corrupt(p, f"{type(e).__name__}: {e}") from None


def _corrupt(p: Path, msg: str) -> CheckpointError:
    if "WeightsUnpickler error:" in msg:  # torch's long preamble carries no information here
        msg = msg.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in msg.splitlines() if line.strip()]
    detail = lines[0].split(". ")[0] if lines else "unknown error"
    if "legacy .tar format" in detail:
        return CheckpointError(p, "is in PyTorch's pre-0.4 .tar format, which cannot be read safely.",
                               "Re-save it with a current PyTorch (torch.save) and convert that.")
    if zipfile.is_zipfile(p) or "zip archive" in detail:
        what = f"its zip archive is damaged or incomplete ({detail[:200]})"
    else:
        what = f"it is neither a torch.save zip archive nor a pickle that can be read safely ({detail[:200]})"
    return CheckpointError(
        p, f"cannot be read as a PyTorch checkpoint: {what}.",
        "Is the file truncated (an interrupted download?) or not a checkpoint at all? Compare its size "
        "or checksum with the original.",
    )


def _global_from_message(msg: str) -> list[str]:
    """The global torch's weights-only unpickler refused, as it names it ("Unsupported global: GLOBAL x.y")."""
    m = re.search(r"(?:Unsupported global|global):\s*GLOBAL\s+([\w.]+)", msg)
    return [m.group(1)] if m else []


def _unsafe_globals(p: Path) -> list[str]:
    """Globals the file asks for beyond what the weights-only unpickler allows, found by a static scan of
    its pickle opcodes (nothing is executed)."""
    try:
        with torch.serialization.safe_globals(_inert_globals()):
            if zipfile.is_zipfile(p):
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
    """(tensors, header metadata) of a safetensors file."""
    p = Path(path)
    try:
        with safe_open(str(p), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(p, f"is not a readable safetensors file ({e}).",
                              "Is it truncated? Compare its size with the original.") from None


def looks_like_safetensors(path: str | os.PathLike[str]) -> bool:
    """safetensors = 8-byte little-endian header length, then a JSON object."""
    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return p.suffix == ".safetensors"
    n = int.from_bytes(head[:8], "little")
    return head[8:9] == b"{" and 0 < n <= p.stat().st_size
