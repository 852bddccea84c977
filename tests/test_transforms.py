"""TSN transforms: one crop for the whole clip, TSN crop geometry, label-aware flips, exact resizing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hfnet_core.data.transforms import (
    Compose,
    MultiScaleCrop,
    RandomHorizontalFlip,
    ResizeCenterCrop,
    eval_transform,
    flip_label_map_from_names,
    resize_clip,
    train_transform,
)


def coordinate_clip(t: int = 4, h: int = 96, w: int = 128) -> np.ndarray:
    """Pixel (y, x) of frame k holds (y, x, k): where a crop came from can be read off its pixels."""
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    f = np.stack([y, x, np.zeros_like(y)], axis=-1)
    clip = np.repeat(f[None], t, axis=0)
    clip[..., 2] = np.arange(t)[:, None, None]
    return clip.astype(np.uint8)


def test_multiscale_crop_geometry_matches_tsn() -> None:
    crop = MultiScaleCrop(64, generator=torch.Generator().manual_seed(0))
    seen_sizes, seen_offsets = set(), set()
    for _ in range(400):
        top, left, ch, cw = crop.crop_box(96, 128)
        seen_sizes.add((ch, cw))
        seen_offsets.add((top / max(96 - ch, 1), left / max(128 - cw, 1)))
        assert 0 <= top <= 96 - ch and 0 <= left <= 128 - cw
    sides = {96, 84, 72, 64}  # 96 x (1, .875, .75, .66); TSN snaps 63 to the target 64
    assert {s for pair in seen_sizes for s in pair} == sides
    ranks = {s: i for i, s in enumerate(sorted(sides, reverse=True))}
    assert all(abs(ranks[h] - ranks[w]) <= 1 for h, w in seen_sizes)  # max_distort = 1
    assert len(seen_sizes) == 10  # 4 + 2*3 pairs
    # Offsets are the 13 fixed positions (quarters of the free range), not arbitrary.
    assert all(round(a * 4) == pytest.approx(a * 4, abs=0.35) and round(b * 4) == pytest.approx(b * 4, abs=0.35)
               for a, b in seen_offsets)


def test_the_same_crop_applies_to_every_frame() -> None:
    clip = coordinate_clip()
    t = MultiScaleCrop(48, scales=(0.75,), generator=torch.Generator().manual_seed(3))
    out, label = t(clip, 7)
    assert label == 7 and out.shape == (4, 48, 48, 3) and out.dtype == np.uint8
    for k in range(4):
        assert np.array_equal(out[k, ..., :2], out[0, ..., :2])  # same region in every frame
        assert np.all(out[k, ..., 2] == k)  # and frames stay in order


def test_resize_clip_is_antialiased_bilinear_and_exact_for_identity() -> None:
    clip = coordinate_clip(2, 40, 60)
    assert resize_clip(clip, 40, 60) is clip
    small = resize_clip(clip, 20, 30)
    assert small.shape == (2, 20, 30, 3) and small.dtype == np.uint8
    # Antialiased 2x downscale of a linear ramp: pixel j averages source pixels 2j, 2j+1 -> 2j + 0.5.
    assert np.abs(small[0, 5, :, 1].astype(float) - (np.arange(30) * 2 + 0.5)).max() <= 1.0
    checker = np.zeros((1, 40, 40, 3), np.uint8)
    checker[0, ::2, ::2] = checker[0, 1::2, 1::2] = 255
    assert np.abs(resize_clip(checker, 10, 10).astype(float) - 127.5).max() < 20  # no aliasing


def test_flip_swaps_mapped_labels_and_mirrors_all_frames() -> None:
    clip = coordinate_clip()
    always = RandomHorizontalFlip({0: 1, 1: 0, 4: None}, p=1.0)
    out, label = always(clip, 0)
    assert label == 1 and np.array_equal(out, clip[:, :, ::-1])
    assert always(clip, 3)[1] == 3  # unmapped classes keep their label
    out, label = always(clip, 4)  # mapped to None: direction matters but has no partner -> never flipped
    assert label == 4 and out is clip
    never = RandomHorizontalFlip({0: 1, 1: 0}, p=0.0)
    assert never(clip, 0)[1] == 0
    with pytest.raises(ValueError, match="symmetric"):
        RandomHorizontalFlip({0: 1, 1: 2})


def test_flip_happens_about_half_the_time_and_is_reproducible() -> None:
    clip = coordinate_clip(1, 8, 8)
    flip = RandomHorizontalFlip({0: 1, 1: 0}, generator=torch.Generator().manual_seed(1))
    labels = [flip(clip, 0)[1] for _ in range(400)]
    assert 150 < sum(labels) < 250
    again = RandomHorizontalFlip({0: 1, 1: 0}, generator=torch.Generator().manual_seed(1))
    assert labels == [again(clip, 0)[1] for _ in range(400)]


def test_resize_center_crop_is_tsn_eval() -> None:
    clip = coordinate_clip(2, 120, 200)
    out, label = ResizeCenterCrop(112)(clip, 5)
    assert out.shape == (2, 112, 112, 3) and label == 5
    assert ResizeCenterCrop(224).resize == 256
    # Shorter side scaled to 128 (= 112*256/224), width to 213; the crop is centred.
    scaled = resize_clip(clip, 128, 213)
    top, left = (128 - 112) // 2, (213 - 112) // 2
    assert np.array_equal(out, scaled[:, top : top + 112, left : left + 112])
    tall, _ = ResizeCenterCrop(32)(coordinate_clip(1, 100, 50), 0)
    assert tall.shape == (1, 32, 32, 3)


def test_factories_and_compose() -> None:
    clip = coordinate_clip(3, 128, 160)
    tr = train_transform(112, {0: 1, 1: 0}, generator=torch.Generator().manual_seed(0))
    assert isinstance(tr, Compose)
    labels = set()
    for _ in range(30):
        out, label = tr(clip, 0)
        assert out.shape == (3, 112, 112, 3) and out.dtype == np.uint8
        labels.add(label)
    assert labels == {0, 1}
    assert len(train_transform(112, flip=False).transforms) == 1
    out, label = eval_transform(112)(clip, 1)
    assert out.shape == (3, 112, 112, 3) and label == 1
    with pytest.raises(ValueError):
        eval_transform(112)(clip.astype(np.float32), 0)


def test_flip_map_from_class_names() -> None:
    names = ["Pushing something from left to right", "Pushing something from right to left",
             "Turning the camera left while filming something", "Holding something",
             "Rotating something clockwise", "Rotating something counter-clockwise"]
    assert flip_label_map_from_names(names) == {0: 1, 1: 0, 2: None, 4: 5, 5: 4}
