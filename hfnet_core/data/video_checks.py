"""Checks that keep an untrusted video file from hanging, exhausting or crashing the reader.

Why each check exists:

* **Paths.** A NUL byte, an unencodable name or a path that is too long makes the OS calls underneath
  PyAV raise a bare ``ValueError``/``OSError``; here it becomes one ``VideoDecodeError`` saying so.
* **Regular files only.** Opening a FIFO blocks until someone writes to it (forever, under a data root);
  a device or socket is never a video. They are refused from ``os.stat`` before anything opens them.
* **A time cap on every decode** (``DEFAULT_TIME_LIMIT_S``, overridable per call or with the environment
  variable ``HFNET_DECODE_TIME_LIMIT``): readers check a ``Deadline`` between packets, so a file built
  to be slow ends in a clear error instead of a stuck request or DataLoader worker.
* **Bounded metadata.** Headers are written by anyone: a ``rotate`` tag of ``"1e400"`` overflows
  ``int(float(...))``, a frame rate can be 0/0 or 10^9, a duration negative. Each value is parsed within
  stated bounds; a value outside them is ignored and a note says so.
* **Truncation from evidence.** A header's frame count is only a hint (an AVI with drop frames announces
  more frame slots than it codes). What proves frames were cut off is the file ending inside a container
  element that holds frames (an MP4 'mdat' box, the AVI 'movi' list, a Matroska cluster) - see
  ``structure_cut``; the demuxer failing or flagging a packet as cut short is evidence too.
"""

from __future__ import annotations

import math
import os
import re
import stat
import struct
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

from hfnet_core.errors import HfnetError

__all__ = [
    "VideoDecodeError",
    "DEFAULT_TIME_LIMIT_S",
    "TIME_LIMIT_ENV",
    "Deadline",
    "checked_path",
    "rotation_from_tag",
    "bounded_rotation",
    "bounded_fps",
    "bounded_duration",
    "bounded_count",
    "Cut",
    "structure_cut",
]

FETCH_HINT = "Fetch the file again"
REENCODE_HINT = "Re-encode it, e.g. `ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4`, or remove it from the list"

#: Seconds any one read (probe, index, decode) may take before it is stopped with a VideoDecodeError.
#: Ten seconds decode several thousand 360p frames on a laptop core; no clip hfnet reads needs more.
DEFAULT_TIME_LIMIT_S = 10.0
#: Environment variable that overrides ``DEFAULT_TIME_LIMIT_S`` (seconds; ``inf`` turns the cap off).
TIME_LIMIT_ENV = "HFNET_DECODE_TIME_LIMIT"
#: Frame rates outside (0, MAX_FPS] are header noise, not video.
MAX_FPS = 1000.0
#: Durations above a week (seconds) are header noise.
MAX_DURATION_S = 7 * 24 * 3600.0
#: Frame counts above this are header noise (a week at 1000 fps is less).
MAX_COUNT = 10**9


class VideoDecodeError(HfnetError):
    """A clip that cannot be read; ``.path`` is the file and ``.reason`` what is wrong with it."""

    def __init__(self, path: str | os.PathLike[str], reason: str, hint: str = REENCODE_HINT) -> None:
        self.reason = reason
        super().__init__(f"cannot read {path}: {reason}. {hint}", path=path, problem=reason, hint=hint)


# --------------------------------------------------------------------------------------------------
# Paths and file types


def printable_path(path: object) -> str:
    """The path as text that is safe to print (NUL and control characters escaped, length bounded)."""
    try:
        text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
    except (TypeError, ValueError):
        text = repr(path)
    text = "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)
    return text if len(text) <= 300 else text[:150] + "..." + text[-140:]


_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO), not a regular file (reading it could wait forever for a writer)"),
          (stat.S_ISCHR, "a character device, not a regular file"), (stat.S_ISBLK, "a block device, not a regular file"),
          (stat.S_ISSOCK, "a socket, not a regular file"))


def checked_path(path: str | os.PathLike[str], allow_dir: bool = False) -> tuple[Path, os.stat_result]:
    """``path`` as a ``Path`` plus its ``stat``, or a VideoDecodeError if it must not be opened.

    Only regular, non-empty files pass (and directories when ``allow_dir``: image-folder clips). Nothing is
    opened here, so a FIFO or device is refused before it can block.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise VideoDecodeError(printable_path(path), f"a path must be text, not {type(path).__name__}",
                               "Pass the file's path as a string")
    shown = printable_path(path)
    try:
        text = os.fsdecode(os.fspath(path))
    except (TypeError, ValueError) as e:
        raise VideoDecodeError(shown, f"the path is not valid ({e})", "Check where the path came from") from None
    if "\x00" in text:
        raise VideoDecodeError(shown, "the path contains a NUL byte, which no file name can hold",
                               "Check where the path came from (a list file, a form field)")
    try:
        st = os.stat(text)
    except FileNotFoundError:
        raise VideoDecodeError(shown, "the file does not exist", "Check the path and the dataset root") from None
    except NotADirectoryError:
        raise VideoDecodeError(shown, "the file does not exist (a folder in its path is a file)",
                               "Check the path and the dataset root") from None
    except PermissionError:
        raise VideoDecodeError(shown, "permission denied", "Make the file readable for this user") from None
    except OSError as e:
        raise VideoDecodeError(shown, f"the path cannot be used ({e.strerror or e})",
                               "Check the path (length, symbolic links, the disk)") from None
    except (ValueError, UnicodeError) as e:
        raise VideoDecodeError(shown, f"the path is not valid ({e})", "Check where the path came from") from None
    if stat.S_ISDIR(st.st_mode):
        if allow_dir:
            return Path(text), st
        raise VideoDecodeError(shown, "it is a folder, not a video file", "Give the path of a video file")
    for test, kind in _KINDS:
        if test(st.st_mode):
            raise VideoDecodeError(shown, f"it is {kind}", "Give the path of a video file")
    if not stat.S_ISREG(st.st_mode):
        raise VideoDecodeError(shown, "it is not a regular file", "Give the path of a video file")
    if st.st_size == 0:
        raise VideoDecodeError(shown, "the file is empty (0 bytes)", "The download or copy failed; fetch it again")
    return Path(text), st


# --------------------------------------------------------------------------------------------------
# Time


def default_time_limit() -> float:
    """``HFNET_DECODE_TIME_LIMIT`` when it holds a positive number of seconds, else ``DEFAULT_TIME_LIMIT_S``."""
    raw = os.environ.get(TIME_LIMIT_ENV, "").strip()
    if raw:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if value > 0:  # False for nan
            return value
    return DEFAULT_TIME_LIMIT_S


class Deadline:
    """The moment a read must stop; ``check()`` between packets raises a VideoDecodeError once it has passed."""

    __slots__ = ("path", "limit", "end")

    def __init__(self, path: str | os.PathLike[str], limit: float | None = None) -> None:
        limit = default_time_limit() if limit is None else float(limit)
        if not limit > 0:
            raise ValueError(f"time_limit must be > 0 seconds, got {limit}")
        self.path = path
        self.limit = limit
        self.end = time.monotonic() + limit

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise VideoDecodeError(
                self.path, f"reading it took longer than the {self.limit:g} s time limit",
                f"Re-encode it smaller, or allow more time with time_limit= or {TIME_LIMIT_ENV}=SECONDS")


# --------------------------------------------------------------------------------------------------
# Metadata within bounds: (value, note) - the note says what was ignored and why

_NUMBER = re.compile(r"[+-]?[0-9]{1,9}(\.[0-9]{0,9})?")


def rotation_from_tag(tag: object) -> tuple[int, str | None]:
    """Clockwise degrees in a legacy ``rotate`` tag -> counter-clockwise multiple of 90 (0 when absent/invalid)."""
    if tag is None or tag == "":
        return 0, None
    text = str(tag).strip()
    if not _NUMBER.fullmatch(text):
        return 0, f"ignored the rotate tag {printable_path(text[:40])!r}: not a plain number of degrees"
    return bounded_rotation(-float(text), "rotate tag")


def bounded_rotation(degrees_ccw: object, source: str = "display matrix") -> tuple[int, str | None]:
    """A counter-clockwise angle rounded to 0/90/180/270, or 0 with a note when it is not a finite, sane angle."""
    try:
        value = float(degrees_ccw)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return 0, f"ignored the {source} rotation {degrees_ccw!r}: not a number"
    if not math.isfinite(value) or abs(value) > 3600:
        return 0, f"ignored the {source} rotation {value!r}: not a sane angle"
    quarter = round(value / 90.0)
    if abs(value - 90.0 * quarter) > 5.0:
        return 0, f"ignored the {source} rotation of {value:g} degrees: only multiples of 90 are applied"
    return int(quarter) * 90 % 360, None


def bounded_fps(rate: object) -> tuple[float | None, str | None]:
    """Frames per second from a header rate (Fraction/float/None), or None with a note when outside (0, 1000]."""
    if rate is None:
        return None, None
    try:
        value = float(Fraction(rate)) if not isinstance(rate, float) else rate  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None, f"ignored the frame rate {rate!r} in the header: not a number"
    if value == 0:
        return None, None  # "unknown", as FFmpeg writes it
    if not (math.isfinite(value) and 0 < value <= MAX_FPS):
        return None, f"ignored the frame rate {value:g} fps in the header: outside (0, {MAX_FPS:g}]"
    return value, None


def bounded_duration(seconds: object) -> tuple[float | None, str | None]:
    """A header duration in seconds, or None with a note when negative, infinite or longer than a week."""
    if seconds is None:
        return None, None
    try:
        value = float(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None, f"ignored the duration {seconds!r} in the header: not a number"
    if not (math.isfinite(value) and 0 <= value <= MAX_DURATION_S):
        return None, f"ignored the duration {value:g} s in the header: outside [0, {MAX_DURATION_S:g}]"
    return value, None


def bounded_count(count: object) -> int | None:
    """A header frame count, or None when absent (0) or absurd."""
    try:
        value = int(count)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return None
    return value if 0 < value <= MAX_COUNT else None


# --------------------------------------------------------------------------------------------------
# Where the file ends inside its own container structure
#
# Each walker follows the container's top-level elements by their declared sizes (a few bytes read per
# element, at most _MAX_ELEMENTS) and reports the element that the end of the file cuts through. Media
# elements (MP4 'mdat'/'moof'/'moov', the AVI 'movi' list, a Matroska cluster) mean frames are missing;
# anything else (a trailing index, padding, tags) means the frames are complete and only a note is due.

_MAX_ELEMENTS = 100_000


@dataclass(frozen=True)
class Cut:
    """The file ends inside ``element`` of its container; ``media`` when that element holds frames."""

    element: str
    missing_bytes: int
    media: bool

    def describe(self) -> str:
        where = "frames are missing" if self.media else "the frames themselves are complete"
        return f"the file ends {self.missing_bytes:,} bytes before the end of its {self.element} ({where})"


_ISO_MEDIA = {b"mdat", b"moof", b"moov", b"traf"}


def _iso_cut(f: BinaryIO, size: int) -> Cut | None:
    """MP4/MOV: the top-level box the end of the file cuts through."""
    pos = 0
    for _ in range(_MAX_ELEMENTS):
        if pos + 8 > size:
            return None
        f.seek(pos)
        head = f.read(16)
        box_size, kind = struct.unpack(">I4s", head[:8])
        if not all(32 <= b < 127 for b in kind):
            return None  # not a box header: nothing the container declares here
        if box_size == 1:
            if len(head) < 16:
                return None
            box_size = struct.unpack(">Q", head[8:16])[0]
        elif box_size == 0:
            return None  # "extends to the end of the file"
        if box_size < 8:
            return None
        if pos + box_size > size:
            return Cut(f"'{kind.decode('ascii')}' box", pos + box_size - size, kind in _ISO_MEDIA)
        pos += box_size
    return None


def _riff_cut(f: BinaryIO, size: int) -> Cut | None:
    """AVI: the chunk of a RIFF (or OpenDML 'AVIX') list that the end of the file cuts through."""
    pos = 0
    for _ in range(64):
        if pos + 12 > size:
            return None
        f.seek(pos)
        head = f.read(12)
        if head[:4] != b"RIFF":
            return None
        riff_size = struct.unpack("<I", head[4:8])[0]
        if riff_size == 0:
            return None  # a writer that never finalised the size: no evidence either way
        riff_end = pos + 8 + riff_size
        sub = pos + 12
        for _ in range(_MAX_ELEMENTS):
            if sub + 8 > min(size, riff_end):
                break
            f.seek(sub)
            chunk = f.read(12)
            kind, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
            end = sub + 8 + chunk_size + (chunk_size & 1)
            if sub + 8 + chunk_size > size:
                is_movi = kind == b"LIST" and chunk[8:12] == b"movi"
                name = "'movi' list (the frames)" if is_movi else f"'{kind.decode('latin-1')}' chunk"
                return Cut(name, sub + 8 + chunk_size - size, is_movi)
            sub = end
        if riff_end > size + 1:
            return Cut("RIFF chunk", riff_end - size, False)
        pos = riff_end + (riff_size & 1)
    return None


def _ebml_vint(data: bytes, keep_marker: bool) -> tuple[int, int] | None:
    """(value, length) of a Matroska variable-size integer at the start of ``data``; -1 = "unknown size"."""
    if not data or data[0] == 0:
        return None
    length = 9 - data[0].bit_length()
    if len(data) < length:
        return None
    value = data[0] if keep_marker else data[0] & ((1 << (8 - length)) - 1)
    for b in data[1:length]:
        value = (value << 8) | b
    if not keep_marker and value == (1 << (7 * length)) - 1:
        return -1, length
    return value, length


def _ebml_element(f: BinaryIO, pos: int) -> tuple[int, int, int] | None:
    """(id, data start, data size or -1) of the Matroska element at ``pos``."""
    f.seek(pos)
    head = f.read(12)
    ident = _ebml_vint(head, keep_marker=True)
    if ident is None:
        return None
    length = _ebml_vint(head[ident[1]:], keep_marker=False)
    if length is None:
        return None
    return ident[0], pos + ident[1] + length[1], length[0]


_SEGMENT, _CLUSTER = 0x18538067, 0x1F43B675
_EBML_NAMES = {_CLUSTER: "cluster of frames", 0x1C53BB6B: "index (Cues)", 0x1254C367: "tags",
               0x114D9B74: "seek head", 0x1549A966: "segment info", 0x1654AE6B: "track list", 0xEC: "padding"}


def _ebml_cut(f: BinaryIO, size: int) -> Cut | None:
    """Matroska/WebM: the element of the segment that the end of the file cuts through."""
    head = _ebml_element(f, 0)
    if head is None or head[0] != 0x1A45DFA3 or head[2] < 0:
        return None
    segment = _ebml_element(f, head[1] + head[2])
    if segment is None or segment[0] != _SEGMENT:
        return None
    seg_end = segment[1] + segment[2] if segment[2] >= 0 else None
    pos = segment[1]
    for _ in range(_MAX_ELEMENTS):
        if pos >= size or (seg_end is not None and pos >= seg_end):
            break
        element = _ebml_element(f, pos)
        if element is None or element[2] < 0:
            return None  # unknown-size (live-written) element: nothing to compare with
        ident, start, length = element
        if start + length > size:
            return Cut(f"Matroska {_EBML_NAMES.get(ident, 'element')}", start + length - size,
                       ident in (_CLUSTER, 0x1654AE6B, 0x1549A966))
        pos = start + length
    if seg_end is not None and seg_end > size:
        return Cut("Matroska segment", seg_end - size, False)
    return None


def structure_cut(path: Path, size: int) -> Cut | None:
    """Where the end of the file cuts through its container's structure (MP4, AVI, Matroska), or None when
    the structure fits the file or the format declares no sizes."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"styp", b"pnot"):
                return _iso_cut(f, size)
            if head[:4] == b"RIFF":
                return _riff_cut(f, size)
            if head[:4] == b"\x1a\x45\xdf\xa3":
                return _ebml_cut(f, size)
    except (OSError, struct.error):
        return None
    return None
