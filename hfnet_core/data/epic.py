"""EPIC-Kitchens-55 action segments: annotation CSVs over RGB frame folders, one multi-task clip per segment.

Layout (the dataset's own): ``<root>/<participant_id>/<video_id>/frame_0000000001.jpg`` (10-digit,
1-based frame numbers) and annotation CSVs with one row per action segment::

    uid,participant_id,video_id,narration,start_timestamp,stop_timestamp,start_frame,stop_frame,verb,verb_class,noun,noun_class,...

Test CSVs (``EPIC_test_s1_timestamps.csv``, ``..._s2_...``) have no ``verb_class`` / ``noun_class``: their
labels are -1 (unknown) and the metrics leave them out. Frames are sampled TSN-style *inside* the segment
[start_frame, stop_frame]: one random frame per equal part in training, the part centres otherwise.

Labels follow ``hfnet_core/multitask.py``: the action id ``verb * 352 + noun``. Verb / noun names come from
``EPIC_verb_classes.csv`` / ``EPIC_noun_classes.csv`` (``verb_id,class_key,...``) beside the annotations
when present, else ``verb_000`` .... The action classes and the many-shot counts come from the training
annotations (``train_annotations``; by default the annotations themselves).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DatasetError
from ..input_convention import InputConvention
from ..multitask import TaskSpec, spec_from_training_labels
from .datasets import ClipDataset, Transform, _torch_seeded_rng
from .video import DEFAULT_MAX_SIDE, VideoDecodeError, read_image_files, sample_indices

#: Names ``data.dataset`` / ``open_dataset`` accept for this format.
EPIC_NAMES = ("epic-kitchens", "epic", "epic-kitchens-55")
#: EPIC-Kitchens-55's class counts.
EPIC_VERBS, EPIC_NOUNS = 125, 352
FRAME_TEMPLATE = "frame_{:010d}.jpg"
REQUIRED_COLUMNS = ("participant_id", "video_id", "start_frame", "stop_frame")
#: Default annotation file per split name (when no list file is given).
DEFAULT_ANNOTATIONS = {"train": "EPIC_train_action_labels.csv", "val": "EPIC_val_action_labels.csv",
                       "test": "EPIC_val_action_labels.csv", "s1": "EPIC_test_s1_timestamps.csv",
                       "s2": "EPIC_test_s2_timestamps.csv"}


def read_annotations(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The segments of an EPIC annotation CSV: dicts with uid, participant_id, video_id, start_frame,
    stop_frame, verb_class, noun_class (-1 where the file has no labels). Errors name file and row."""
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"EPIC-Kitchens annotations {p} not found", path=p)
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in cols]
        if missing:
            raise DatasetError(f"{p}: not an EPIC-Kitchens annotation file: columns {missing} are missing "
                               f"(it has {cols[:8]})", path=p)
        labelled = "verb_class" in cols and "noun_class" in cols
        rows = []
        for i, raw in enumerate(reader, start=2):  # line 1 is the header
            r = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            try:
                start, stop = int(r["start_frame"]), int(r["stop_frame"])
                verb = int(r["verb_class"]) if labelled else -1
                noun = int(r["noun_class"]) if labelled else -1
            except ValueError as e:
                raise DatasetError(f"{p}, line {i}: start/stop frame and classes must be integers ({e})", path=p) from e
            if start < 1 or stop < start:
                raise DatasetError(f"{p}, line {i}: bad segment frames {start}..{stop} (1-based, start <= stop)", path=p)
            rows.append({"uid": r.get("uid") or r.get("narration_id") or f"{r['video_id']}_{i - 2}",
                         "participant_id": r["participant_id"], "video_id": r["video_id"],
                         "start_frame": start, "stop_frame": stop, "verb_class": verb, "noun_class": noun})
    return rows


def read_class_names(path: Path, count: int, kind: str) -> list[str]:
    """Names from ``EPIC_{verb,noun}_classes.csv`` (``<id>,<class_key>,...``) if present, else generic."""
    names = [f"{kind}_{i:03d}" for i in range(count)]
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    i = int(row.get(f"{kind}_id", row.get("id", "")))
                except ValueError:
                    continue
                if 0 <= i < count and row.get("class_key"):
                    names[i] = row["class_key"].strip()
    return names


def epic_task_spec(train_rows: Sequence[dict[str, Any]], folder: Path) -> TaskSpec:
    """Verbs / nouns (names from the class CSVs in ``folder``) and the training pairs as action classes."""
    labelled = [r for r in train_rows if r["verb_class"] >= 0 and r["noun_class"] >= 0]
    if not labelled:
        raise DatasetError("the EPIC-Kitchens training annotations have no verb_class / noun_class labels",
                           path=folder)
    verbs = max(EPIC_VERBS, 1 + max(r["verb_class"] for r in labelled))
    nouns = max(EPIC_NOUNS, 1 + max(r["noun_class"] for r in labelled))
    return spec_from_training_labels(read_class_names(folder / "EPIC_verb_classes.csv", verbs, "verb"),
                                     read_class_names(folder / "EPIC_noun_classes.csv", nouns, "noun"),
                                     [r["verb_class"] for r in labelled], [r["noun_class"] for r in labelled])


class EpicKitchensDataset(ClipDataset):
    """EPIC-Kitchens-55 segments as multi-task clips (``task_spec``; labels = action ids, -1 unknown)."""

    def __init__(self, root: str | os.PathLike[str], annotations: str | os.PathLike[str], num_segments: int,
                 mode: str = "eval", transform: Transform | None = None, convention: InputConvention | None = None,
                 train_annotations: str | os.PathLike[str] | None = None, image_template: str = FRAME_TEMPLATE,
                 max_side: int | None = DEFAULT_MAX_SIDE, skip_log: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root)
        self.annotations = Path(annotations)
        self.image_template = image_template
        self.rows = read_annotations(self.annotations)
        train_rows = self.rows if train_annotations is None or Path(train_annotations) == self.annotations \
            else read_annotations(train_annotations)
        self.task_spec = epic_task_spec(train_rows, Path(train_annotations or annotations).parent)
        for r in self.rows:
            if r["verb_class"] >= self.task_spec.num_verbs or r["noun_class"] >= self.task_spec.num_nouns:
                raise DatasetError(f"{self.annotations}: segment {r['uid']} has verb {r['verb_class']} / noun "
                                   f"{r['noun_class']}, outside the training vocabulary", path=self.annotations)
        # Labels are action ids, not indices into class_names: the samples are set after the base checks.
        super().__init__([], self.task_spec.class_names(), num_segments, mode, transform, convention, max_side,
                         skip_log)
        self.samples = [(str(self.root / r["participant_id"] / r["video_id"]),
                         self.task_spec.encode(r["verb_class"], r["noun_class"]) if r["verb_class"] >= 0 else -1,
                         str(r["uid"])) for r in self.rows]

    def load_frames(self, index: int) -> np.ndarray:
        r = self.rows[index]
        length = r["stop_frame"] - r["start_frame"] + 1
        rng = _torch_seeded_rng() if self.mode == "train" else None
        idx = sample_indices(length, self.num_segments, self.mode, rng) + r["start_frame"]
        uniq, inverse = np.unique(idx, return_inverse=True)
        folder = Path(self.samples[index][0])
        frames = read_image_files([folder / self.image_template.format(int(i)) for i in uniq], max_side=self.max_side)
        return frames[inverse.reshape(-1)]

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        folder, label, cid = self.samples[index]
        try:
            frames = self.load_frames(index)
        except VideoDecodeError as e:
            self._record_skip(e.path, e.reason)
            return None
        if self.transform is not None:  # a flip can change the verb (left/right), never the noun
            verb, noun = (int(x) for x in self.task_spec.decode(label)) if label >= 0 else (-1, -1)
            frames, verb = self.transform(frames, verb)
            label = self.task_spec.encode(verb, noun) if label >= 0 else -1
        return {"frames": self.convention.to_model_input(frames), "label": int(label), "clip_id": cid,
                "path": folder}


def open_epic(root: str | os.PathLike[str], split: str, list_file: str | os.PathLike[str] | None,
              train_annotations: str | os.PathLike[str] | None = None, **kwargs: Any) -> EpicKitchensDataset:
    """``open_dataset``'s EPIC branch: ``list_file`` or ``<root>/<EPIC_..._labels.csv for split>``."""
    base = Path(root)
    ann = Path(list_file) if list_file else base / DEFAULT_ANNOTATIONS.get(split.lower(), f"{split}.csv")
    train = Path(train_annotations) if train_annotations else base / DEFAULT_ANNOTATIONS["train"]
    return EpicKitchensDataset(base, ann, train_annotations=train if train.is_file() else None, **kwargs)
