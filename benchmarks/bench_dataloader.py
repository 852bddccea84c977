"""Benchmark: can data loading keep up with training the demo model on this CPU?

Measures DataLoader throughput (clips/s, batch 16, TSN training transform to 112 px) for
* SynthSomething generated on the fly (128 px rendered, multi-scale crop + flip to 112; and 112 px native),
* the same clips written to disk by ``write_dataset``: H.264 ``.mp4`` files and Something-v1 JPEG folders,
and, in the same run, the clips/s of one SGD training step (forward + backward + step, batch 16) of the
reduced-width demo model ``hf_tsn_bninception_demo`` (and TSN's). Loading is not a bottleneck when its
clips/s exceeds the training step's. Writes ``benchmarks/results/dataloader.json``.

Run: ``python benchmarks/bench_dataloader.py [--batches N] [--workers 0 1]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from hfnet_core.data.datasets import SomethingV1Dataset, VideoFolderDataset
from hfnet_core.data.loading import collate_batch
from hfnet_core.data.synthetic import SYNTH_CLASSES, SYNTH_FLIP_LABEL_MAP, SynthSomethingDataset, write_dataset
from hfnet_core.data.transforms import train_transform

RESULTS = Path(__file__).resolve().parent / "results" / "dataloader.json"
BATCH, SIZE, FRAMES = 16, 112, 8


def loader_rate(dataset: torch.utils.data.Dataset, workers: int, batches: int) -> float:
    """Clips per second over ``batches`` batches (after one warm-up batch; worker start-up excluded)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         collate_fn=collate_batch, generator=torch.Generator().manual_seed(0))
    it = iter(loader)
    next(it)
    n, t = 0, time.perf_counter()
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            break
        n += len(b["labels"])
    return n / (time.perf_counter() - t)


def train_step_rate(name: str, steps: int) -> float | None:
    """Clips per second of SGD steps of a registered demo model (None if the model code is missing)."""
    try:
        from hfnet_core.model import build_model
    except ImportError:
        return None
    model = build_model(name, num_classes=len(SYNTH_CLASSES))
    try:  # the trainer's CPU setting (about 1.5x faster here, FINDINGS.md)
        from hfnet_core.device import to_channels_last

        to_channels_last(model)
    except ImportError:
        pass
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(BATCH, FRAMES, 3, SIZE, SIZE)
    y = torch.randint(0, len(SYNTH_CLASSES), (BATCH,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    args = ap.parse_args(argv)
    tf = lambda: train_transform(SIZE, SYNTH_FLIP_LABEL_MAP)  # noqa: E731
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        write_dataset(root, {"train": 8}, seed=0, num_frames=FRAMES, size=128, splits=("train",))
        write_s = time.perf_counter() - t
        datasets = {
            "synth_128_crop_flip": SynthSomethingDataset("train", 64, FRAMES, 128, transform=tf()),
            "synth_112_native": SynthSomethingDataset("train", 64, FRAMES, SIZE),
            "mp4_h264_crop_flip": VideoFolderDataset(root / "videos" / "train", FRAMES, "train", transform=tf(),
                                                     class_names=SYNTH_CLASSES),
            "jpeg_folders_crop_flip": SomethingV1Dataset(root / "frames", root / "train_videofolder.txt",
                                                         root / "category.txt", FRAMES, "train", transform=tf()),
        }
        threads = torch.get_num_threads()
        for name, ds in datasets.items():
            results[name] = {f"workers_{w}": round(loader_rate(ds, w, args.batches), 1) for w in args.workers}
            # In-process loading with one torch thread: what the item itself costs. With several threads on a
            # busy machine, small torch ops in the main process wait on descheduled OpenMP threads.
            torch.set_num_threads(1)
            results[name]["workers_0_1thread"] = round(loader_rate(ds, 0, args.batches), 1)
            torch.set_num_threads(threads)
            print(f"{name:>24}: {results[name]} clips/s")
    steps = {}
    for model in ("hf_tsn_bninception_demo", "tsn_bninception_demo"):
        rate = train_step_rate(model, args.steps)
        steps[model] = None if rate is None else round(rate, 1)
        print(f"{model:>24}: {steps[model]} clips/s (training step, batch {BATCH}, {torch.get_num_threads()} threads)")
    slowest_loader = min(min(v.values()) for v in results.values())
    hf = steps.get("hf_tsn_bninception_demo")
    out = {
        "loader_clips_per_s": results,
        "train_step_clips_per_s": steps,
        "loader_faster_than_training": None if hf is None else bool(
            max(results["synth_128_crop_flip"].values()) > hf),
        "slowest_loader_clips_per_s": slowest_loader,
        "note": ("workers_0 uses the process's torch threads; on a busy 2-core machine OpenMP oversubscription "
                 "makes in-process loading ~6x slower than workers_0_1thread - use num_workers >= 1"),
        "write_dataset_seconds_for_128_clips": round(write_s, 2),
        "setup": {"batch": BATCH, "frames": FRAMES, "input_size": SIZE, "torch_threads": torch.get_num_threads(),
                  "note": "loader and training share the same cores; with workers=1 loading overlaps training"},
        "machine": {"cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "torch": torch.__version__,
                    "platform": platform.platform()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
