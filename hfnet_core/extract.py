"""``hfnet extract``: pooled pre-classifier features (and logits) for every clip in a folder, as ``.npz``.

    hfnet extract CHECKPOINT FOLDER --out features.npz
    torchrun --nproc_per_node 4 -m hfnet_core.cli extract CHECKPOINT FOLDER --out features.npz

Clips are video files (PyAV, ``hfnet_core.data.video``) found recursively under FOLDER, in sorted order,
sampled as at test time (segment centres, resize + centre crop). Under torchrun each process takes every
``world_size``-th file (rank r: files r, r + W, ...), writes its rows to ``<out>.rank<r>.npz``, and rank 0
merges the shards into ``<out>`` in the sorted file order and deletes them. Unreadable files are skipped,
counted and named (``skipped`` in the file and on the console).

The output holds ``paths`` (as found), ``clip_ids`` (relative to FOLDER), ``features`` (M, D) float32,
``logits`` (M, K) float32, ``class_names``, ``skipped`` ("path: reason" strings) and ``metadata`` (JSON:
checkpoint, its sha256, folder, counts). No pickles: load with ``np.load(path, allow_pickle=False)``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist

from .atomic import atomic_path
from .device import rank_and_world

DEFAULT_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif", ".m4v")


def list_clips(folder: str | Path, extensions: Sequence[str] = DEFAULT_EXTENSIONS) -> list[Path]:
    from .data.video import iter_video_files

    return iter_video_files(folder, extensions)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def _strs(xs: Sequence[str]) -> np.ndarray:
    return np.array(list(xs), dtype=np.str_) if len(xs) else np.zeros(0, dtype="<U1")


def extract_features(model: torch.nn.Module, files: Sequence[str | Path], root: str | Path | None = None,
                     device: torch.device | str | None = None, batch_size: int = 8, num_workers: int = 0,
                     progress: bool = False) -> dict[str, Any]:
    """Features of ``files`` with ``model`` (eval mode, centre crop): a dict of arrays and lists."""
    from .data.datasets import ClipDataset
    from .data.transforms import eval_transform
    from .evaluate import run_inference

    cfg = model.config  # type: ignore[union-attr]
    root_p = Path(root) if root is not None else None
    samples = []
    for f in files:
        p = Path(f)
        rel = str(p.relative_to(root_p)) if root_p is not None and p.is_relative_to(root_p) else str(p)
        samples.append((str(p), 0, rel))
    ds = ClipDataset(samples, ["unknown"], cfg.num_segments, mode="eval", transform=eval_transform(cfg.input_size),
                     convention=model.input_convention)  # type: ignore[union-attr]
    res = run_inference(model, ds, device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    return {"paths": res.paths, "clip_ids": res.clip_ids, "features": res.features, "logits": res.logits,
            "skipped": [f"{a}: {b}" for a, b in res.skipped]}


_rank_world = rank_and_world  # the name this module's callers know


def shard_path(out: Path, rank: int) -> Path:
    return out.with_name(f"{out.name}.rank{rank}.npz")


def run_extract(checkpoint: str | Path, folder: str | Path, out: str | Path, batch_size: int = 8,
                num_workers: int = 0, rank: int = 0, world_size: int = 1, progress: bool = False) -> Path | None:
    """Extract this process's share of the clips; rank 0 (after a barrier when distributed) merges.

    Returns the merged file's path on rank 0, else None.
    """
    from .checkpoint import load_checkpoint
    from .device import pick_device

    out = Path(out)
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = list_clips(folder)
    loaded = load_checkpoint(checkpoint, device=pick_device())
    mine = files[rank::world_size]
    part = extract_features(loaded.model, mine, folder, batch_size=batch_size, num_workers=num_workers,
                            progress=progress)
    meta = {"checkpoint": str(checkpoint), "checkpoint_sha256": loaded.sha256, "model_name": loaded.config.name,
            "folder": str(folder), "num_files": len(files), "feature": "pooled pre-classifier features (N, D)",
            "num_segments": loaded.config.num_segments, "input_size": loaded.config.input_size}
    arrays = {
        "paths": _strs(part["paths"]), "clip_ids": _strs(part["clip_ids"]),
        "features": part["features"].astype(np.float32), "logits": part["logits"].astype(np.float32),
        "class_names": _strs(loaded.class_names), "skipped": _strs(part["skipped"]),
        "metadata": np.array(json.dumps(meta)),
    }
    if world_size == 1:
        arrays["metadata"] = np.array(json.dumps({**meta, "num_clips": len(part["paths"]),
                                                  "num_skipped": len(part["skipped"])}))
        _save_npz(out, arrays)
        return out
    _save_npz(shard_path(out, rank), arrays)
    if dist.is_initialized():
        dist.barrier()
    if rank != 0:
        return None
    return merge_shards(out, world_size, [str(f) for f in files], meta)


def merge_shards(out: Path, world_size: int, order: Sequence[str], meta: dict[str, Any]) -> Path:
    """Concatenate ``<out>.rank<r>.npz`` shards into ``out`` in ``order`` (file paths), then delete them."""
    rows: dict[str, tuple[str, np.ndarray, np.ndarray]] = {}
    skipped: list[str] = []
    class_names: list[str] = []
    shards = [shard_path(out, r) for r in range(world_size)]
    for s in shards:
        with np.load(s, allow_pickle=False) as z:
            class_names = [str(c) for c in z["class_names"]]
            skipped += [str(x) for x in z["skipped"]]
            for p, cid, f, lg in zip(z["paths"], z["clip_ids"], z["features"], z["logits"]):
                rows[str(p)] = (str(cid), f, lg)
    kept = [p for p in order if p in rows]
    if not kept:
        feats = np.zeros((0, 0), np.float32)
        logits = np.zeros((0, len(class_names)), np.float32)
    else:
        feats = np.stack([rows[p][1] for p in kept]).astype(np.float32)
        logits = np.stack([rows[p][2] for p in kept]).astype(np.float32)
    meta = {**meta, "num_clips": len(kept), "num_skipped": len(skipped), "world_size": world_size}
    _save_npz(out, {"paths": _strs(kept), "clip_ids": _strs([rows[p][0] for p in kept]), "features": feats,
                    "logits": logits, "class_names": _strs(class_names), "skipped": _strs(skipped),
                    "metadata": np.array(json.dumps(meta))})
    for s in shards:
        s.unlink(missing_ok=True)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfnet extract", description="Pooled features for every clip in a folder "
                                "(.npz). Under torchrun, files are sharded across processes and rank 0 merges.")
    p.add_argument("checkpoint", help="an hfnet .safetensors checkpoint (or an importable foreign file)")
    p.add_argument("folder", help="folder of video files (searched recursively)")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .checkpoint import CheckpointError

    rank, world = _rank_world()
    try:
        out = run_extract(args.checkpoint, args.folder, args.out, args.batch_size, args.workers, rank, world,
                          progress=rank == 0 and sys.stderr.isatty())
    except (CheckpointError, FileNotFoundError, ValueError) as e:
        print(f"hfnet extract: {e}", file=sys.stderr)
        return 1
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if out is not None:
        with np.load(out, allow_pickle=False) as z:
            meta = json.loads(str(z["metadata"]))
            skipped = [str(s) for s in z["skipped"]]
        print(f"wrote {out}: {meta['num_clips']} clips, features {meta.get('feature', '')}")
        if skipped:
            print(f"skipped {len(skipped)} unreadable clips: " + "; ".join(skipped[:10]))
    return 0
