"""Clip datasets for real data: Something-v1 frame folders, one-folder-per-class videos (HMDB51), CSV lists.

Every item is ``{"frames": float32 (T, 3, H, W), "label": int, "clip_id": str, "path": str}``, frames already
in the model's input convention. Real datasets contain broken files; an unreadable clip makes
``__getitem__`` return ``None`` (recorded in ``dataset.skipped``, warned about, and appended to
``dataset.skip_log`` if set - that file is how DataLoader *workers* report skips to the training loop), and
``hfnet_core.data.loading.collate_batch`` drops it and counts it. Training reports the count and the names; it never stops, and
never skips silently.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
import torch

from hfnet_core.data.video import (
    DEFAULT_MAX_SIDE,
    VideoDecodeError,
    iter_video_files,
    read_clip,
    read_image_files,
    sample_indices,
)
from hfnet_core.input_convention import InputConvention

__all__ = [
    "ClipDataset",
    "SomethingV1Dataset",
    "VideoFolderDataset",
    "CsvVideoDataset",
    "hmdb51_split",
    "read_skip_log",
]

Transform = Callable[[np.ndarray, int], tuple[np.ndarray, int]]
_MODES = ("train", "eval", "dense")


def _torch_seeded_rng() -> np.random.Generator:
    """A numpy generator drawn from torch's RNG, which PyTorch seeds differently in every worker."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


class ClipDataset(torch.utils.data.Dataset):
    """Shared machinery: ``samples`` = [(path, label, clip_id)], TSN sampling, transform, convention, skips."""

    def __init__(self, samples: Sequence[tuple[str, int, str]], class_names: Sequence[str], num_segments: int,
                 mode: str = "eval", transform: Transform | None = None, convention: InputConvention | None = None,
                 max_side: int | None = DEFAULT_MAX_SIDE, skip_log: str | os.PathLike[str] | None = None) -> None:
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if num_segments < 1:
            raise ValueError(f"num_segments must be >= 1, got {num_segments}")
        self.samples = list(samples)
        self.class_names = list(class_names)
        self.num_segments = int(num_segments)
        self.mode = mode
        self.transform = transform
        self.convention = convention if convention is not None else InputConvention.bninception()
        self.max_side = max_side
        self.skip_log = Path(skip_log) if skip_log is not None else None
        self.skipped: list[tuple[str, str]] = []
        for _, label, cid in self.samples:
            if not 0 <= label < len(self.class_names):
                raise ValueError(f"clip {cid}: label {label} outside the {len(self.class_names)} classes")

    @property
    def labels(self) -> list[int]:
        return [label for _, label, _ in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load_frames(self, index: int) -> np.ndarray:
        """uint8 (T, H, W, 3) RGB frames of item ``index``, sampled for this dataset's mode."""
        path = self.samples[index][0]
        rng = _torch_seeded_rng() if self.mode == "train" else None
        return read_clip(path, self.num_segments, self.mode, rng=rng, max_side=self.max_side)

    def _record_skip(self, path: str, reason: str) -> None:
        self.skipped.append((path, reason))
        warnings.warn(f"skipping unreadable clip {path}: {reason}", stacklevel=3)
        if self.skip_log is not None:
            self.skip_log.parent.mkdir(parents=True, exist_ok=True)
            with open(self.skip_log, "a", encoding="utf-8") as f:  # one short append: atomic across workers
                f.write(f"{path}\t{reason}\n".replace("\r", " "))

    def __getitem__(self, index: int) -> dict[str, Any] | None:
        path, label, cid = self.samples[index]
        try:
            frames = self.load_frames(index)
        except VideoDecodeError as e:  # e.path is the offending file (e.g. one frame of a folder clip)
            self._record_skip(e.path, e.reason)
            return None
        if self.transform is not None:
            frames, label = self.transform(frames, label)
        return {"frames": self.convention.to_model_input(frames), "label": int(label), "clip_id": cid, "path": path}


# --------------------------------------------------------------------------------------------------


class SomethingV1Dataset(ClipDataset):
    """Something-Something v1 as frame folders (``<root>/<folder>/00001.jpg``) with a TSN/TSM list file
    (``<folder> <num_frames> <label>`` per line) and a category file (one class name per line)."""

    def __init__(self, root: str | os.PathLike[str], list_file: str | os.PathLike[str],
                 categories_file: str | os.PathLike[str], num_segments: int, mode: str = "eval",
                 transform: Transform | None = None, convention: InputConvention | None = None,
                 image_template: str = "{:05d}.jpg", max_side: int | None = DEFAULT_MAX_SIDE,
                 skip_log: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root)
        self.image_template = image_template
        class_names = _read_names(Path(categories_file))
        samples: list[tuple[str, int, str]] = []
        self.num_frames: list[int] = []
        for lineno, line in enumerate(Path(list_file).read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) < 3:
                raise ValueError(f"{list_file}:{lineno}: expected '<folder> <num_frames> <label>', got {line!r}")
            folder, n, label = " ".join(parts[:-2]), int(parts[-2]), int(parts[-1])
            samples.append((str(self.root / folder), label, folder))
            self.num_frames.append(n)
        super().__init__(samples, class_names, num_segments, mode, transform, convention, max_side, skip_log)

    def load_frames(self, index: int) -> np.ndarray:
        path, n = Path(self.samples[index][0]), self.num_frames[index]
        if n < 1:
            raise VideoDecodeError(path, f"the list file says it has {n} frames", "Fix or regenerate the list file")
        rng = _torch_seeded_rng() if self.mode == "train" else None
        idx = sample_indices(n, self.num_segments, self.mode, rng)
        uniq, inverse = np.unique(idx, return_inverse=True)
        frames = read_image_files([path / self.image_template.format(i + 1) for i in uniq], max_side=self.max_side)
        return frames[inverse.reshape(-1)]


# --------------------------------------------------------------------------------------------------


def hmdb51_split(split_dir: str | os.PathLike[str], split_index: int, subset: str) -> dict[str, str]:
    """Video file name -> class name for an official HMDB51 split (``<class>_test_split<N>.txt`` files,
    lines ``<video>.avi <1 train | 2 test | 0 unused>``). ``subset`` is "train" or "test"."""
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")
    if split_index not in (1, 2, 3):
        raise ValueError(f"HMDB51 has splits 1, 2, 3; got {split_index}")
    want = "1" if subset == "train" else "2"
    files = sorted(Path(split_dir).glob(f"*_test_split{split_index}.txt"))
    if not files:
        raise FileNotFoundError(f"no '*_test_split{split_index}.txt' files in {split_dir}")
    out: dict[str, str] = {}
    for f in files:
        cls = re.sub(rf"_test_split{split_index}\.txt$", "", f.name)
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[-1] == want:
                out[" ".join(parts[:-1])] = cls
    return out


class VideoFolderDataset(ClipDataset):
    """One folder per class: ``<root>/<class>/<clip>.avi|.mp4|...`` (or ``<clip>/`` image folders), e.g. HMDB51.

    ``class_names`` fixes the label order (default: sorted folder names). ``include`` keeps only the listed
    file names (e.g. ``hmdb51_split(...)``); listed files that are absent are recorded in ``skipped``.
    """

    def __init__(self, root: str | os.PathLike[str], num_segments: int, mode: str = "eval",
                 transform: Transform | None = None, convention: InputConvention | None = None,
                 class_names: Sequence[str] | None = None, include: Collection[str] | Mapping[str, str] | None = None,
                 max_side: int | None = DEFAULT_MAX_SIDE, skip_log: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} is not a folder")
        folders = sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        names = list(class_names) if class_names is not None else folders
        unknown = sorted(set(folders) - set(names))
        if unknown:
            raise ValueError(f"{self.root}: class folders {unknown[:5]} are not in class_names")
        samples: list[tuple[str, int, str]] = []
        for label, cls in enumerate(names):
            cdir = self.root / cls
            if not cdir.is_dir():
                continue
            clips = iter_video_files(cdir, recursive=False)
            clips += sorted(p for p in cdir.iterdir() if p.is_dir() and not p.name.startswith("."))
            for p in sorted(clips):
                if include is not None and p.name not in include:
                    continue
                samples.append((str(p), label, f"{cls}/{p.name}"))
        super().__init__(samples, names, num_segments, mode, transform, convention, max_side, skip_log)
        if include is not None:
            found = {Path(s[0]).name for s in samples}
            for name in sorted(set(include) - found):
                where = include[name] if isinstance(include, Mapping) else "?"
                self.skipped.append((str(self.root / where / name), "listed in the split but not found"))
            if len(found) < len(include):
                warnings.warn(f"{self.root}: {len(include) - len(found)} clips listed in the split are missing "
                              f"(see dataset.skipped)", stacklevel=2)


# --------------------------------------------------------------------------------------------------


class CsvVideoDataset(ClipDataset):
    """A CSV of ``path,label`` rows (header optional). Labels are class indices or class names; relative
    paths are resolved against ``root`` (default: the CSV's folder)."""

    def __init__(self, csv_path: str | os.PathLike[str], num_segments: int, mode: str = "eval",
                 transform: Transform | None = None, convention: InputConvention | None = None,
                 class_names: Sequence[str] | None = None, root: str | os.PathLike[str] | None = None,
                 max_side: int | None = DEFAULT_MAX_SIDE, skip_log: str | os.PathLike[str] | None = None) -> None:
        csv_path = Path(csv_path)
        base = Path(root) if root is not None else csv_path.parent
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
            rows = rows[1:]
        for i, r in enumerate(rows):
            if len(r) < 2:
                raise ValueError(f"{csv_path}: row {i + 1} needs 'path,label', got {r}")
        raw = [r[1].strip() for r in rows]
        numeric = all(re.fullmatch(r"\d+", x) for x in raw)
        if class_names is None:
            names = [str(i) for i in range(max(map(int, raw)) + 1)] if numeric and raw else sorted(set(raw))
        else:
            names = list(class_names)
        lookup = {n: i for i, n in enumerate(names)}
        samples: list[tuple[str, int, str]] = []
        for r, lab in zip(rows, raw):
            if lab in lookup:
                label = lookup[lab]
            elif re.fullmatch(r"\d+", lab):
                label = int(lab)
            else:
                raise ValueError(f"{csv_path}: label {lab!r} is not a class name or index")
            rel = r[0].strip()
            p = Path(rel) if os.path.isabs(rel) else base / rel
            samples.append((str(p), label, rel))
        super().__init__(samples, names, num_segments, mode, transform, convention, max_side, skip_log)


# --------------------------------------------------------------------------------------------------


def read_skip_log(path: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """``(path, reason)`` pairs appended by datasets (any worker) to their ``skip_log``; [] if none."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        clip, _, reason = line.partition("\t")
        out.append((clip, reason))
    return out


# --------------------------------------------------------------------------------------------------


def _read_names(path: Path) -> list[str]:
    """Class names, one per line (blank lines ignored)."""
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
