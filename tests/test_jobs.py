"""The background job pool: progress and ETA, queue positions, cancellation (cooperative, owners, kill),
failures, disk cache, and worker processes (spawned, lower priority, one thread)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

import _job_helpers as h
from hfnet_core.analysis.jobs import JobCancelled, JobContext, JobPool, NpzResultCache


@pytest.fixture()
def pool():
    p = JobPool(workers=1, mode="thread", name="test-jobs")
    yield p
    for g in h.GATES.values():
        g.set()
    p.shutdown()


def _gate(name: str) -> threading.Event:
    h.GATES[name] = threading.Event()
    return h.GATES[name]


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_progress_eta_and_result(pool):
    gate = _gate("p")
    st = pool.submit("job", h.counted, {"steps": 4, "gate": "p"}, description="four steps", eta_hint_s=8.0)
    assert st.state in ("queued", "running") and st.description == "four steps"
    _until(lambda: pool.status("job").state == "running")
    running = pool.status("job")
    assert running.fraction == 0.0 and running.eta_s is not None and running.eta_s <= 8.0  # from the hint
    gate.set()
    done = pool.wait("job", timeout=10)
    assert done.state == "done" and done.fraction == 1.0 and done.result["steps"] == 4
    assert done.eta_s == 0.0 and not done.cached and done.error is None
    # The same key again is the same (finished) job: nothing reruns.
    assert pool.submit("job", h.counted, {"steps": 99}).result["steps"] == 4


def test_eta_from_measured_rate():
    pool = JobPool(workers=1, mode="thread")
    try:
        pool.submit("slow", h.counted, {"steps": 10, "delay": 0.05})
        _until(lambda: pool.status("slow").fraction >= 0.3)
        st = pool.status("slow")
        # 10 steps of ~50 ms: remaining time is about (1 - f) / f of the elapsed time.
        assert st.eta_s is not None and 0.0 < st.eta_s < 5.0
        assert st.message.startswith("step ")
    finally:
        pool.shutdown()


def test_queue_positions_and_cancelling_a_queued_job(pool):
    gate = _gate("q")
    pool.submit("a", h.counted, {"gate": "q"}, eta_hint_s=2.0)
    _until(lambda: pool.status("a").state == "running")
    b = pool.submit("b", h.counted, {}, eta_hint_s=1.0)
    c = pool.submit("c", h.counted, {}, eta_hint_s=1.0)
    assert (b.state, b.queue_position) == ("queued", 1) and (c.state, c.queue_position) == ("queued", 2)
    assert c.eta_s is not None and c.eta_s > b.eta_s  # c waits for a and b
    assert pool.cancel("b")
    assert pool.status("b").state == "cancelled"
    assert pool.status("c").queue_position == 1
    gate.set()
    assert pool.wait("c", 10).state == "done"
    assert pool.status("b").state == "cancelled"  # never ran
    assert pool.submit("b", h.counted, {}).state in ("queued", "running", "done")  # a cancelled job reruns


def test_cancelling_a_running_job_stops_it_between_steps(pool):
    pool.submit("loop", h.loop_until_cancelled, {"seconds": 30})
    _until(lambda: pool.status("loop").fraction == 0.5)
    t0 = time.monotonic()
    assert pool.cancel("loop")
    st = pool.wait("loop", 5)
    assert st.state == "cancelled" and time.monotonic() - t0 < 2.0 and st.result is None
    assert pool.submit("next", h.counted, {}).state in ("queued", "running", "done")
    assert pool.wait("next", 5).state == "done"  # the slot is free again


def test_a_job_with_two_owners_runs_until_both_let_go(pool):
    pool.submit("shared", h.loop_until_cancelled, {"seconds": 30}, owner="session-1")
    pool.submit("shared", h.loop_until_cancelled, {"seconds": 30}, owner="session-2")
    _until(lambda: pool.status("shared").state == "running")
    assert not pool.cancel("shared", owner="session-1")
    time.sleep(0.1)
    assert pool.status("shared").state == "running"
    assert pool.cancel("shared", owner="session-2")
    assert pool.wait("shared", 5).state == "cancelled"


def test_failures_are_reported_and_retried_only_when_asked(pool):
    assert pool.wait(pool.submit("bad", h.fails).key, 5).state == "failed"
    st = pool.status("bad")
    assert "RuntimeError: broken on purpose" in st.error
    assert pool.submit("bad", h.fails).state == "failed"  # not rerun by itself
    assert pool.submit("bad", h.fails, retry=True).state in ("queued", "running", "failed")
    assert pool.status("missing-key").state == "missing"
    assert not pool.cancel("missing-key")


def test_disk_cache_is_read_instead_of_computing(tmp_path):
    cache = NpzResultCache(tmp_path / "r" / "result.npz")
    assert cache.load() is None
    p1 = JobPool(workers=1, mode="thread")
    try:
        st = p1.wait(p1.submit("k", h.arrays, {"n": 5}, cache=cache).key, 5)
        assert st.state == "done" and not st.cached
    finally:
        p1.shutdown()
    assert (tmp_path / "r" / "result.npz").is_file()
    with np.load(tmp_path / "r" / "result.npz", allow_pickle=False) as z:  # plain arrays, no pickles
        assert "maps" in z.files
    p2 = JobPool(workers=1, mode="thread")
    try:
        st = p2.submit("k", h.fails, {}, cache=cache)  # would fail if it ran
        assert st.state == "done" and st.cached
        np.testing.assert_array_equal(st.result["maps"], np.arange(5, dtype=np.float32))
        assert st.result["delta"] == 0.25 and st.result["note"] == "computed"
    finally:
        p2.shutdown()
    (tmp_path / "r" / "result.npz").write_bytes(b"garbage")
    assert cache.load() is None  # unreadable = absent


def test_context_check_raises_once_cancelled():
    flag = {"c": False}
    ctx = JobContext(lambda f, m: None, lambda: flag["c"])
    ctx.check()
    flag["c"] = True
    assert ctx.cancelled
    with pytest.raises(JobCancelled):
        ctx.check()


def test_worker_process_mode_runs_niced_single_threaded_and_cancels():
    pool = JobPool(workers=1, mode="process", kill_after_s=1.0, idle_s=30)
    try:
        facts = pool.wait(pool.submit("facts", h.worker_facts).key, 60)
        assert facts.state == "done", facts.error
        assert facts.result["pid"] != os.getpid()
        assert facts.result["nice"] >= os.getpriority(os.PRIO_PROCESS, 0) + 1
        assert facts.result["omp"] == "1"
        done = pool.wait(pool.submit("count", h.counted, {"steps": 3}).key, 30)
        assert done.state == "done" and done.result["pid"] == facts.result["pid"]  # the worker is reused
        # Cooperative cancel inside the worker process.
        pool.submit("loop", h.loop_until_cancelled, {"seconds": 30})
        _until(lambda: pool.status("loop").fraction == 0.5, 30)
        pool.cancel("loop")
        assert pool.wait("loop", 10).state == "cancelled"
        # A job that ignores cancellation is killed after kill_after_s; the next job gets a new worker.
        pool.submit("stuck", h.ignores_cancel, {"seconds": 60})
        _until(lambda: pool.status("stuck").state == "running", 30)
        time.sleep(0.2)
        t0 = time.monotonic()
        pool.cancel("stuck")
        assert pool.wait("stuck", 15).state == "cancelled" and time.monotonic() - t0 < 8
        after = pool.wait(pool.submit("facts2", h.worker_facts).key, 60)
        assert after.state == "done" and after.result["pid"] != facts.result["pid"]
        failed = pool.wait(pool.submit("bad", h.fails).key, 30)
        assert failed.state == "failed" and "broken on purpose" in failed.error
        with pytest.raises(ValueError, match="module-level"):
            pool.submit("lambda", lambda ctx: 1)
    finally:
        pool.shutdown()


def test_an_idle_worker_process_exits_and_the_next_job_gets_a_new_one():
    pool = JobPool(workers=1, mode="process", idle_s=0.5)
    try:
        first = pool.wait(pool.submit("a", h.worker_facts).key, 60)
        assert first.state == "done", first.error
        time.sleep(2.0)  # the worker leaves after 0.5 s without work, returning its memory
        second = pool.wait(pool.submit("b", h.worker_facts).key, 60)
        assert second.state == "done" and second.result["pid"] != first.result["pid"]
    finally:
        pool.shutdown()
