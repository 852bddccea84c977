"""DistributedDataParallel with 2 CPU processes (gloo) trains exactly like one process.

Why equality can hold: the global batch is the same (each process takes half), the two shards interleave
one seeded permutation so a step sees the same clips, DDP averages the per-process mean gradients (= the
mean over the global batch), and the test config removes the remaining per-process differences: no
dropout, no augmentation, and BatchNorm frozen (``train.bn = "frozen"``: running statistics instead of
per-process batch statistics, which would differ from statistics over the global batch; on CUDA
``train.bn = "sync"`` uses SyncBatchNorm instead). Frozen statistics need sensible values, so the
backbone starts from a "pretrained" file whose BN statistics were measured on a few clips (as an ImageNet
backbone's would be).
"""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from hfnet_core.checkpoint import load_checkpoint
from hfnet_core.model import build_model
from hfnet_core.train import train

from _train_helpers import import_optimizer_machinery, tiny_config


def _cfg(out, pretrained=""):
    return tiny_config(out, model={"dropout": 0.0, "pretrained": pretrained or None},
                       train={"epochs": 2, "batch_size": 8, "bn": "frozen"}, optim={"lr": 0.0003})


def _calibrated_backbone(path) -> str:
    """A tiny backbone whose BN running statistics come from real clips (cumulative average)."""
    from hfnet_core.checkpoint import save_checkpoint
    from hfnet_core.data.synthetic import SYNTH_CLASSES, SynthSomethingDataset

    torch.manual_seed(1)
    model = build_model("tsn_bninception_demo", num_classes=16, width_mult=0.125, input_size=32, num_segments=2)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
    ds = SynthSomethingDataset("val", 2, num_frames=2, size=32)
    with torch.no_grad():
        model.train()(torch.stack([ds[i]["frames"] for i in range(len(ds))]))
    save_checkpoint(path, model.eval(), SYNTH_CLASSES)
    return str(path)


def _worker(rank: int, world: int, port: int, out: str, pretrained: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    import torch.distributed as dist

    try:
        train(_cfg(out, pretrained))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one(tmp_path):
    import_optimizer_machinery()
    pre = _calibrated_backbone(tmp_path / "backbone.safetensors")
    # Forked workers start in a moment (spawned ones would re-import torch: seconds each on a busy CPU).
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path / "ddp"), pre), nprocs=2, join=True,
                       start_method="fork")
    single = train(_cfg(tmp_path / "single", pre))
    a = load_checkpoint(tmp_path / "ddp" / "last.safetensors").model.state_dict()
    b = load_checkpoint(single.out_dir / "last.safetensors").model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    ddp_rows = [json.loads(s) for s in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert ddp_rows[0]["train_clips"] == single.history[0]["train_clips"] == 16
    for r, q in zip(ddp_rows, single.history):
        assert r["train_loss"] == pytest.approx(q["train_loss"], rel=1e-5)
        assert r["val_loss"] == pytest.approx(q["val_loss"], rel=1e-5)
    # Training did something (the comparison is not between two untouched models).
    assert single.history[-1]["train_loss"] < single.history[0]["train_loss"] - 0.05
