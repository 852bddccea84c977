"""One family for every error hfnet raises on purpose: which file, what is wrong, what to do.

Every deliberate failure - a checkpoint that cannot be used, a clip that cannot be decoded, a bundle, a
config value, a dataset, a resource limit - is an ``HfnetError``. The CLI prints its one line and exits
non-zero (a traceback only with ``--debug``); the app shows it and keeps serving. Anything that is *not*
an ``HfnetError`` is a bug in hfnet and is reported as one.

The subclasses keep their historical call signatures (``CheckpointError(path, problem, hint)``,
``VideoDecodeError(path, reason, hint)``, ``BundleError(message)``, ...) and all derive from
``ValueError`` as they always did, so ``except ValueError`` keeps working.
"""

from __future__ import annotations

import os


class HfnetError(ValueError):
    """Base class. ``path`` (may be None), ``problem`` and ``hint`` are kept apart for callers that show
    them separately; ``str(e)`` is the one line for logs and terminals."""

    def __init__(self, message: str = "", *, path: str | os.PathLike[str] | None = None,
                 problem: str | None = None, hint: str | None = None) -> None:
        self.path = str(path) if path is not None else None
        self.problem = problem if problem is not None else message
        self.hint = hint or ""
        if not message:
            where = f"{self.path}: " if self.path else ""
            message = f"{where}{self.problem}" + (f" {self.hint}" if self.hint else "")
        elif self.hint and self.hint not in message:  # what to do is part of the one line
            message = f"{message} {self.hint}"
        super().__init__(message)

    def one_line(self) -> str:
        """The message on one line (newlines folded), for terminals and skip logs."""
        return " ".join(str(self).split())


class CheckpointError(HfnetError):
    """A checkpoint cannot be used; the message names the file, the problem and what to do."""

    def __init__(self, path: str | os.PathLike[str] | None, problem: str, hint: str = "") -> None:
        super().__init__(path=path, problem=problem, hint=hint)


class ConfigError(HfnetError):
    """A configuration value (training config, model config, CLI option) is missing, mistyped or out of range."""

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, hint: str = "") -> None:
        super().__init__(path=path, problem=message, hint=hint)


class BundleError(HfnetError):
    """An eval bundle (or its projection cache) cannot be read or does not fit what it is used with."""


class DatasetError(HfnetError):
    """A dataset cannot be opened (missing root, list or category file, empty split)."""


class ResourceLimitError(HfnetError):
    """A file or request would need more memory, elements or time than hfnet allows (see docs/limits.md)."""


def describe(exc: BaseException) -> str:
    """One line for any exception: an ``HfnetError``'s own message, else its type and text."""
    if isinstance(exc, HfnetError):
        return exc.one_line()
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = ["HfnetError", "CheckpointError", "ConfigError", "BundleError", "DatasetError", "ResourceLimitError",
           "describe"]

