"""TSN clip augmentation on uint8 ``(T, H, W, 3)`` frames: one crop for the whole clip, label-aware flips.

Why these: TSN's multi-scale corner cropping (Wang et al., 2016) is what the paper's baselines were trained
with. Every frame of a clip gets the *same* crop and flip - different crops per frame would fake motion,
which is exactly the signal HF-Net is meant to learn. A horizontal flip turns "left to right" into "right to
left", so ``RandomHorizontalFlip`` returns the swapped label instead of teaching the wrong one.

A transform is ``(frames, label) -> (frames, label)``; normalisation is not done here but by
``InputConvention.to_model_input``. Randomness comes from torch's generator (seeded per DataLoader worker by
PyTorch) or from an explicit ``torch.Generator`` for reproducible tests.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "ClipTransform",
    "resize_clip",
    "Compose",
    "MultiScaleCrop",
    "RandomHorizontalFlip",
    "ResizeCenterCrop",
    "train_transform",
    "eval_transform",
    "flip_label_map_from_names",
]

ClipTransform = Callable[[np.ndarray, int], tuple[np.ndarray, int]]


def _check(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")


def resize_clip(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize all frames at once (bilinear, antialiased when shrinking); uint8 in, uint8 out."""
    _check(frames)
    if frames.shape[1] == height and frames.shape[2] == width:
        return frames
    # (T, H, W, 3) viewed as (T, 3, H, W) is channels-last: torch's fast uint8 antialias path (10x float32).
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def _randint(high: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(high, (1,), generator=generator).item())


class Compose:
    """Apply transforms in order, threading the label through."""

    def __init__(self, transforms: Sequence[ClipTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, frames: np.ndarray, label: int) -> tuple[np.ndarray, int]:
        for t in self.transforms:
            frames, label = t(frames, label)
        return frames, label

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class MultiScaleCrop:
    """TSN's GroupMultiScaleCrop: crop side = shorter side x one of ``scales`` (width and height may differ
    by ``max_distort`` scale steps), placed at one of 13 fixed positions (corners, centre, edge midpoints,
    quarter points), then resized to ``size`` x ``size``."""

    def __init__(self, size: int, scales: Sequence[float] = (1.0, 0.875, 0.75, 0.66), max_distort: int = 1,
                 more_fix_crop: bool = True, generator: torch.Generator | None = None) -> None:
        self.size = int(size)
        self.scales = tuple(float(s) for s in scales)
        self.max_distort = int(max_distort)
        self.more_fix_crop = more_fix_crop
        self.generator = generator

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """Random ``(top, left, crop_h, crop_w)`` for a frame of this size."""
        base = min(height, width)
        sides = [int(base * s) for s in self.scales]
        sides = [self.size if abs(s - self.size) < 3 else s for s in sides]  # TSN snaps near-target sizes
        pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= self.max_distort]
        crop_h, crop_w = pairs[_randint(len(pairs), self.generator)]
        crop_h, crop_w = min(crop_h, height), min(crop_w, width)
        sh, sw = (height - crop_h) // 4, (width - crop_w) // 4
        offsets = [(0, 0), (0, 4 * sw), (4 * sh, 0), (4 * sh, 4 * sw), (2 * sh, 2 * sw)]
        if self.more_fix_crop:
            offsets += [(2 * sh, 0), (2 * sh, 4 * sw), (4 * sh, 2 * sw), (0, 2 * sw),
                        (sh, sw), (sh, 3 * sw), (3 * sh, sw), (3 * sh, 3 * sw)]
        top, left = offsets[_randint(len(offsets), self.generator)]
        return top, left, crop_h, crop_w

    def __call__(self, frames: np.ndarray, label: int) -> tuple[np.ndarray, int]:
        _check(frames)
        top, left, ch, cw = self.crop_box(frames.shape[1], frames.shape[2])
        return resize_clip(frames[:, top : top + ch, left : left + cw], self.size, self.size), label

    def __repr__(self) -> str:
        return f"MultiScaleCrop(size={self.size}, scales={self.scales}, max_distort={self.max_distort})"


class RandomHorizontalFlip:
    """Mirror the whole clip with probability ``p``; a flipped clip of class ``k`` gets label
    ``flip_label_map.get(k, k)`` (e.g. left-to-right <-> right-to-left). A class mapped to ``None`` is never
    flipped (a direction-dependent class whose mirror class does not exist)."""

    def __init__(self, flip_label_map: Mapping[int, int | None] | None = None, p: float = 0.5,
                 generator: torch.Generator | None = None) -> None:
        self.flip_label_map = dict(flip_label_map or {})
        for k, v in self.flip_label_map.items():
            if v is not None and self.flip_label_map.get(v, v) != k:
                raise ValueError(f"flip_label_map must be symmetric: {k}->{v} but {v}->{self.flip_label_map.get(v, v)}")
        self.p = float(p)
        self.generator = generator

    def __call__(self, frames: np.ndarray, label: int) -> tuple[np.ndarray, int]:
        _check(frames)
        label = int(label)
        if torch.rand((), generator=self.generator).item() >= self.p:
            return frames, label
        new = self.flip_label_map.get(label, label)
        if new is None:
            return frames, label
        return np.ascontiguousarray(frames[:, :, ::-1]), new

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p}, flip_label_map={self.flip_label_map})"


class ResizeCenterCrop:
    """TSN evaluation: scale the shorter side to ``resize`` (default size*256/224), take the centre square."""

    def __init__(self, size: int, resize: int | None = None) -> None:
        self.size = int(size)
        self.resize = int(resize) if resize is not None else int(size * 256 / 224)
        if self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be >= size ({self.size})")

    def __call__(self, frames: np.ndarray, label: int) -> tuple[np.ndarray, int]:
        _check(frames)
        h, w = frames.shape[1], frames.shape[2]
        if h <= w:
            nh, nw = self.resize, max(self.resize, int(round(w * self.resize / h)))
        else:
            nh, nw = max(self.resize, int(round(h * self.resize / w))), self.resize
        frames = resize_clip(frames, nh, nw)
        top, left = (nh - self.size) // 2, (nw - self.size) // 2
        return np.ascontiguousarray(frames[:, top : top + self.size, left : left + self.size]), label

    def __repr__(self) -> str:
        return f"ResizeCenterCrop(size={self.size}, resize={self.resize})"


_MIRROR_WORDS = [("left", "right"), ("clockwise", "counterclockwise"), ("clockwise", "counter-clockwise"),
                  ("clockwise", "anticlockwise"), ("clockwise", "anti-clockwise")]


def flip_label_map_from_names(class_names: Sequence[str]) -> dict[int, int | None]:
    """Flip map for real datasets: pairs classes whose names differ by left<->right or clockwise<->counter-
    clockwise (Something-v1: "Pushing something from left to right" <-> "... right to left"); a class whose
    name has a direction but no mirror partner maps to ``None`` (never flipped)."""
    index = {n.strip().lower(): i for i, n in enumerate(class_names)}
    out: dict[int, int | None] = {}
    for i, name in enumerate(class_names):
        words = re.findall(r"[a-z]+(?:-[a-z]+)?", name.lower())
        has_direction = any(w in ("left", "right") or w.endswith("clockwise") for w in words)
        if not has_direction:
            continue
        partner = None
        for a, b in _MIRROR_WORDS:
            pattern = rf"\b({re.escape(a)}|{re.escape(b)})\b"
            swapped = re.sub(pattern, lambda m: b if m.group(1) == a else a, name.lower())
            if swapped in index and index[swapped] != i:
                partner = index[swapped]
                break
        out[i] = partner
    return out


def train_transform(size: int, flip_label_map: Mapping[int, int | None] | None = None, flip: bool = True,
                    generator: torch.Generator | None = None) -> Compose:
    """TSN training augmentation: multi-scale corner crop to ``size``, then a label-aware horizontal flip.

    Pass ``flip=False`` for datasets whose direction-dependent classes have no flip partner listed.
    """
    steps: list[ClipTransform] = [MultiScaleCrop(size, generator=generator)]
    if flip:
        steps.append(RandomHorizontalFlip(flip_label_map, generator=generator))
    return Compose(steps)


def eval_transform(size: int) -> Compose:
    """TSN evaluation: resize the shorter side to size*256/224 and centre-crop ``size``."""
    return Compose([ResizeCenterCrop(size)])
