"""Where tensors run: CUDA when present, else CPU - never a hard-coded ``.cuda()`` elsewhere."""

from __future__ import annotations

import os

import torch


def pick_device(local_rank: int | None = None) -> torch.device:
    """``cuda:<local_rank>`` when CUDA is available (local rank from ``LOCAL_RANK`` under torchrun), else CPU."""
    if torch.cuda.is_available():
        if local_rank is None:
            local_rank = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment, joining the process group when there are several
    processes (NCCL with CUDA, else Gloo); (0, 1) for a plain process."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return int(os.environ.get("RANK", "0")), world


def to_channels_last(model: torch.nn.Module) -> torch.nn.Module:
    """Store every 4-D parameter/buffer channels-last, in place (5-D HF gate kernels stay as they are).

    ``Module.to(memory_format=...)`` refuses models with 5-D weights; convolutions whose weights are
    channels-last produce channels-last outputs, which is what makes the CPU path ~1.5x faster.
    """
    for t in list(model.parameters()) + list(model.buffers()):
        if t.dim() == 4:
            t.data = t.data.contiguous(memory_format=torch.channels_last)
    return model
