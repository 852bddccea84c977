"""Resume after SIGKILL: no finished epoch lost, no torn file, and the same result as an uninterrupted run."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from hfnet_core.checkpoint import load_checkpoint
from hfnet_core.train import STATE_FILE, load_state, train

from _train_helpers import import_optimizer_machinery, tiny_config

def _cfg(out: Path):
    # 4 steps of batch 8 per epoch; fixed clips; dropout and augmentation randomness reseeded per epoch.
    return tiny_config(out, data={"synth_train_per_class": 2}, train={"epochs": 3, "batch_size": 8})


def _epochs_logged(run: Path) -> int:
    p = run / "metrics.jsonl"
    return len(p.read_text().splitlines()) if p.exists() else 0


def _train_in_child(out: str) -> None:
    train(_cfg(Path(out)))


def test_sigkill_mid_epoch_then_resume(tmp_path):
    run = tmp_path / "run"
    import_optimizer_machinery()
    # A forked child (no fresh interpreter: torch is already imported) trains until SIGKILL.
    proc = multiprocessing.get_context("fork").Process(target=_train_in_child, args=(str(run),))
    proc.start()
    try:
        deadline = time.time() + 120
        while _epochs_logged(run) < 1 and time.time() < deadline and proc.is_alive():
            time.sleep(0.02)
        assert _epochs_logged(run) >= 1, f"child exited with {proc.exitcode}" if not proc.is_alive() else "too slow"
        time.sleep(0.3)  # into the next epoch (an epoch takes about a second here)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    finally:
        if proc.is_alive():
            proc.kill()
    assert proc.exitcode == -signal.SIGKILL
    logged = _epochs_logged(run)
    # Every file on disk is whole: the state and both checkpoints load.
    state = load_state(run / STATE_FILE)
    finished = state["epoch"]
    # An epoch's state and checkpoints are written before its metrics row: a kill between the two leaves
    # the row out (resume rewrites the rows from the state's history), never the state behind the rows.
    assert 1 <= logged <= finished <= logged + 1 and len(state["history"]) == finished
    assert finished < 3, "the kill should land mid-run"
    load_checkpoint(run / "last.safetensors")

    resumed = train(_cfg(run), resume=True)
    assert f"resumed {run} after epoch {finished}" in (run / "train.log").read_text()
    rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows == resumed.history
    assert rows[:finished] == state["history"]  # finished epochs kept as they were
    assert not list(run.glob(".*.tmp"))  # temp files of an interrupted write are cleaned up on resume

    # Same weights as a run that was never interrupted (every epoch reseeds from (seed, epoch)).
    ref = train(_cfg(tmp_path / "ref"))
    a = load_checkpoint(run / "last.safetensors").model.state_dict()
    b = load_checkpoint(ref.out_dir / "last.safetensors").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in ref.history], rel=1e-4)


def test_resume_refuses_a_different_config(tmp_path):
    from hfnet_core.config import ConfigError

    cfg = tiny_config(tmp_path / "run", train={"epochs": 1, "max_steps_per_epoch": 1})
    train(cfg)
    cfg.optim.lr = 0.5
    with pytest.raises(ConfigError, match="optim.lr"):
        train(cfg, resume=True)
    cfg.optim.lr = 0.01
    cfg.train.epochs = 2  # a longer budget is fine
    assert [r["epoch"] for r in train(cfg, resume=True).history] == [1, 2]
