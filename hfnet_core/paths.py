"""One policy for paths a user types: it must resolve, symlinks followed, to a place inside its root.

Why one policy: the app used to follow symlinks out of the checkpoint folder for model paths while clip
paths refused them, so what a user could reach depended on which box they typed into. The rule is now the
same everywhere a user-given path is confined (the app's model and clip boxes, the data root):

* a relative path is taken relative to the (first) root; an absolute path is accepted as it is;
* the path is resolved - ``..`` removed, every symlink followed - and the result must lie inside one of
  the roots (each root itself resolved, so a root that is a symlink works);
* where a file is expected it must exist and be a regular file (a FIFO would block a reader forever, a
  device or a folder is never a checkpoint or a clip);
* a NUL byte, which no file system accepts, is refused with this error rather than Python's bare
  ``ValueError: embedded null byte``.

So a symlink *inside* a root that points inside a root is fine; one that points anywhere else is refused,
whoever placed it. Whoever runs the app and wants files elsewhere sets the root there
(``HFNET_CHECKPOINT_DIR``, ``HFNET_DATA_ROOT``). The check happens when the path is resolved; a file
swapped for a symlink after that (by someone with write access to the root) is outside what this can stop.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Sequence

from .errors import HfnetError


class PathError(HfnetError):
    """A user-given path cannot be used: a NUL byte, outside its root, missing, or not a regular file."""


def check_path_text(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, refusing NUL bytes (and non-path types) with a ``PathError``."""
    try:
        text = os.fspath(path)
    except TypeError:
        raise PathError(f"{path!r} is not a path.") from None
    if isinstance(text, bytes):
        try:
            text = os.fsdecode(text)
        except UnicodeDecodeError:
            raise PathError(f"{text!r}: the path is not valid text.") from None
    if "\x00" in text:
        shown = text.replace("\x00", "\\0")[:200]
        raise PathError(f"{shown!r}: the path contains a NUL byte, which no file name can hold.",
                        hint="Check where the path came from (a config value, a pasted string).")
    return text


def _describe_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def regular_file_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` cannot be read as a file ("no such file.", "is a FIFO (named pipe), not a regular
    file."), or None when it is a regular file. Callers wrap the text in their own error type."""
    try:
        mode = os.stat(check_path_text(path)).st_mode
    except FileNotFoundError:
        return "no such file."
    except NotADirectoryError:
        return "no such file (a part of the path is not a folder)."
    except OSError as e:
        return f"cannot be opened ({e.strerror or e})."
    if not stat.S_ISREG(mode):
        return f"is {_describe_kind(mode)}, not a regular file."
    return None


def _resolve(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop (RuntimeError before Python 3.13)
        raise PathError(f"{p}: cannot be resolved ({e}).", hint="Is there a symlink loop?") from None


def resolve_inside(root: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], path: str | os.PathLike[str],
                   *, kind: str = "file", what: str = "the root") -> Path:
    """The resolved ``path``, if it lies inside ``root`` (or one of several roots); else a ``PathError``.

    Args:
        root: one folder or several; a relative ``path`` is joined to the first.
        path: what the user typed.
        kind: ``"file"`` (must exist and be a regular file), ``"dir"`` (must be an existing folder) or
            ``"any"`` (may not exist yet, e.g. a file about to be written).
        what: how messages name the root(s), e.g. "the checkpoint folder".
    """
    if kind not in ("file", "dir", "any"):
        raise ValueError(f"kind must be 'file', 'dir' or 'any', not {kind!r}")
    roots = [root] if isinstance(root, (str, os.PathLike)) else list(root)
    if not roots:
        raise PathError(f"{check_path_text(path)}: there is no folder it may be opened from.")
    bases = [_resolve(Path(check_path_text(r))) for r in roots]
    text = check_path_text(path)
    if not text.strip():
        raise PathError("the path is empty.")
    target = _resolve(bases[0] / text)  # an absolute ``text`` replaces the base
    if not any(target.is_relative_to(b) for b in bases):
        where = " or ".join(str(b) for b in bases)
        raise PathError(f"{text}: resolves to {target}, outside {what} ({where}); only files inside it can be opened.",
                        hint="Symlinks are followed before this check: a link that leaves the folder is refused. "
                             "Copy the file into the folder, or point the folder setting where the file is.")
    if kind == "file":
        problem = regular_file_problem(target)
        if problem:
            where = f" (looked in {what}: {bases[0]})" if problem.startswith("no such") else ""
            raise PathError(f"{text}: {problem}{where}")
    elif kind == "dir" and not target.is_dir():
        raise PathError(f"{text}: is not a folder in {what} ({bases[0]}).")
    return target


__all__ = ["PathError", "check_path_text", "regular_file_problem", "resolve_inside"]
