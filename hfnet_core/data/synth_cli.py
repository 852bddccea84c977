"""``hfnet synth``: write SynthSomething to disk (H.264 files + Something-v1 layout), or a preview sheet."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hfnet synth",
        description="Generate SynthSomething: classes that differ only in temporal order (reversed pairs).",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created)")
    p.add_argument("--train", type=int, default=100, help="clips per class in the train split (default 100)")
    p.add_argument("--val", type=int, default=20, help="clips per class in the val split (default 20)")
    p.add_argument("--test", type=int, default=40, help="clips per class in the test split (default 40)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed; splits use disjoint seeds (default 0)")
    p.add_argument("--frames", type=int, default=8, help="frames per clip (default 8)")
    p.add_argument("--size", type=int, default=128, help="frame side in pixels (default 128)")
    p.add_argument("--preview", action="store_true",
                   help="only write preview.png: one row per class (first clip of the test split)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    args = build_parser().parse_args(argv)
    from hfnet_core.data.synthetic import SYNTH_CLASSES, generate_clip, clip_seed, write_dataset

    if args.preview:
        from PIL import Image

        args.out.mkdir(parents=True, exist_ok=True)
        rows = [np.concatenate(list(generate_clip(c, clip_seed(args.seed, "test", 0), args.frames, args.size)), axis=1)
                for c in range(len(SYNTH_CLASSES))]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.out / "preview.png")
        print(f"wrote {args.out / 'preview.png'} (rows: {', '.join(SYNTH_CLASSES)})")
        return 0

    counts = {"train": args.train, "val": args.val, "test": args.test}
    splits = tuple(s for s, n in counts.items() if n > 0)
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done == total or done % 100 == 0:
            print(f"\r{done}/{total} clips", end="" if done < total else "\n", file=sys.stderr, flush=True)

    write_dataset(args.out, {s: counts[s] for s in splits}, seed=args.seed, num_frames=args.frames, size=args.size,
                  splits=splits, progress=progress)
    print(f"wrote SynthSomething ({len(SYNTH_CLASSES)} classes, {counts}) to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
