"""Shared tiny training setup for the trainer tests: a model and data small enough for seconds on 2 cores."""

from __future__ import annotations

from pathlib import Path

from hfnet_core.config import TrainConfig


def tiny_config(out_dir: str | Path, **sections: dict) -> TrainConfig:
    """HF-TSN at width 0.125, 32 px, 2 frames, SynthSomething with a few clips per class, 1 thread."""
    cfg = TrainConfig()
    cfg.model.name = "hf_tsn_bninception_demo"
    cfg.model.width_mult = 0.125
    cfg.model.input_size = 32
    cfg.model.num_segments = 2
    cfg.data.dataset = "synth"
    cfg.data.augment = False
    cfg.data.num_workers = 0
    cfg.data.synth_train_per_class = 1
    cfg.data.synth_val_per_class = 1
    cfg.optim.lr = 0.01
    cfg.optim.schedule = "cosine"
    cfg.train.epochs = 2
    cfg.train.batch_size = 8
    cfg.train.num_threads = 1
    cfg.train.progress = False
    cfg.train.out_dir = str(out_dir)
    for section, values in sections.items():
        for k, v in values.items():
            setattr(getattr(cfg, section), k, v)
    return cfg


def import_optimizer_machinery() -> None:
    """Construct one optimizer so torch imports its lazy machinery (torch._dynamo) now, in this process.

    That import takes seconds on a busy CPU; processes forked afterwards inherit it instead of repeating it.
    """
    import torch

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
