"""Resume after SIGKILL: no finished epoch lost, no torn file, and the same result as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hfnet_core.checkpoint import load_checkpoint
from hfnet_core.config import dump_toml
from hfnet_core.train import STATE_FILE, load_state, train

from _train_helpers import tiny_config

REPO = Path(__file__).resolve().parents[1]


def _cfg(out: Path):
    # 4 steps of batch 8 per epoch; fixed clips; dropout and augmentation randomness reseeded per epoch.
    return tiny_config(out, data={"synth_train_per_class": 2}, train={"epochs": 4, "batch_size": 8})


def _epochs_logged(run: Path) -> int:
    p = run / "metrics.jsonl"
    return len(p.read_text().splitlines()) if p.exists() else 0


def test_sigkill_mid_epoch_then_resume(tmp_path):
    run = tmp_path / "run"
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text(dump_toml(_cfg(run)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "hfnet_core.cli", "train", str(cfg_file)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while _epochs_logged(run) < 1 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert _epochs_logged(run) >= 1, proc.stderr.read().decode() if proc.poll() is not None else "too slow"
        time.sleep(0.3)  # into the next epoch (an epoch takes about a second here)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    finished = _epochs_logged(run)
    assert 1 <= finished < 4, "the kill should land mid-run"
    # Every file on disk is whole: the state and both checkpoints load.
    state = load_state(run / STATE_FILE)
    assert state["epoch"] == finished and len(state["history"]) == finished
    load_checkpoint(run / "last.safetensors")

    out = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"resumed {run} after epoch {finished}" in out.stdout
    rows = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[:finished] == state["history"]  # finished epochs kept as they were

    # Same weights as a run that was never interrupted (every epoch reseeds from (seed, epoch)).
    ref = train(_cfg(tmp_path / "ref"))
    a = load_checkpoint(run / "last.safetensors").model.state_dict()
    b = load_checkpoint(ref.out_dir / "last.safetensors").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert [r["train_loss"] for r in rows] == pytest.approx([r["train_loss"] for r in ref.history], rel=1e-4)
    assert not list(run.glob(".*.tmp"))  # temp files of an interrupted write are cleaned up on resume


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
