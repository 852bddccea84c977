"""Is a clip far from what a model was trained on? Plain-words notes for the explorer.

A model always answers with one of its classes, however foreign the clip: a phone video given to the demo
models (16 synthetic classes at 112 px) gets "Something disappearing" at 24 %. These notes say why such an
answer should not be trusted: another kind of footage than the training set, a resolution or aspect far
from the model's input, a clip much longer than the frames the model samples, a low-confidence answer.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["training_dataset", "scope_notes", "LOW_CONFIDENCE", "DATASET_NAMES"]

#: Top-1 probability under which an answer is called low-confidence.
LOW_CONFIDENCE = 0.4
#: Ratio between the clip's shorter side and the model's input side beyond which detail is lost or invented.
SCALE_LIMIT = 4.0
#: Seconds between sampled frames beyond which short actions fall between them.
GAP_LIMIT_S = 2.0

DATASET_NAMES = {"synth": "SynthSomething (synthetic clips)", "something-v1": "Something-Something v1",
                 "something-v2": "Something-Something v2", "hmdb51": "HMDB51", "ucf101": "UCF101",
                 "kinetics": "Kinetics"}


def training_dataset(metadata: dict[str, Any]) -> str | None:
    """The dataset a checkpoint was trained on, as its training record names it (None when not recorded)."""
    training = metadata.get("training") if isinstance(metadata, dict) else None
    cfg = training.get("config") if isinstance(training, dict) else None
    data = cfg.get("data") if isinstance(cfg, dict) else None
    name = data.get("dataset") if isinstance(data, dict) else None
    return str(name) if name else None


def _same_dataset(trained: str, clip: str) -> bool:
    norm = {"synthsomething": "synth"}
    a, b = trained.lower().replace("_", "-"), clip.lower().replace("_", "-")
    return norm.get(a, a) == norm.get(b, b)


def scope_notes(*, input_size: int, num_segments: int, class_names: Sequence[str], trained_on: str | None,
                clip_dataset: str | None, width: int, height: int, duration_s: float | None,
                num_frames: int, top_probs: Sequence[float]) -> list[str]:
    """Reasons, in words, why a model's answer on this clip may be meaningless (empty: none found).

    ``clip_dataset``: the dataset the clip comes from when known (a shipped sample, a bundle clip), None
    for an upload or a file from disk. ``top_probs``: the model's top probabilities, best first.
    """
    notes: list[str] = []
    k = len(class_names)
    if trained_on:
        name = DATASET_NAMES.get(trained_on.lower(), trained_on)
        if clip_dataset is None or not _same_dataset(trained_on, clip_dataset):
            what = "this clip is not from that dataset" if clip_dataset else "this clip is a file from outside it"
            notes.append(f"Trained only on {name}: it knows {k} classes and answers with one of them whatever "
                         f"the clip shows; {what}.")
    short, long_ = min(width, height), max(width, height)
    if short > 0 and short * SCALE_LIMIT < input_size:
        notes.append(f"The clip is {width}×{height} px; the model looks at {input_size}×{input_size}, so the "
                     f"frames are enlarged {input_size / short:.1f}× and fine detail is invented.")
    elif short > input_size * SCALE_LIMIT:
        notes.append(f"The clip is {width}×{height} px; the model looks at {input_size}×{input_size}, so the "
                     f"frames are shrunk {short / input_size:.0f}× and small objects may vanish.")
    if short > 0 and long_ / short > 2.0:
        notes.append(f"Its aspect ratio is {long_ / short:.1f}:1; the centre crop keeps only the middle "
                     f"{100 * short / long_:.0f} % of each frame.")
    if num_frames < num_segments:
        notes.append(f"It has {num_frames} frames; the model samples {num_segments}, so some are repeated.")
    elif duration_s and num_segments > 0 and duration_s / num_segments > GAP_LIMIT_S:
        notes.append(f"It lasts {duration_s:.0f} s and the model samples {num_segments} frames, one every "
                     f"{duration_s / num_segments:.1f} s: actions shorter than that can fall between them.")
    if top_probs:
        p1 = float(top_probs[0])
        if p1 < max(LOW_CONFIDENCE, 2.0 / max(k, 1)):
            notes.append(f"Low confidence: its best class gets {p1:.0%}.")
    return notes
