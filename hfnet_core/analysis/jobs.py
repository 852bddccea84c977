"""Background jobs for the explorer: a small shared pool with keys, progress, ETA, queue positions, cancel.

Why a pool of its own: the explorer runs every browser session in one server process on a laptop-class
CPU. A full-width Integrated Gradients run or a 25k-point t-SNE takes tens of seconds; run in a request it
blocks the page, run unbounded in many sessions it starves all of them. So every such computation is a
*job*: submitted under a key (the same key from two sessions is one job), queued FIFO behind at most
``workers`` running jobs, reporting ``progress(fraction, message)``, cancellable, and optionally cached
on disk so a result is computed once per machine.

Workers
-------
``JobPool(workers, mode)``; the process-wide pool is ``shared_pool()``:

* ``workers`` - how many jobs run at once. Default ``HFNET_JOB_WORKERS`` or 1: on a 2-core machine one
  job at a time leaves a core for every other session (measured in ``benchmarks/bench_jobs.py``).
* ``mode="process"`` (the shared pool's default, ``HFNET_JOB_MODE``): each worker slot owns one child
  process (``python -m hfnet_core.analysis.jobs``, talking over a socket pair), started on first use and
  kept until it has been idle ``idle_s`` seconds (its memory - torch, a model, IG activations - is then
  returned to the system). The child runs at ``nice`` +10 and
  with ``OMP_NUM_THREADS`` = ``torch_threads`` (default 1, ``HFNET_JOB_TORCH_THREADS``), so the server
  process and its sessions keep priority and their own thread settings. This is the mode for torch and
  umap work: a thread could not lower its priority without lowering torch's shared intra-op pool for
  every session, and umap's numba code holds the GIL. Job functions must then be importable
  (module-level) and their arguments and results picklable (plain data; arrays). The parent only ever
  unpickles what its own child sent.
* ``mode="thread"``: jobs run in the slot threads (numpy work that releases the GIL, and tests).

Cancellation is cooperative: a job calls ``ctx.check()`` (raises ``JobCancelled``) or reads
``ctx.cancelled`` between units of work. In process mode a job that does not stop within
``kill_after_s`` of the request (e.g. inside a umap fit) has its process terminated; the next job gets a
fresh one. Several sessions can *own* one job (``submit(..., owner=session)``): ``cancel(key, owner)``
only stops it when no other owner is left.

ETA: from the measured rate once a job has reported some progress, else from the ``eta_hint_s`` the
submitter gave; a queued job's ETA adds the remaining time of the jobs ahead of it.

Memory: a finished job keeps its result (not its arguments) until it is one of more than
``keep_finished`` (32) finished jobs; results cached on disk can always be read again from there.

Nothing here imports streamlit or torch.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import threading
import time
import traceback
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from hfnet_core.atomic import atomic_path

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobPool",
    "JobStatus",
    "NpzResultCache",
    "ResultCache",
    "shared_pool",
]

STATES = ("queued", "running", "done", "failed", "cancelled", "missing")


class JobCancelled(Exception):
    """Raised inside a job (by ``JobContext.check``) once its cancellation was requested."""


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job (safe to keep: it never changes)."""

    key: str
    state: str  # one of STATES; "missing" = no such job (never submitted, or forgotten)
    fraction: float = 0.0  # 0..1
    message: str = ""
    queue_position: int | None = None  # 1 = runs next; None unless queued
    elapsed_s: float = 0.0  # running time so far (or in total, once finished)
    eta_s: float | None = None  # seconds until done (for a queued job: including the wait); None = unknown
    result: Any = None
    error: str | None = None
    cached: bool = False  # the result was read from its disk cache: nothing was computed
    description: str = ""

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


class ResultCache(Protocol):
    """Where a job's result lives on disk: ``load()`` (None if absent or unreadable) and ``store``."""

    def load(self) -> Any | None: ...

    def store(self, result: Any) -> None: ...


class NpzResultCache:
    """A result that is a ``dict`` of numpy arrays and JSON-able scalars, in one uncompressed ``.npz``.

    Arrays are stored as they are; everything else goes into one JSON member, so the file holds no
    pickles (``np.load(allow_pickle=False)``). Written atomically; an unreadable file counts as absent.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Any] | None:
        try:
            with np.load(self.path, allow_pickle=False) as z:
                out: dict[str, Any] = {k: z[k] for k in z.files if k != "__json__"}
                if "__json__" in z.files:
                    out.update(json.loads(str(z["__json__"][()])))
            return out
        except Exception:  # noqa: BLE001 - a damaged file (zipfile and numpy fail in many ways) counts as absent
            return None

    def store(self, result: dict[str, Any]) -> None:
        arrays = {k: v for k, v in result.items() if isinstance(v, np.ndarray)}
        scalars = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
        arrays["__json__"] = np.array(json.dumps(scalars))
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)


class JobContext:
    """What a running job sees: ``progress``, ``cancelled`` and ``check``."""

    def __init__(self, report: Callable[[float, str], None], is_cancelled: Callable[[], bool]) -> None:
        self._report = report
        self._is_cancelled = is_cancelled

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1] (clipped) with a short message ("t-SNE: iteration 250 of 750")."""
        self._report(float(min(1.0, max(0.0, fraction))), str(message))

    @property
    def cancelled(self) -> bool:
        return bool(self._is_cancelled())

    def check(self) -> None:
        """Raise ``JobCancelled`` if cancellation was requested (call between units of work)."""
        if self._is_cancelled():
            raise JobCancelled("cancelled")


@dataclass
class _Job:
    key: str
    target: Callable[..., Any] | str
    kwargs: dict[str, Any]
    description: str
    cache: ResultCache | None
    eta_hint_s: float | None
    owners: set[Any] = field(default_factory=set)
    state: str = "queued"
    fraction: float = 0.0
    message: str = ""
    submitted: float = field(default_factory=time.monotonic)
    started: float | None = None
    ended: float | None = None
    result: Any = None
    error: str | None = None
    cached: bool = False
    cancel_requested: bool = False
    cancel_time: float | None = None
    first_report: tuple[float, float] | None = None  # (time, fraction) of the first report above 0
    last_report: float | None = None


def _target_name(fn: Callable[..., Any] | str) -> str:
    if isinstance(fn, str):
        return fn
    module, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", "")
    if not module or "<" in qual or module == "__main__":
        raise ValueError(f"{fn!r} cannot run in a worker process: pass a module-level function "
                         "(or 'module:function'), not a lambda, closure or a function of __main__")
    return f"{module}:{qual}"


def _resolve(target: str) -> Callable[..., Any]:
    module, _, qual = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qual.split("."):
        obj = getattr(obj, part)
    return obj


def _lower_priority(nice: int) -> None:
    """Raise this thread's (Linux) or process's nice value by ``nice``; best effort."""
    if nice <= 0:
        return
    try:
        if hasattr(os, "setpriority") and hasattr(threading, "get_native_id"):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        else:
            os.nice(nice)
    except (OSError, AttributeError):
        pass


# --- the child process of a worker slot ---------------------------------------------------------------

def _child_main(fd: int, nice: int, idle_s: float) -> None:
    """Loop of a worker process (``python -m hfnet_core.analysis.jobs --worker FD ...``): run the jobs the
    parent sends over the inherited socket ``fd`` until told to stop, or idle for ``idle_s`` seconds.

    A reader thread receives messages (``run``, ``cancel``, ``stop``) so a cancel request arrives while a
    job runs; only the main thread sends (progress and results).
    """
    import queue
    from multiprocessing.connection import Connection

    _lower_priority(nice)
    conn = Connection(fd)
    inbox: queue.Queue = queue.Queue()
    cancel = threading.Event()
    current: list[int | None] = [None]
    current_lock = threading.Lock()

    def reader() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the parent has gone: stop what runs, then exit
                cancel.set()
                inbox.put(("stop",))
                return
            if msg[0] == "cancel":
                with current_lock:
                    if current[0] == msg[1]:
                        cancel.set()
            else:
                inbox.put(msg)
                if msg[0] == "stop":
                    return

    threading.Thread(target=reader, name="hfnet-job-reader", daemon=True).start()
    while True:
        try:
            msg = inbox.get(timeout=idle_s)
        except queue.Empty:
            try:
                conn.send(("idle-exit",))
            except OSError:
                pass
            return
        if msg[0] == "stop":
            return
        _, job_id, target, kwargs = msg
        with current_lock:
            current[0] = job_id
            cancel.clear()

        def report(fraction: float, message: str) -> None:
            try:
                conn.send(("progress", fraction, message))
            except OSError:  # the parent has gone: stop the job
                cancel.set()

        ctx = JobContext(report, cancel.is_set)
        try:
            result = _resolve(target)(ctx, **kwargs)
            reply: tuple = ("done", result)
        except JobCancelled:
            reply = ("cancelled",)
        except BaseException as e:  # noqa: BLE001 - reported to the parent; the worker lives on
            from hfnet_core.errors import describe

            reply = ("error", describe(e), traceback.format_exc(limit=20))
        with current_lock:
            current[0] = None
        try:
            conn.send(reply)
        except OSError:  # the parent has gone
            return
        except Exception as e:  # noqa: BLE001 - e.g. a result that cannot be pickled
            conn.send(("error", f"the job's result cannot be sent back ({type(e).__name__}: {e})", ""))


class _ChildProcess:
    """One worker process and its socket (owned by one slot thread).

    Started with ``subprocess`` as ``python -m hfnet_core.analysis.jobs``, not with ``multiprocessing``:
    spawn re-imports the parent's ``__main__``, which inside Streamlit is the page script being run.
    The child gets this process's ``sys.path`` (so every importable job function stays importable),
    ``OMP_NUM_THREADS`` & co. = ``torch_threads`` before anything creates a thread pool, and one end of
    a socket pair.
    """

    def __init__(self, pool: "JobPool") -> None:
        import socket
        import subprocess
        import sys
        from multiprocessing.connection import Connection

        parent_sock, child_sock = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
            env[var] = str(pool.torch_threads)
        fd = child_sock.fileno()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hfnet_core.analysis.jobs", "--worker", str(fd), str(pool.nice), str(pool.idle_s)],
            env=env, pass_fds=(fd,), stdin=subprocess.DEVNULL, close_fds=True)
        child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.next_id = 0
        _children.add(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()

    def stop(self, timeout: float = 2.0) -> None:
        import subprocess

        try:
            if self.alive():
                self.conn.send(("stop",))
        except (OSError, BrokenPipeError, ValueError):
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        try:
            self.conn.close()
        except OSError:
            pass
        _children.discard(self)


_children: set[_ChildProcess] = set()


@atexit.register
def _stop_children() -> None:
    """At interpreter exit, stop worker processes at once (an idle one would otherwise keep the exit
    waiting until its idle timeout)."""
    for child in list(_children):
        try:
            child.stop(timeout=1.0)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# --- the pool ------------------------------------------------------------------------------------------

class JobPool:
    """A FIFO queue of keyed jobs run by ``workers`` slots (threads, or threads driving child processes)."""

    def __init__(self, workers: int | None = None, mode: str | None = None, name: str = "hfnet-jobs",
                 nice: int = 10, torch_threads: int | None = None, idle_s: float = 300.0,
                 kill_after_s: float = 10.0, keep_finished: int = 32) -> None:
        self.workers = max(1, int(workers if workers is not None else (os.environ.get("HFNET_JOB_WORKERS") or 1)))
        self.mode = (mode or os.environ.get("HFNET_JOB_MODE") or "process").lower()
        if self.mode not in ("process", "thread"):
            raise ValueError(f"job pool mode must be 'process' or 'thread', not {self.mode!r}")
        self.name = name
        self.nice = int(nice)
        self.torch_threads = max(1, int(torch_threads if torch_threads is not None
                                        else (os.environ.get("HFNET_JOB_TORCH_THREADS") or 1)))
        self.idle_s = float(idle_s)
        self.kill_after_s = float(kill_after_s)
        self.keep_finished = int(keep_finished)
        self._lock = threading.Condition()
        self._jobs: OrderedDict[str, _Job] = OrderedDict()
        self._queue: list[str] = []
        self._threads: list[threading.Thread] = []
        self._closed = False

    # -- public API ---------------------------------------------------------------------------------

    def submit(self, key: str, fn: Callable[..., Any] | str, kwargs: dict[str, Any] | None = None, *,
               description: str = "", cache: ResultCache | None = None, owner: Any = None,
               eta_hint_s: float | None = None, retry: bool = False) -> JobStatus:
        """Queue ``fn(ctx, **kwargs)`` under ``key`` unless that job is already queued, running or done.

        A failed job is resubmitted only with ``retry=True``; a cancelled one always is. With ``cache``,
        a result already on disk is returned at once (``cached=True``) and a new one is stored there.
        ``owner`` (e.g. a session id) is recorded for ``cancel``. Returns the job's status.
        """
        target = fn if self.mode == "thread" else _target_name(fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("this job pool has been shut down")
            job = self._jobs.get(key)
            if job is not None and (job.state in ("queued", "running", "done")
                                    or (job.state == "failed" and not retry)):
                if owner is not None and job.state in ("queued", "running"):
                    job.owners.add(owner)
                return self._status(job)
        hit = cache.load() if cache is not None else None
        with self._lock:
            job = _Job(key, target, dict(kwargs or {}), description, cache, eta_hint_s)
            if owner is not None:
                job.owners.add(owner)
            self._jobs[key] = job
            self._jobs.move_to_end(key)
            if hit is not None:
                job.state, job.result, job.cached, job.fraction = "done", hit, True, 1.0
                job.started = job.ended = time.monotonic()
                job.message = "read from the disk cache"
            else:
                self._queue.append(key)
                self._ensure_threads()
                self._lock.notify_all()
            self._forget_old()
            return self._status(job)

    def status(self, key: str) -> JobStatus:
        """The job's current status (``state="missing"`` for an unknown key)."""
        with self._lock:
            job = self._jobs.get(key)
            return self._status(job) if job is not None else JobStatus(key, "missing")

    def cancel(self, key: str, owner: Any = None) -> bool:
        """Request cancellation. With ``owner``, only that owner lets go; the job stops once no owner is
        left. Returns True if the job is (being) cancelled."""
        with self._lock:
            job = self._jobs.get(key)
            if job is None or job.state not in ("queued", "running"):
                return False
            if owner is not None:
                job.owners.discard(owner)
                if job.owners:
                    return False
            if job.state == "queued":
                self._queue.remove(key)
                job.state, job.ended, job.message = "cancelled", time.monotonic(), "cancelled before it started"
            else:
                job.cancel_requested = True
                job.cancel_time = time.monotonic()
                job.message = "cancelling…"
            self._lock.notify_all()
            return True

    def wait(self, key: str, timeout: float | None = None) -> JobStatus:
        """Block until the job has finished (or ``timeout`` seconds passed); returns its status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                job = self._jobs.get(key)
                if job is None or job.state not in ("queued", "running"):
                    return self._status(job) if job is not None else JobStatus(key, "missing")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return self._status(job)
                self._lock.wait(0.1 if left is None else min(0.1, left))

    def statuses(self) -> list[JobStatus]:
        """Every job the pool remembers, oldest first."""
        with self._lock:
            return [self._status(j) for j in self._jobs.values()]

    def forget(self, key: str) -> None:
        """Drop a finished job from memory (its disk cache stays)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.state not in ("queued", "running"):
                del self._jobs[key]

    def shutdown(self, cancel_running: bool = True, timeout: float = 10.0) -> None:
        """Cancel what is queued (and, by default, what runs), stop the workers and their processes."""
        with self._lock:
            self._closed = True
            for key in list(self._queue):
                job = self._jobs[key]
                job.state, job.ended, job.message = "cancelled", time.monotonic(), "the pool was shut down"
            self._queue.clear()
            if cancel_running:
                for job in self._jobs.values():
                    if job.state == "running":
                        job.cancel_requested, job.cancel_time = True, time.monotonic()
            self._lock.notify_all()
            threads = list(self._threads)
        for t in threads:
            t.join(timeout)

    # -- internals ----------------------------------------------------------------------------------

    def _ensure_threads(self) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self.workers:
            t = threading.Thread(target=self._slot, name=f"{self.name}-slot{len(self._threads)}", daemon=True)
            self._threads.append(t)
            t.start()

    def _forget_old(self) -> None:
        finished = [k for k, j in self._jobs.items() if j.state not in ("queued", "running")]
        for k in finished[: max(0, len(finished) - self.keep_finished)]:
            del self._jobs[k]

    def _status(self, job: _Job) -> JobStatus:
        now = time.monotonic()
        position = self._queue.index(job.key) + 1 if job.state == "queued" else None
        elapsed = 0.0 if job.started is None else (job.ended or now) - job.started
        eta: float | None
        if job.state == "running":
            eta = self._remaining(job, now)
        elif job.state == "queued":
            eta = self._wait_estimate(job, now)
        else:
            eta = 0.0 if job.state == "done" else None
        return JobStatus(job.key, job.state, job.fraction, job.message, position, elapsed, eta,
                         job.result if job.state == "done" else None, job.error, job.cached, job.description)

    @staticmethod
    def _remaining(job: _Job, now: float) -> float | None:
        """Remaining seconds: from the rate between the first and the latest progress report (so a
        job's set-up time - loading a model - does not inflate it), else from the elapsed time, else
        from the submitter's hint."""
        elapsed = now - (job.started or now)
        first, last = job.first_report, job.last_report
        if first is not None and last is not None and job.fraction > first[1] and last - first[0] > 0.02:
            rate = (job.fraction - first[1]) / (last - first[0])
            return max(0.0, (1.0 - job.fraction) / rate - (now - last))
        if job.fraction > 0 and elapsed > 0.05:
            return elapsed * (1.0 - job.fraction) / job.fraction
        if job.eta_hint_s is not None:
            return max(0.0, job.eta_hint_s - elapsed)
        return None

    def _wait_estimate(self, job: _Job, now: float) -> float | None:
        ahead = [self._jobs[k] for k in self._queue[: self._queue.index(job.key)]]
        running = [j for j in self._jobs.values() if j.state == "running"]
        parts = [self._remaining(j, now) for j in running] + [j.eta_hint_s for j in ahead]
        if job.eta_hint_s is None or any(p is None for p in parts):
            return None
        return sum(parts) / self.workers + job.eta_hint_s  # type: ignore[arg-type]

    def _slot(self) -> None:
        child: _ChildProcess | None = None
        if self.mode == "thread":
            _lower_priority(self.nice)  # Linux: this slot thread only
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closed:
                        self._lock.wait(1.0)
                    if self._closed and not self._queue:
                        return
                    job = self._jobs[self._queue.pop(0)]
                    job.state, job.started, job.message = "running", time.monotonic(), "started"
                    self._lock.notify_all()
                if self.mode == "thread":
                    outcome = self._run_in_thread(job)
                else:
                    if child is not None and not child.alive():  # it left after idling (or died)
                        child.stop()
                        child = None
                    if child is None:
                        child = _ChildProcess(self)
                    outcome, child = self._run_in_child(job, child)
                self._finish(job, *outcome)
        finally:
            if child is not None:
                child.stop()

    def _finish(self, job: _Job, state: str, result: Any = None, error: str | None = None) -> None:
        if state == "done" and job.cache is not None:
            try:
                job.cache.store(result)
            except OSError as e:  # a full or read-only disk: keep the result in memory, say so
                job.message = f"done (not cached on disk: {e})"
        with self._lock:
            job.state, job.result, job.error, job.ended = state, result, error, time.monotonic()
            job.kwargs = {}  # the inputs (a clip: ~5 MB at full size) are not needed any more
            if state == "done":
                job.fraction = 1.0
                if not job.message.startswith("done"):
                    job.message = "done"
            elif state == "cancelled":
                job.message = "cancelled"
            self._lock.notify_all()

    def _report(self, job: _Job) -> Callable[[float, str], None]:
        def report(fraction: float, message: str) -> None:
            with self._lock:
                now = time.monotonic()
                if fraction > 0 and job.first_report is None:
                    job.first_report = (now, fraction)
                job.last_report = now
                job.fraction, job.message = fraction, message if not job.cancel_requested else "cancelling…"
        return report

    def _run_in_thread(self, job: _Job) -> tuple[str, Any, str | None]:
        ctx = JobContext(self._report(job), lambda: job.cancel_requested)
        try:
            assert callable(job.target)
            return "done", job.target(ctx, **job.kwargs), None
        except JobCancelled:
            return "cancelled", None, None
        except Exception as e:  # noqa: BLE001 - a job's failure is its status, never the pool's
            from hfnet_core.errors import describe

            return "failed", None, describe(e)

    def _run_in_child(self, job: _Job, child: _ChildProcess) -> tuple[tuple[str, Any, str | None],
                                                                       _ChildProcess | None]:
        child.next_id += 1
        job_id = child.next_id
        try:
            child.conn.send(("run", job_id, job.target, job.kwargs))
        except (OSError, BrokenPipeError, ValueError) as e:
            child.stop()
            return ("failed", None, f"could not start the job in its worker process ({e})"), None
        except Exception as e:  # noqa: BLE001 - e.g. arguments that cannot be pickled
            return ("failed", None, f"the job's arguments cannot be sent to a worker process ({e})"), child
        report = self._report(job)
        told = False
        while True:
            with self._lock:
                cancel, since = job.cancel_requested, job.cancel_time
            if cancel:
                if not told:
                    try:
                        child.conn.send(("cancel", job_id))
                    except (OSError, BrokenPipeError):
                        pass
                    told = True
                if since is not None and time.monotonic() - since > self.kill_after_s:
                    child.kill()
                    child.stop()
                    return ("cancelled", None, None), None
            try:
                msg = child.conn.recv() if child.conn.poll(0.1) else None
            except (EOFError, OSError):
                child.stop()
                code = child.proc.returncode
                if cancel:
                    return ("cancelled", None, None), None
                why = " (killed: out of memory?)" if code is not None and code < 0 else ""
                return ("failed", None, f"the worker process died with exit code {code}{why}"), None
            if msg is None:
                continue  # (a dead child makes the next poll ready and recv raise EOFError)
            kind = msg[0]
            if kind == "progress":
                report(msg[1], msg[2])
            elif kind == "done":
                return ("done", msg[1], None), child
            elif kind == "cancelled":
                return ("cancelled", None, None), child
            elif kind == "error":
                return ("failed", None, msg[1]), child
            elif kind == "idle-exit":  # raced with our send: the child left; run the job on a new one
                child.stop()
                return self._run_in_child(job, _ChildProcess(self))


_shared: JobPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> JobPool:
    """The process-wide pool every app session submits to (``HFNET_JOB_WORKERS``, ``HFNET_JOB_MODE``)."""
    global _shared
    with _shared_lock:
        if _shared is None or _shared._closed:
            _shared = JobPool()
        return _shared


if __name__ == "__main__":  # the worker process: python -m hfnet_core.analysis.jobs --worker FD NICE IDLE_S
    import sys

    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        # Run the loop of the imported module, not of this __main__ copy: jobs raise *its* JobCancelled.
        from hfnet_core.analysis import jobs as _jobs

        _jobs._child_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        print("hfnet_core.analysis.jobs is started by JobPool as a worker process; it has no CLI.", file=sys.stderr)
        sys.exit(2)
