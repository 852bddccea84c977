"""Atomic file writes: write to a temp file in the same folder, fsync, then rename over the target.

A crash (or SIGKILL) mid-write leaves either the old file or the new one, never a truncated file. A write
that fails - disk full, permission denied, a read-only folder - removes its temp file, leaves the previous
version untouched and raises one ``WriteError`` naming the file and the cause, whichever library did the
writing (torch's zip writer reports a full disk only as ``inline_container.cc: unexpected pos``,
safetensors as ``I/O error ... (os error 28)``; both are translated here).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import HfnetError
from .paths import check_path_text


class WriteError(HfnetError):
    """A file could not be written; nothing partial is left and the previous version (if any) is intact."""

    def __init__(self, path: str | os.PathLike[str], cause: str, hint: str = "") -> None:
        super().__init__(path=path, problem=f"cannot be written: {cause}. The previous version, if any, is "
                                            "untouched and no partial file is left.", hint=hint)
        self.cause = cause


_CAUSES = {
    errno.ENOSPC: ("no space left on device", "Free some space, or write somewhere else, and run it again."),
    errno.EDQUOT: ("disk quota exceeded", "Free some space, or write somewhere else, and run it again."),
    errno.EACCES: ("permission denied", "Choose a folder you can write to, or fix its permissions."),
    errno.EPERM: ("operation not permitted", "Choose a folder you can write to, or fix its permissions."),
    errno.EROFS: ("the file system is read-only", "Choose a folder on a writable file system."),
    errno.EFBIG: ("the file is too large for this file system", "Write it to another file system."),
    errno.EIO: ("an input/output error", "Check the disk (or the network share) and run it again."),
}


def _from_errno(path: Path, code: int | None, text: str) -> WriteError:
    cause, hint = _CAUSES.get(code or -1, (text or "the write failed", ""))
    return WriteError(path, cause, hint)


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def as_write_error(path: str | os.PathLike[str], exc: BaseException) -> WriteError | None:
    """The ``WriteError`` an exception of a writer means, or None when it is not a write failure."""
    p = Path(path)
    if isinstance(exc, WriteError):
        return exc
    if isinstance(exc, OSError):
        return _from_errno(p, exc.errno, exc.strerror or str(exc))
    text = " ".join(str(exc).split())
    m = re.search(r"os error (\d+)", text)  # safetensors (Rust io::Error)
    if m:
        return _from_errno(p, int(m.group(1)), text)
    if "inline_container" in text or "PytorchStreamWriter" in text:  # torch's zip writer
        m = re.search(r"strerror: ([^.\]]+)", text)
        if m:
            for code, (cause, _) in _CAUSES.items():
                if os.strerror(code).lower() == m.group(1).strip().lower():
                    return _from_errno(p, code, cause)
            return WriteError(p, m.group(1).strip())
        free = _free_bytes(p.parent)
        if free is not None and free < 64 * 2**20:
            return _from_errno(p, errno.ENOSPC, "")
        return WriteError(p, f"the PyTorch writer failed ({text[:160]})")
    return None


def _cleanup(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    Any failure of the body or of the commit that is a write failure becomes a ``WriteError``; the temp
    file is removed either way.
    """
    target = Path(check_path_text(path))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise _from_errno(target, e.errno, e.strerror or str(e)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, target)
    except BaseException as e:
        _cleanup(tmp_path)
        mapped = None if isinstance(e, (KeyboardInterrupt, SystemExit)) else as_write_error(target, e)
        if mapped is None or mapped is e:
            raise
        raise mapped from e
    finally:
        _cleanup(tmp_path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"))


class _ErrorKeepingFile:
    """A binary file whose write errors are kept: torch's zip writer replaces them with "unexpected pos"."""

    def __init__(self, f: Any) -> None:
        self._f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self) -> None:
        try:
            self._f.flush()
        except OSError as e:
            self.error = self.error or e
            raise


def torch_save_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """``torch.save(obj)`` to ``path`` atomically, with the real cause (e.g. disk full) in any ``WriteError``."""
    import torch

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as raw:
            f = _ErrorKeepingFile(raw)
            try:
                torch.save(obj, f)  # type: ignore[arg-type]
                raw.flush()
            except RuntimeError:
                if f.error is not None:
                    raise f.error from None
                raise

    return write_atomic(path, write)
