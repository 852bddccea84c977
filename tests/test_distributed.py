"""DistributedDataParallel with 2 CPU processes (gloo) trains exactly like one process.

Why equality can hold: the global batch is the same (each process takes half), the two shards interleave
one seeded permutation so a step sees the same clips, DDP averages the per-process mean gradients (= the
mean over the global batch), and the test config removes the remaining per-process differences: no
dropout, no augmentation, and BatchNorm frozen (``train.bn = "frozen"``: running statistics instead of
per-process batch statistics, which would differ from statistics over the global batch; on CUDA
``train.bn = "sync"`` uses SyncBatchNorm instead).
"""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from hfnet_core.checkpoint import load_checkpoint
from hfnet_core.train import train

from _train_helpers import import_optimizer_machinery, tiny_config


def _cfg(out):
    return tiny_config(out, model={"dropout": 0.0}, train={"epochs": 2, "batch_size": 8, "bn": "frozen"},
                       optim={"lr": 0.002})


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    try:
        train(_cfg(out))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one(tmp_path):
    import_optimizer_machinery()
    # Forked workers start in a moment (spawned ones would re-import torch: seconds each on a busy CPU).
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True,
                       start_method="fork")
    single = train(_cfg(tmp_path / "single"))
    a = load_checkpoint(tmp_path / "ddp" / "last.safetensors").model.state_dict()
    b = load_checkpoint(single.out_dir / "last.safetensors").model.state_dict()
    changed = 0
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    init = load_checkpoint(single.out_dir / "last.safetensors")  # sanity: training moved the weights
    from hfnet_core.train import build_model_from_config, seed_everything, epoch_seed

    seed_everything(epoch_seed(0, -1, 0))
    _, fresh = build_model_from_config(_cfg(tmp_path / "x"), 16)
    for k, v in fresh.state_dict().items():
        changed += int(not torch.allclose(v, init.model.state_dict()[k]))
    assert changed > 10
    import json

    ddp_rows = [json.loads(s) for s in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert ddp_rows[0]["train_clips"] == single.history[0]["train_clips"] == 16
    assert abs(ddp_rows[-1]["train_loss"] - single.history[-1]["train_loss"]) < 1e-4
