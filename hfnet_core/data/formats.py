"""From a format name and a root folder to a dataset: the layout conventions of each format.

``hfnet_core.data.loading.build_dataset`` turns a data config into a dataset through ``open_dataset``; the
dataset classes live in ``datasets.py`` (Something-v1, video folders / HMDB51, CSV lists) and ``epic.py``
(EPIC-Kitchens-55), which know nothing of each other.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from hfnet_core.input_convention import InputConvention

from .datasets import (ClipDataset, CsvVideoDataset, SomethingV1Dataset, Transform, VideoFolderDataset, _read_names,
                       hmdb51_split)

__all__ = ["open_dataset"]


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def open_dataset(name: str, root: str | os.PathLike[str], split: str, list_file: str | os.PathLike[str] | None = None,
                  num_frames: int = 8, train: bool = False, transform: Transform | None = None,
                  convention: InputConvention | None = None, split_index: int = 1,
                  class_names: Sequence[str] | None = None, **kwargs: Any) -> ClipDataset:
    """A dataset by format name, with the file layout conventions of each (behind ``loading.build_dataset``).

    * ``something-v1``: ``list_file`` or ``<root>/<split>_videofolder.txt``, ``<root>/category.txt``, frames
      under ``<root>/frames``, ``<root>/20bn-something-something-v1`` or ``<root>`` (the layout
      ``hfnet synth`` writes, and TSM's).
    * ``video-folder``: class folders in ``<root>/<split>`` if it exists, else ``<root>``; if ``list_file`` is a
      folder of HMDB51 split files, the official split ``split_index`` is applied (train for "train",
      test otherwise). Class order: ``class_names``, else ``<root>/category.txt``, else sorted folders.
    * ``csv``: ``list_file`` or ``<root>/<split>.csv``.
    * ``epic-kitchens``: ``list_file`` or ``<root>/EPIC_train_action_labels.csv`` (train) /
      ``EPIC_val_action_labels.csv``; frames ``<root>/<P01>/<P01_01>/frame_0000000001.jpg``; the
      ``train_annotations`` keyword names the training CSV (action classes, many-shot counts).

    Mode is TSN ``train`` sampling when ``train`` else ``eval`` (segment centres).
    """
    base = Path(root)
    mode = "train" if train else "eval"
    common: dict[str, Any] = {"num_segments": num_frames, "mode": mode, "transform": transform,
                              "convention": convention}
    common.update(kwargs)
    categories = _first_existing(*(d / "category.txt" for d in (base, base.parent, base.parent.parent)))
    if name in ("something-v1", "something", "somethingv1"):
        lst = Path(list_file) if list_file else base / f"{split}_videofolder.txt"
        if categories is None:
            raise FileNotFoundError(f"no category.txt in {base}")
        frames_root = _first_existing(base / "frames", base / "20bn-something-something-v1") or base
        return SomethingV1Dataset(frames_root, lst, categories, **common)
    if name in ("video-folder", "videofolder", "hmdb51", "folder"):
        folder = base / split if (base / split).is_dir() else base
        names = list(class_names) if class_names is not None else (_read_names(categories) if categories else None)
        include = None
        if list_file is not None and Path(list_file).is_dir():
            include = hmdb51_split(list_file, split_index, "train" if split == "train" else "test")
        return VideoFolderDataset(folder, class_names=names, include=include, **common)
    if name in ("epic-kitchens", "epic", "epic-kitchens-55"):
        from .epic import open_epic

        return open_epic(base, split, list_file, **common)
    if name == "csv":
        table = Path(list_file) if list_file else base / f"{split}.csv"
        names = list(class_names) if class_names is not None else (_read_names(categories) if categories else None)
        return CsvVideoDataset(table, class_names=names, **common)
    raise ValueError(f"unknown dataset {name!r}: use 'something-v1', 'video-folder', 'csv' or 'epic-kitchens' "
                     "(or 'synth' in train)")
