"""Read a safetensors file only after its header has been checked against the file itself.

Why: the header is 8 bytes of length and a JSON object that *declares* every tensor's dtype, shape and byte
range. The ``safetensors`` library validates it too, but reports problems as a bare ``SafetensorError``
(and hfnet must name the file and say what to do). Checking first also means nothing is allocated for a
header that claims more than the file holds: every declared tensor must lie inside the file, the tensors
must tile the data section exactly, and each is within ``limits.MAX_TENSOR_ELEMENTS``.

Layout: ``u64 little-endian N`` | ``N bytes of JSON`` | data. The JSON maps names to
``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the data section), plus an
optional ``"__metadata__"`` object of string values.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from .errors import CheckpointError
from .limits import check_declared_elements
from .paths import check_path_text

#: The safetensors library's own ceiling for the JSON header.
MAX_HEADER_BYTES = 100_000_000

#: bytes per element of each dtype the format defines
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
               "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}

_TRUNCATED = "Is the file truncated (an interrupted copy or download)? Compare its size with the original."


def _bad(p: Path, what: str, hint: str = "") -> CheckpointError:
    return CheckpointError(p, f"is not a readable safetensors file: {what}", hint)


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # byte offsets in the data section
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    """A checked header: every entry lies inside the file."""

    path: str
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str] = field(default_factory=dict)
    data_start: int = 0

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: e.shape for k, e in self.tensors.items()}


def looks_like_safetensors(path: str | os.PathLike[str]) -> bool:
    """Does the file start like a safetensors file (a plausible length, then ``{``)? Reads 9 bytes.

    A file named ``*.safetensors`` counts as one whatever its bytes, so ``read_header`` explains what is
    wrong with it instead of another reader guessing.
    """
    p = Path(check_path_text(path))
    if p.suffix.lower() == ".safetensors":
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(9)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= MAX_HEADER_BYTES


def read_header(path: str | os.PathLike[str]) -> SafetensorsHeader:
    """The file's header, checked: length within the file, JSON object, known dtypes, shapes that match
    their byte ranges, ranges that tile the data section. Raises ``CheckpointError`` naming the problem."""
    p = Path(check_path_text(path))
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise _bad(p, f"{size} bytes, shorter than the 8-byte header length.", _TRUNCATED)
            n = int.from_bytes(head, "little")
            if n == 0 or n > MAX_HEADER_BYTES:
                raise _bad(p, f"its header length field says {n:,} bytes (at most {MAX_HEADER_BYTES:,} are "
                              "valid).", "Is it a safetensors file at all?")
            if n > size - 8:
                raise _bad(p, f"its header says {n:,} bytes but the file has only {size - 8:,} after the "
                              "length field.", _TRUNCATED)
            raw = f.read(n)
    except OSError as e:
        raise CheckpointError(p, f"cannot be read ({e.strerror or e}).", "Check the path and its permissions.") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise _bad(p, f"its header is not valid JSON ({str(e)[:120]}).", _TRUNCATED) from None
    if not isinstance(header, dict):
        raise _bad(p, "its header is not a JSON object.")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(p, "its __metadata__ is not an object of strings.")
    data_len = size - 8 - n
    tensors = {name: _entry(p, name, spec, data_len) for name, spec in header.items()}
    _check_tiling(p, tensors, data_len)
    return SafetensorsHeader(str(p), tensors, dict(metadata), 8 + n)


def _entry(p: Path, name: str, spec: Any, data_len: int) -> TensorEntry:
    if not isinstance(spec, dict):
        raise _bad(p, f"the header entry {name[:80]!r} is not an object.")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise _bad(p, f"it declares tensor {name[:80]!r} with the unknown dtype {str(dtype)[:20]!r}.")
    numel = check_declared_elements(name[:80], shape, p)
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)):
        raise _bad(p, f"it declares tensor {name[:80]!r} with invalid data_offsets {str(offsets)[:60]}.")
    begin, end = offsets
    if end < begin or end - begin != numel * DTYPE_BYTES[dtype]:
        raise _bad(p, f"it declares tensor {name[:80]!r} of shape {list(shape)} {dtype} "
                      f"({numel * DTYPE_BYTES[dtype]:,} bytes) over the byte range {begin}..{end}.",
                   "The header is corrupt.")
    if end > data_len:
        raise _bad(p, f"it declares tensor {name[:80]!r} at bytes {begin:,}..{end:,} of its data, but the "
                      f"file holds only {data_len:,} bytes of data.", _TRUNCATED)
    return TensorEntry(dtype, tuple(int(s) for s in shape), begin, end)


def _check_tiling(p: Path, tensors: dict[str, TensorEntry], data_len: int) -> None:
    """Tensors must cover the data section exactly once: no gaps, no overlaps, nothing after."""
    at = 0
    for name, e in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if e.begin != at:
            what = "overlaps the previous tensor" if e.begin < at else f"leaves a gap at byte {at:,}"
            raise _bad(p, f"tensor {name[:80]!r} {what}.", "The header is corrupt.")
        at = e.end
    if at != data_len:
        raise _bad(p, f"its tensors end at byte {at:,} of {data_len:,} data bytes.",
                   "The file has trailing bytes or a corrupt header.")


def read_tensors(path: str | os.PathLike[str], header: SafetensorsHeader | None = None) -> dict[str, torch.Tensor]:
    """Every tensor of the file (CPU), after ``read_header`` (pass its result to skip re-reading it)."""
    header = header or read_header(path)
    try:
        with safe_open(header.path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in header.tensors}
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError) as e:
        raise _bad(Path(header.path), f"its weights cannot be read ({' '.join(str(e).split())[:200]}).",
                   _TRUNCATED) from None


__all__ = ["MAX_HEADER_BYTES", "TensorEntry", "SafetensorsHeader", "looks_like_safetensors", "read_header",
           "read_tensors"]
