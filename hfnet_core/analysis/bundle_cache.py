"""One read-only copy of each eval bundle per process, shared by every app session.

Why: a Streamlit server runs every browser session in the same process. ``st.cache_data`` hands each
session its own (unpickled) copy, so at 24,777 clips every session cost ~120 MB per bundle. Here a
bundle is loaded once (memory-mapped where its file allows it: see ``hfnet_core.eval_bundle``) and the
same ``EvalBundle`` object is returned to every caller, with arrays that cannot be written - a session
that tried to modify one would get ``ValueError: assignment destination is read-only`` instead of
silently changing what other sessions see. Its lists (``clip_ids``, ``paths``, ``class_names``) and
``metadata`` are shared too: treat them as read-only (``EvalBundle.row_of`` and ``predictions`` are
computed once and shared).

Key = resolved path + mtime + size + inode, so a bundle rewritten by ``hfnet eval`` (an atomic rename:
new inode) is reloaded on the next call, and the stale entry is dropped. At most ``max_entries``
bundles stay loaded (least recently used first out; ``HFNET_BUNDLE_CACHE_ENTRIES``, default 8).
Thread-safe: concurrent first calls for one bundle load it once.

``derived(bundle_path, name, compute)`` memoises per-bundle results (an alignment, a confusion matrix)
under the same key, dropped with the bundle.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, TypeVar

from hfnet_core.eval_bundle import EvalBundle
from hfnet_core.errors import BundleError

__all__ = ["BundleCache", "shared_bundle", "derived", "default_cache", "file_key"]

T = TypeVar("T")


def file_key(path: str | os.PathLike[str]) -> tuple[str, int, int, int]:
    """(resolved path, mtime_ns, size, inode) - changes whenever the file is replaced or rewritten."""
    p = Path(path)
    try:
        resolved = p.resolve(strict=True)
        st = resolved.stat()
    except FileNotFoundError as e:
        raise BundleError(f"{p}: no such eval bundle.", path=p) from e
    except OSError as e:
        raise BundleError(f"{p}: cannot read this eval bundle ({e}).", path=p) from e
    return str(resolved), st.st_mtime_ns, st.st_size, st.st_ino


class BundleCache:
    """A bounded, thread-safe map from bundle files to shared read-only ``EvalBundle`` objects."""

    def __init__(self, max_entries: int | None = None) -> None:
        env = os.environ.get("HFNET_BUNDLE_CACHE_ENTRIES", "")
        self.max_entries = max(1, int(max_entries if max_entries is not None else (env or 8)))
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[EvalBundle, dict[str, Any]]] = OrderedDict()
        self._loading: dict[tuple, threading.Lock] = {}
        self.loads = 0  # how many times a file was actually read (for tests and benchmarks)

    def get(self, path: str | os.PathLike[str]) -> EvalBundle:
        """The shared bundle at ``path`` (loaded with ``mmap=True`` on first use). Raises ``BundleError``."""
        return self._entry(path)[0]

    def derived(self, path: str | os.PathLike[str], name: str, compute: Callable[[EvalBundle], T]) -> T:
        """``compute(bundle)`` once per bundle version and ``name``; later calls return the same object."""
        bundle, memo = self._entry(path)
        with self._lock:
            if name in memo:
                return memo[name]
        value = compute(bundle)
        with self._lock:
            return memo.setdefault(name, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _entry(self, path: str | os.PathLike[str]) -> tuple[EvalBundle, dict[str, Any]]:
        key = file_key(path)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:
                self._entries.move_to_end(key)
                return hit
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one loader per key; the others wait here and then find the entry
            with self._lock:
                hit = self._entries.get(key)
                if hit is not None:
                    return hit
            try:
                bundle = EvalBundle.load(key[0], mmap=True)
            except BaseException:
                with self._lock:
                    self._loading.pop(key, None)
                raise
            with self._lock:
                self.loads += 1
                for old in [k for k in self._entries if k[0] == key[0]]:
                    del self._entries[old]  # an older version of the same file
                entry = (bundle, {})
                self._entries[key] = entry
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                self._loading.pop(key, None)
                return entry


_default: BundleCache | None = None
_default_lock = threading.Lock()


def default_cache() -> BundleCache:
    """The process-wide cache (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = BundleCache()
        return _default


def shared_bundle(path: str | os.PathLike[str]) -> EvalBundle:
    """The process-wide shared, read-only bundle at ``path`` (see the module docstring)."""
    return default_cache().get(path)


def derived(path: str | os.PathLike[str], name: str, compute: Callable[[EvalBundle], T]) -> T:
    """``BundleCache.derived`` on the process-wide cache."""
    return default_cache().derived(path, name, compute)
