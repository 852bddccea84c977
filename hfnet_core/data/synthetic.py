"""SynthSomething: a procedural dataset whose classes differ only in temporal order.

Why it exists: HF-Net's claim is that letting adjacent frames interact helps where *order* matters
(Something-Something). A dataset where a frame-order-blind model (TSN) provably cannot do better than
chance within a pair, while an order-aware one can, lets the demo show that claim in minutes on a CPU.

Construction (the property tests check it exactly):

* Classes come in **reversed pairs** ``(a, b)``. A clip of class ``b`` with seed ``s`` is the clip of
  class ``a`` with seed ``s`` with its frame order reversed - same random draws, same noise, same jitter.
  The *set* of frames therefore carries no information about which class of the pair it is.
* Two order-free classes ("Holding something still", "Shaking something") differ in how much the
  object moves across frames, not in order.
* Nuisances: textured / cluttered backgrounds, static distractor shapes, a table edge, several object
  shapes and two-tone textures, random scale, speed and timing, camera jitter of at most +-1 px (more makes
  still vs shaking unlearnable, FINDINGS.md) and sensor noise.

Clips are generated on the fly in a few milliseconds (vectorised numpy, no per-pixel Python loops).
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from hfnet_core.input_convention import InputConvention

__all__ = [
    "SYNTH_CLASSES",
    "REVERSED_PAIRS",
    "ORDER_FREE_CLASSES",
    "SYNTH_FLIP_LABEL_MAP",
    "generate_clip",
    "clip_seed",
    "SynthSomethingDataset",
    "write_dataset",
    "SYNTH_FPS",
    "SYNTH_VERSION",
    "SYNTH_VERBS",
    "SYNTH_NOUNS",
    "SYNTH_ACTIONS",
    "generate_clip_with_shape",
    "clip_shape",
    "synth_task_spec",
]

#: Bump whenever the generated pixels change, so checkpoints and written datasets can say which data they saw.
SYNTH_VERSION = 1

SYNTH_CLASSES: list[str] = [
    "Moving something from left to right",  # 0
    "Moving something from right to left",  # 1 = reverse of 0
    "Moving something towards the camera",  # 2
    "Moving something away from the camera",  # 3 = reverse of 2
    "Rotating something clockwise",  # 4
    "Rotating something counter-clockwise",  # 5 = reverse of 4
    "Something appearing",  # 6
    "Something disappearing",  # 7 = reverse of 6
    "Covering something",  # 8
    "Uncovering something",  # 9 = reverse of 8
    "Dropping something",  # 10
    "Lifting something",  # 11 = reverse of 10
    "Squeezing something",  # 12
    "Stretching something",  # 13 = reverse of 12
    "Holding something still",  # 14 (order-free)
    "Shaking something",  # 15 (order-free)
]

#: ``(forward, reversed)`` class indices: class ``reversed`` = class ``forward`` played backwards.
REVERSED_PAIRS: list[tuple[int, int]] = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13)]
#: Classes whose clips are unchanged in distribution by time reversal.
ORDER_FREE_CLASSES: list[int] = [14, 15]
#: A horizontal flip turns left->right into right->left and clockwise into counter-clockwise.
SYNTH_FLIP_LABEL_MAP: dict[int, int] = {0: 1, 1: 0, 4: 5, 5: 4}

_REVERSE_OF: dict[int, int] = {b: a for a, b in REVERSED_PAIRS}
_SPLIT_ID = {"train": 0, "val": 1, "test": 2}
_MAX_CLIPS_PER_CLASS = 10_000_000

# Shapes in object coordinates (u right, v down; the shape fits in the unit disc).
_SHAPES = ("rect", "ellipse", "triangle", "L", "arrow", "flag")
_ASYMMETRIC_SHAPES = ("L", "arrow", "flag")  # no rotational symmetry: rotation direction is visible

# --- The verb / noun view (factored labels, like EPIC-Kitchens' verb and noun classes) ---------------
#: Verbs = the 16 motions (the classes above); nouns = the moving object's shape.
SYNTH_VERBS: list[str] = SYNTH_CLASSES
SYNTH_NOUNS: list[str] = ["rectangle", "ellipse", "triangle", "L-shape", "arrow", "flag"]
#: Which shapes each motion draws: rotation uses the asymmetric shapes (so its direction is visible),
#: squeezing / stretching a rectangle or an ellipse, every other motion any shape.
_VERB_SHAPES: dict[int, tuple[str, ...]] = {4: _ASYMMETRIC_SHAPES, 5: _ASYMMETRIC_SHAPES,
                                            12: ("rect", "ellipse"), 13: ("rect", "ellipse")}
#: Every (verb, noun) pair the generator can produce, as action ids verb * len(SYNTH_NOUNS) + noun.
SYNTH_ACTIONS: list[int] = [v * len(SYNTH_NOUNS) + _SHAPES.index(sh) for v in range(len(SYNTH_CLASSES))
                            for sh in _VERB_SHAPES.get(v, _SHAPES)]
SYNTH_VIEWS = ("action", "verb_noun")


def clip_seed(dataset_seed: int, split: str, index_in_class: int) -> int:
    """Seed of the ``index_in_class``-th clip of every class in ``split``; disjoint across splits.

    Both classes of a reversed pair share this seed, so in a dataset clip *k* of "right to left" is
    exactly clip *k* of "left to right" reversed: the model must use order to tell them apart.
    """
    if split not in _SPLIT_ID:
        raise ValueError(f"split must be one of {sorted(_SPLIT_ID)}, got {split!r}")
    if not 0 <= index_in_class < _MAX_CLIPS_PER_CLASS:
        raise ValueError(f"index_in_class must be in [0, {_MAX_CLIPS_PER_CLASS}), got {index_in_class}")
    return (int(dataset_seed) * 3 + _SPLIT_ID[split]) * _MAX_CLIPS_PER_CLASS + int(index_in_class)


# --------------------------------------------------------------------------------------------------
# Cached, seed-independent tables (deterministic; built once per size)


@functools.lru_cache(maxsize=8)
def _noise_bank(size: int) -> np.ndarray:
    """Gaussian noise frames (std 16, int16) that clips crop from: far cheaper than fresh noise."""
    rng = np.random.default_rng(20240601)
    bank = rng.standard_normal((16, size + 16, size + 16, 3), dtype=np.float32) * 16.0
    return np.clip(np.round(bank), -127, 127).astype(np.int16)


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates of a (size+2)^2 canvas (one pixel of jitter margin each side)."""
    c = np.arange(size + 2, dtype=np.float32) - 1.0 + 0.5
    return c[None, :], c[:, None]  # xs (1, W), ys (H, 1)


# --------------------------------------------------------------------------------------------------
# Drawing helpers


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    """Inside-test of ``shape`` at object coordinates ``(u, v)`` (any broadcastable shape)."""
    if shape == "rect":
        return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.95 * aspect)
    if shape == "ellipse":
        return u * u + (v * v) / (aspect * aspect) <= 1.0
    if shape == "triangle":  # pointing up (-v)
        return (v <= 0.6) & (np.abs(u) * 1.5 <= v + 0.95)
    if shape == "L":
        vertical = (u >= -0.8) & (u <= -0.25) & (np.abs(v) <= 0.9)
        foot = (u >= -0.8) & (u <= 0.8) & (v >= 0.4) & (v <= 0.9)
        return vertical | foot
    if shape == "arrow":
        shaft = (u >= -0.95) & (u <= 0.2) & (np.abs(v) <= 0.22)
        head = (u >= 0.2) & (u <= 0.95) & (np.abs(v) <= (0.95 - u) * 0.9)
        return shaft | head
    if shape == "flag":
        pole = (u >= -0.85) & (u <= -0.6) & (np.abs(v) <= 0.95)
        cloth = (u >= -0.6) & (u <= 0.85) & (v >= -0.95) & (v <= -0.15)
        return pole | cloth
    raise ValueError(f"unknown shape {shape!r}")


def _paint(canvas: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Paint ``colour`` (3,) where ``mask`` (H, W) is true, in place."""
    canvas[mask] = colour


def _vivid_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated colour, so the object stands out from the greyish backgrounds."""
    hue = rng.uniform(0.0, 6.0)
    k = np.array([5.0, 3.0, 1.0], dtype=np.float32)
    channel = np.clip(np.minimum((k + hue) % 6.0, 4.0 - (k + hue) % 6.0), 0.0, 1.0)
    value = rng.uniform(170, 255)
    low = rng.uniform(0, 60)
    return (low + (value - low) * channel).astype(np.uint8)


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """A static textured, cluttered scene on a (size+2)^2 canvas; returns it and the table-edge row."""
    n = size + 2
    xs, ys = _grid(size)
    base = rng.uniform(60, 170, size=3).astype(np.float32)
    kind = rng.integers(0, 3)
    if kind == 0:  # smooth colour blobs: low-resolution noise, upsampled by repetition + blur-free
        cells = int(rng.integers(4, 10))
        low = rng.normal(0.0, 20.0, size=(cells, cells, 3)).astype(np.float32)
        idx = np.minimum((np.arange(n) * cells) // n, cells - 1)
        tex = low[idx][:, idx]
    elif kind == 1:  # oriented stripes (wallpaper / wood grain)
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(6, 22) * size / 128.0
        phase = (xs * math.cos(ang) + ys * math.sin(ang)) / period
        tex = ((np.floor(phase) % 2.0) * 2.0 - 1.0)[..., None] * rng.uniform(8, 25, size=3).astype(np.float32)
    else:  # checkerboard tiles
        cell = rng.uniform(8, 24) * size / 128.0
        chk = (np.floor(xs / cell) + np.floor(ys / cell)) % 2.0
        tex = (chk * 2.0 - 1.0)[..., None] * rng.uniform(8, 22, size=3).astype(np.float32)
    canvas = np.clip(base + tex, 0, 255).astype(np.uint8)
    canvas = np.broadcast_to(canvas, (n, n, 3)).copy()
    # Table: a darker/lighter band below a horizontal edge (objects drop onto it).
    table_y = float(rng.uniform(0.72, 0.86) * size)
    table = np.clip(rng.uniform(40, 200, size=3), 0, 255).astype(np.uint8)
    canvas[int(table_y) + 1 :] = (canvas[int(table_y) + 1 :] // 2 + table // 2).astype(np.uint8)
    # Clutter: a few muted rectangles / discs, and 1-3 small vivid distractor shapes (static).
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = rng.uniform(0, size, size=2)
        w, h = rng.uniform(0.05, 0.3, size=2) * size
        colour = np.clip(base + rng.normal(0, 45, size=3), 0, 255).astype(np.uint8)
        if rng.random() < 0.5:
            mask = (np.abs(xs - x0) <= w / 2) & (np.abs(ys - y0) <= h / 2)
        else:
            mask = ((xs - x0) / w) ** 2 + ((ys - y0) / h) ** 2 <= 0.25
        _paint(canvas, mask, colour)
    for _ in range(int(rng.integers(1, 4))):
        x0, y0 = rng.uniform(0.05, 0.95, size=2) * size
        r = rng.uniform(0.035, 0.06) * size
        shape = _SHAPES[int(rng.integers(0, len(_SHAPES)))]
        a = rng.uniform(0, 2 * math.pi)
        c, s = math.cos(a), math.sin(a)
        u = ((xs - x0) * c + (ys - y0) * s) / r
        v = (-(xs - x0) * s + (ys - y0) * c) / r
        _paint(canvas, _shape_mask(shape, u, v, 0.7), _vivid_colour(rng))
    return canvas, table_y


def _ease(rng: np.random.Generator, tau: np.ndarray) -> np.ndarray:
    """Map clip time tau in [0,1] to motion progress in [0,1]: random start/end and speed profile."""
    start = rng.uniform(0.0, 0.2)
    end = rng.uniform(0.8, 1.0)
    p = np.clip((tau - start) / (end - start), 0.0, 1.0)
    if rng.random() < 0.5:
        p = p * p * (3.0 - 2.0 * p)  # smoothstep: accelerate then brake
    return p


# --------------------------------------------------------------------------------------------------
# The generative process of each "forward" class


def _object_params(cls: int, rng: np.random.Generator, size: int, T: int, table_y: float) -> dict[str, Any]:
    """Per-frame object state (centre, angle, scales, opacity, cover) for the forward class ``cls``."""
    tau = np.linspace(0.0, 1.0, T, dtype=np.float64)
    ones = np.ones(T)
    rotating = cls == 4
    shape = (
        _ASYMMETRIC_SHAPES[int(rng.integers(0, len(_ASYMMETRIC_SHAPES)))]
        if rotating
        else _SHAPES[int(rng.integers(0, len(_SHAPES)))]
    )
    radius = rng.uniform(0.24, 0.32) * size if rotating else rng.uniform(0.13, 0.2) * size
    aspect = rng.uniform(0.55, 1.0)
    cx = rng.uniform(0.3, 0.7) * size * ones
    cy = rng.uniform(0.3, 0.65) * size * ones
    angle = rng.uniform(0.0, 2 * math.pi) * ones
    sx = radius * ones
    sy = radius * ones
    alpha = ones.copy()
    cover = np.zeros(T)  # fraction of the object's box hidden by the cover (Covering)
    if cls == 0:  # left -> right
        span = rng.uniform(0.4, 0.65) * size
        x0 = rng.uniform(0.12, 0.88 - span / size) * size
        cx = x0 + span * _ease(rng, tau)
        cy = cy + rng.normal(0, 0.02 * size) * tau  # slight vertical drift
    elif cls == 2:  # towards the camera: grows 1.8-2.8x, drifts a little down (perspective)
        r0 = rng.uniform(0.07, 0.1) * size
        grow = rng.uniform(1.8, 2.8)
        p = _ease(rng, tau)
        sx = sy = r0 * (1.0 + (grow - 1.0) * p)
        cx = rng.uniform(0.4, 0.6) * size * ones
        cy = rng.uniform(0.4, 0.55) * size + 0.06 * size * p
    elif cls == 4:  # clockwise on screen (x right, y down): angle increases
        per_frame = math.radians(rng.uniform(20.0, 32.0)) * 7.0 / max(T - 1, 1)
        angle = angle + per_frame * (T - 1) * tau
        cx = rng.uniform(0.4, 0.6) * size * ones
        cy = rng.uniform(0.4, 0.6) * size * ones
    elif cls == 6:  # appearing: fades in
        p = _ease(rng, tau)
        alpha = p
    elif cls == 8:  # covering: a cloth slides over the object from one side and stays
        cover = _ease(rng, tau)
    elif cls == 10:  # dropping: falls under gravity onto the table edge
        t_release = rng.uniform(0.0, 0.25)
        fall = np.clip(tau - t_release, 0.0, None)
        y0 = rng.uniform(0.15, 0.3) * size
        floor = table_y - radius * 0.9
        g = (floor - y0) / max((1.0 - t_release - rng.uniform(0.05, 0.25)) ** 2, 1e-3)
        cy = np.minimum(y0 + g * fall * fall, floor)
        cx = cx + rng.normal(0, 0.01 * size) * tau
    elif cls == 12:  # squeezing: squashed along one (object) axis, bulges along the other
        p = _ease(rng, tau)
        squash = rng.uniform(0.4, 0.55)
        sx = radius * (1.0 - (1.0 - squash) * p)
        sy = radius * (1.0 + 0.3 * p)
        if rng.random() < 0.5:
            sx, sy = sy, sx
        shape = ("rect", "ellipse")[int(rng.integers(0, 2))]
        angle = rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.15) * ones
    elif cls == 14:  # holding still
        pass
    elif cls == 15:  # shaking: alternating displacements far larger than the +-1 px camera jitter
        amp = rng.uniform(0.05, 0.08) * size * rng.uniform(0.7, 1.0, size=T)
        sign = np.where(np.arange(T) % 2 == 0, 1.0, -1.0) * rng.choice([-1.0, 1.0])
        d = rng.uniform(0, math.pi)
        cx = cx + amp * sign * math.cos(d)
        cy = cy + amp * sign * math.sin(d)
    else:
        raise AssertionError(f"class {cls} is not a forward class")
    return {
        "shape": shape,
        "aspect": aspect,
        "cx": np.asarray(cx, np.float32),
        "cy": np.asarray(cy, np.float32),
        "angle": np.asarray(angle, np.float32),
        "sx": np.asarray(sx, np.float32),
        "sy": np.asarray(sy, np.float32),
        "alpha": np.asarray(alpha, np.float32),
        "cover": np.asarray(cover, np.float32),
        "cover_side": int(rng.integers(0, 4)),
    }


def _render(cls: int, rng: np.random.Generator, T: int, size: int) -> tuple[np.ndarray, str]:
    """Render the forward class ``cls``: (T, size, size, 3) uint8, and the moving object's shape."""
    bg, table_y = _background(rng, size)
    prm = _object_params(cls, rng, size, T, table_y)
    col1, col2 = _vivid_colour(rng), _vivid_colour(rng)
    stripe_period = rng.uniform(0.35, 0.6)
    # Camera jitter: integer offset in {-1, 0, 1}^2 per frame (crop of the 1-px-margin canvas).
    jit = rng.integers(0, 3, size=(T, 2))
    noise_gain = int(rng.integers(2, 7))  # noise std = gain pixel levels
    noise_pick = rng.integers(0, 16, size=T)
    noise_off = rng.integers(0, 16, size=(T, 2))

    n = size + 2
    xs, ys = _grid(size)
    canvas = np.broadcast_to(bg, (T, n, n, 3)).copy()
    for t in range(T):
        # Only the object's bounding square is evaluated (shapes fit in a disc of radius sqrt(2)).
        reach = 1.42 * float(max(prm["sx"][t], prm["sy"][t]))
        x0 = max(int(prm["cx"][t] - reach) + 1, 0)
        x1 = min(int(prm["cx"][t] + reach) + 2, n)
        y0 = max(int(prm["cy"][t] - reach) + 1, 0)
        y1 = min(int(prm["cy"][t] + reach) + 2, n)
        if x1 <= x0 or y1 <= y0 or prm["alpha"][t] <= 0:
            continue
        c, s = math.cos(prm["angle"][t]), math.sin(prm["angle"][t])
        dx = xs[:, x0:x1] - prm["cx"][t]
        dy = ys[y0:y1] - prm["cy"][t]
        u = (c * dx + s * dy) * (1.0 / prm["sx"][t])
        v = (c * dy - s * dx) * (1.0 / prm["sy"][t])
        inside = _shape_mask(prm["shape"], u, v, prm["aspect"])
        stripes = (np.floor((u + v * 0.3) * (1.0 / stripe_period)) % 2.0) == 0
        obj = np.where(stripes[..., None], col1, col2)
        box = canvas[t, y0:y1, x0:x1]
        if prm["alpha"][t] >= 1.0:
            box[inside] = obj[inside]
        else:
            a = float(prm["alpha"][t])
            box[inside] = (box[inside] * (1.0 - a) + obj[inside] * a).astype(np.uint8)
    if np.any(prm["cover"] > 0):
        canvas = _draw_cover(canvas, prm, rng, size)

    # Crop each frame with its jitter offset, add sensor noise, quantise.
    out = np.empty((T, size, size, 3), np.int16)
    bank = _noise_bank(size)
    for t in range(T):
        oy, ox = jit[t]
        ny, nx = noise_off[t]
        out[t] = canvas[t, oy : oy + size, ox : ox + size]
        noise = bank[noise_pick[t], ny : ny + size, nx : nx + size] * noise_gain
        noise >>= 4
        out[t] += noise
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8), prm["shape"]


def _draw_cover(canvas: np.ndarray, prm: dict[str, Any], rng: np.random.Generator, size: int) -> np.ndarray:
    """Covering: an opaque patterned cloth extends from one side over the object's box."""
    T, n = canvas.shape[0], canvas.shape[1]
    r = float(max(prm["sx"].max(), prm["sy"].max())) * 1.25
    x0, x1 = prm["cx"][0] - r, prm["cx"][0] + r
    y0, y1 = prm["cy"][0] - r, prm["cy"][0] + r
    cloth = _vivid_colour(rng)
    xs, ys = _grid(size)
    check = ((np.floor(xs / 5.0) + np.floor(ys / 5.0)) % 2.0 == 0)[..., None]
    pattern = np.where(check, cloth, (cloth // 2 + 40).astype(np.uint8))
    side = prm["cover_side"]
    for t in range(T):
        f = float(prm["cover"][t])
        if f <= 0:
            continue
        if side == 0:  # from the left
            m = (xs >= x0) & (xs <= x0 + f * (x1 - x0)) & (ys >= y0) & (ys <= y1)
        elif side == 1:  # from the right
            m = (xs <= x1) & (xs >= x1 - f * (x1 - x0)) & (ys >= y0) & (ys <= y1)
        elif side == 2:  # from the top
            m = (ys >= y0) & (ys <= y0 + f * (y1 - y0)) & (xs >= x0) & (xs <= x1)
        else:  # from the bottom
            m = (ys <= y1) & (ys >= y1 - f * (y1 - y0)) & (xs >= x0) & (xs <= x1)
        canvas[t][m] = pattern[m]
    assert canvas.shape[0] == T and canvas.shape[1] == n
    return canvas


def generate_clip(class_index: int, seed: int, num_frames: int = 8, size: int = 128) -> np.ndarray:
    """One clip of class ``class_index``: uint8 ``(num_frames, size, size, 3)`` RGB, deterministic.

    For a reversed pair ``(a, b)``, ``generate_clip(b, s) == generate_clip(a, s)[::-1]`` exactly.
    """
    return generate_clip_with_shape(class_index, seed, num_frames, size)[0]


def _check_args(class_index: int, num_frames: int, size: int) -> None:
    if not 0 <= class_index < len(SYNTH_CLASSES):
        raise ValueError(f"class_index must be in [0, {len(SYNTH_CLASSES)}), got {class_index}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 (order needs two frames), got {num_frames}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")


def _clip_rng(class_index: int, seed: int) -> tuple[int, np.random.Generator]:
    forward = _REVERSE_OF.get(class_index, class_index)
    return forward, np.random.default_rng([int(forward), int(seed) & 0xFFFFFFFFFFFFFFFF])


def generate_clip_with_shape(class_index: int, seed: int, num_frames: int = 8,
                             size: int = 128) -> tuple[np.ndarray, int]:
    """``generate_clip`` and the index (in ``SYNTH_NOUNS``) of the moving object's shape - the clip's noun."""
    _check_args(class_index, num_frames, size)
    forward, rng = _clip_rng(class_index, seed)
    clip, shape = _render(forward, rng, int(num_frames), int(size))
    if forward != class_index:
        clip = np.ascontiguousarray(clip[::-1])
    return clip, _SHAPES.index(shape)


def clip_shape(class_index: int, seed: int, num_frames: int = 8, size: int = 128) -> int:
    """The noun of a clip without rendering it: the same random draws up to the object's parameters."""
    _check_args(class_index, num_frames, size)
    forward, rng = _clip_rng(class_index, seed)
    _, table_y = _background(rng, int(size))
    return _SHAPES.index(_object_params(forward, rng, int(size), int(num_frames), table_y)["shape"])


# --------------------------------------------------------------------------------------------------
# The verb / noun view's task spec


@functools.lru_cache(maxsize=16)
def synth_task_spec(train_per_class: int = 0, seeds: tuple[int, ...] = (0,), num_frames: int = 8,
                    size: int = 112) -> Any:
    """The multi-task spec of the verb_noun view: 16 verbs, 6 nouns, ``SYNTH_ACTIONS`` as action classes.

    With ``train_per_class`` > 0 it also holds the training counts of the train splits drawn with each of
    ``seeds`` (one per epoch when every epoch draws fresh clips), which decide the many-shot classes of
    the EPIC metrics; the nouns are read with ``clip_shape`` (no rendering).
    """
    from hfnet_core.multitask import TaskSpec, counts

    train_counts: dict[str, dict[int, int]] = {}
    if train_per_class > 0:
        verbs, nouns = [], []
        for seed in seeds:
            for i in range(train_per_class * len(SYNTH_CLASSES)):
                v = i % len(SYNTH_CLASSES)
                verbs.append(v)
                nouns.append(clip_shape(v, clip_seed(seed, "train", i // len(SYNTH_CLASSES)), num_frames, size))
        train_counts = {"verb": counts(verbs), "noun": counts(nouns),
                        "action": counts([v * len(SYNTH_NOUNS) + n for v, n in zip(verbs, nouns)])}
    return TaskSpec(tuple(SYNTH_VERBS), tuple(SYNTH_NOUNS), tuple(SYNTH_ACTIONS), True, train_counts)


# --------------------------------------------------------------------------------------------------
# Dataset


class SynthSomethingDataset(torch.utils.data.Dataset):
    """SynthSomething clips generated on the fly (nothing on disk); same item format as real datasets.

    Item ``i`` is clip ``i // num_classes`` of class ``i % num_classes``; both classes of a reversed pair
    share the seed (see ``clip_seed``), and the three splits use disjoint seeds.
    ``transform(frames_uint8, label) -> (frames_uint8, label)`` runs before the input convention.
    """

    def __init__(
        self,
        split: str,
        clips_per_class: int,
        num_frames: int = 8,
        size: int = 128,
        seed: int = 0,
        transform: Callable[[np.ndarray, int], tuple[np.ndarray, int]] | None = None,
        convention: InputConvention | None = None,
        view: str = "action",
        task_spec: Any = None,
    ) -> None:
        if split not in _SPLIT_ID:
            raise ValueError(f"split must be one of {sorted(_SPLIT_ID)}, got {split!r}")
        if clips_per_class < 1:
            raise ValueError(f"clips_per_class must be >= 1, got {clips_per_class}")
        if view not in SYNTH_VIEWS:
            raise ValueError(f"view must be one of {SYNTH_VIEWS}, got {view!r}")
        self.view = view
        self.split = split
        self.clips_per_class = int(clips_per_class)
        self.num_frames = int(num_frames)
        self.size = int(size)
        self.seed = int(seed)
        self.transform = transform
        self.convention = convention if convention is not None else InputConvention.bninception()
        self.class_names: list[str] = list(SYNTH_CLASSES)
        #: verb_noun view: the multi-task spec (hfnet_core/multitask.py); labels are action ids.
        self.task_spec = None
        if view == "verb_noun":
            self.task_spec = task_spec if task_spec is not None else synth_task_spec()
            self.class_names = self.task_spec.class_names()
        self.skipped: list[tuple[str, str]] = []  # never filled: kept for the common dataset interface

    def __len__(self) -> int:
        return self.clips_per_class * len(SYNTH_CLASSES)

    def label_of(self, index: int) -> int:
        """Label of item ``index`` without rendering it (the verb_noun view: its action id)."""
        verb = index % len(SYNTH_CLASSES)
        if self.view == "action":
            return verb
        seed = clip_seed(self.seed, self.split, index // len(SYNTH_CLASSES))
        return verb * len(SYNTH_NOUNS) + clip_shape(verb, seed, self.num_frames, self.size)

    def clip_id(self, index: int) -> str:
        """Stable identity, e.g. ``synth/test/000123``."""
        return f"synth/{self.split}/{index:06d}"

    def raw_clip(self, index: int) -> tuple[np.ndarray, int]:
        """The uint8 clip and label of item ``index`` before transform and convention."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} clips")
        verb = index % len(SYNTH_CLASSES)
        seed = clip_seed(self.seed, self.split, index // len(SYNTH_CLASSES))
        clip, noun = generate_clip_with_shape(verb, seed, self.num_frames, self.size)
        return clip, (verb if self.view == "action" else verb * len(SYNTH_NOUNS) + noun)

    def __getitem__(self, index: int) -> dict[str, Any]:
        frames, label = self.raw_clip(index)
        if self.transform is not None and self.view == "verb_noun":  # flips act on the verb only
            verb, noun = divmod(label, len(SYNTH_NOUNS))
            frames, verb = self.transform(frames, verb)
            label = verb * len(SYNTH_NOUNS) + noun
        elif self.transform is not None:
            frames, label = self.transform(frames, label)
        cid = self.clip_id(index)
        return {"frames": self.convention.to_model_input(frames), "label": int(label), "clip_id": cid, "path": cid}


# --------------------------------------------------------------------------------------------------
# Writing to disk (real H.264 files and the Something-v1 frame-folder layout)

#: Frame rate of written clips: Something-v1 frames were extracted at 12 fps.
SYNTH_FPS = 12.0


def _atomic_write_text(path: "os.PathLike[str] | str", text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _atomic_write_jpeg(path: Path, frame: np.ndarray, quality: int = 92) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    Image.fromarray(frame).save(tmp, format="JPEG", quality=quality)
    os.replace(tmp, path)


def write_dataset(
    out_dir: "os.PathLike[str] | str",
    clips_per_class: int | Mapping[str, int],
    seed: int = 0,
    num_frames: int = 8,
    size: int = 128,
    splits: Sequence[str] = ("train", "val", "test"),
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Write SynthSomething to ``out_dir`` so the real-data loaders read it (every file written atomically).

    Layout (relative to ``out_dir``)::

        category.txt                      class names, one per line (index = line number)
        {split}_videofolder.txt           Something-v1 list: "<folder> <num_frames> <label>"
        frames/{split}/{NNNNNN}/00001.jpg frame folders (root for SomethingV1Dataset = out_dir/frames)
        videos/{split}/{class}/{NNNNNN}.mp4   H.264 yuv420p (root for VideoFolderDataset)
        {split}.csv                       "path,label" (path relative to out_dir, label = class name)
        manifest.json                     the parameters, to regenerate the same data

    Clip ``NNNNNN`` of a split is item ``NNNNNN`` of ``SynthSomethingDataset(split, ...)`` with the same
    arguments, so files and the in-memory generator agree. Returns the manifest.
    """
    from hfnet_core.data.video import write_video

    out = Path(out_dir)
    per_split = clips_per_class if isinstance(clips_per_class, Mapping) else {s: clips_per_class for s in splits}
    counts = {s: int(per_split[s]) for s in splits}
    total = sum(counts[s] * len(SYNTH_CLASSES) for s in splits)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    _atomic_write_text(out / "category.txt", "".join(f"{c}\n" for c in SYNTH_CLASSES))
    done = 0
    for split in splits:
        ds = SynthSomethingDataset(split, max(counts[split], 1), num_frames, size, seed)
        n_items = counts[split] * len(SYNTH_CLASSES)
        list_lines: list[str] = []
        csv_buf = io.StringIO()
        writer = csv.writer(csv_buf, lineterminator="\n")
        writer.writerow(["path", "label"])
        for i in range(n_items):
            frames, label = ds.raw_clip(i)
            name = f"{i:06d}"
            folder = out / "frames" / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(frames):
                _atomic_write_jpeg(folder / f"{t + 1:05d}.jpg", frame)
            video = out / "videos" / split / SYNTH_CLASSES[label] / f"{name}.mp4"
            write_video(video, frames, fps=SYNTH_FPS, codec="libx264", options={"crf": "18", "preset": "veryfast"})
            list_lines.append(f"{split}/{name} {len(frames)} {label}\n")
            writer.writerow([video.relative_to(out).as_posix(), SYNTH_CLASSES[label]])
            done += 1
            if progress is not None:
                progress(done, total)
        _atomic_write_text(out / f"{split}_videofolder.txt", "".join(list_lines))
        _atomic_write_text(out / f"{split}.csv", csv_buf.getvalue())
    manifest = {
        "dataset": "SynthSomething",
        "version": SYNTH_VERSION,
        "seed": int(seed),
        "clips_per_class": counts,
        "num_frames": int(num_frames),
        "size": int(size),
        "fps": SYNTH_FPS,
        "classes": list(SYNTH_CLASSES),
        "reversed_pairs": [list(p) for p in REVERSED_PAIRS],
        "flip_label_map": {str(k): v for k, v in SYNTH_FLIP_LABEL_MAP.items()},
    }
    _atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest
