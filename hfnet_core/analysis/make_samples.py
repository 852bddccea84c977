"""Write the explorer's shipped sample clips: ``python -m hfnet_core.analysis.make_samples [out_dir]``.

A handful of SynthSomething clips (H.264 mp4, 112 px, 16 frames at 8 fps) plus ``samples.json`` with
their labels, generated deterministically so the files can be rebuilt bit-for-bit by the same FFmpeg.
"Moving left to right" and "right to left" share one seed: the second is the first played backwards,
so a plain TSN gives both the same prediction while an HF-TSN can tell them apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hfnet_core.data.synthetic import SYNTH_CLASSES, SYNTH_NOUNS, clip_seed, clip_shape, generate_clip
from hfnet_core.data.video import write_video

#: (class index, index of the clip within the class) - seeds come from a split no demo model trained on.
SAMPLES: list[tuple[int, int]] = [(0, 0), (1, 0), (2, 1), (6, 2), (8, 3), (10, 4), (11, 4), (12, 5), (14, 6), (15, 7), (4, 8)]
DATASET_SEED = 7  # differs from the demo models' dataset seed (0): none of these clips was seen in training
SPLIT = "test"
SIZE = 112  # the demo models' input size: clips pass to them uncropped, as in `hfnet eval`
NUM_FRAMES = 16
FPS = 8.0


def sample_noun(class_index: int, seed: int) -> str:
    """The clip's noun in SynthSomething's verb / noun view: the moving object's shape (``SYNTH_NOUNS``)."""
    return SYNTH_NOUNS[clip_shape(class_index, seed, NUM_FRAMES, SIZE)]


def make_samples(out_dir: str | Path) -> list[dict]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for cls, k in SAMPLES:
        seed = clip_seed(DATASET_SEED, SPLIT, k)
        frames = generate_clip(cls, seed, NUM_FRAMES, SIZE)
        slug = SYNTH_CLASSES[cls].lower().replace("something", "sth").replace(" ", "_").replace("-", "_")
        name = f"{cls:02d}_{slug}.mp4"
        write_video(out / name, frames, fps=FPS, codec="libx264",
                    options={"crf": "20", "preset": "medium", "threads": "1"})
        entries.append({"file": name, "label": SYNTH_CLASSES[cls], "class_index": cls,
                        "noun": sample_noun(cls, seed), "title": f"{SYNTH_CLASSES[cls]} (#{k})", "seed": seed,
                        "size": SIZE, "num_frames": NUM_FRAMES, "fps": FPS})
    meta = {"generator": "hfnet_core.analysis.make_samples", "dataset": "SynthSomething",
            "dataset_seed": DATASET_SEED, "split": SPLIT, "clips": entries}
    (out / "samples.json").write_text(json.dumps(meta, indent=1) + "\n")
    return entries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", nargs="?", default=str(Path(__file__).resolve().parents[2] / "checkpoints" / "samples"))
    args = ap.parse_args(argv)
    entries = make_samples(args.out_dir)
    total = sum((Path(args.out_dir) / e["file"]).stat().st_size for e in entries)
    print(f"wrote {len(entries)} clips ({total / 1024:.0f} KiB) and samples.json to {args.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
