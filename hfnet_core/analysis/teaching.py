"""HF (paper Eq. 1) in a few lines of numpy, on 1-D "frames", for the teaching page.

    F_t = F'_t + G_t * F'_{t+1} - G_{t-1} * F'_t,    with G_{-1} = G_{T-1} = 0

Frame t receives ``G_t * F'_{t+1}`` from its successor and hands ``G_{t-1} * F'_t`` to its predecessor:
whatever moves between frames is added once and subtracted once, so ``sum_t F_t == sum_t F'_t``
(conservation). G > 0 blends a frame with the next one (averaging); G < 0 subtracts the next one
(differencing, a crude motion signal). ``tests/test_teaching.py`` checks this against ``temporal.hf.HFModule``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["moving_bump", "expand_gates", "hf_eq1", "frame_sums", "consensus"]


def moving_bump(num_frames: int = 5, positions: int = 12, start: float = 2.0, speed: float = 2.0,
                width: float = 1.2, height: float = 1.0) -> np.ndarray:
    """(T, P) toy features: a Gaussian bump that moves ``speed`` positions per frame."""
    x = np.arange(positions, dtype=np.float64)[None, :]
    centre = start + speed * np.arange(num_frames, dtype=np.float64)[:, None]
    return height * np.exp(-0.5 * ((x - centre) / width) ** 2)


def expand_gates(gates: float | np.ndarray, num_frames: int, positions: int) -> np.ndarray:
    """Gate values G_t for t = 0..T-1, shape (T, P), with G_{T-1} = 0.

    ``gates``: one value for every pair; (T-1,) one per pair; or (T-1, P) one per pair and position.
    """
    g = np.asarray(gates, dtype=np.float64)
    out = np.zeros((num_frames, positions), np.float64)
    if g.ndim == 0:
        out[:-1] = g
    elif g.shape == (num_frames - 1,):
        out[:-1] = g[:, None]
    elif g.shape == (num_frames - 1, positions):
        out[:-1] = g
    else:
        raise ValueError(f"gates must be a scalar, ({num_frames - 1},) or ({num_frames - 1}, {positions}); got {g.shape}")
    if np.any(np.abs(out) > 1.0):
        raise ValueError("gate values lie in [-1, 1] (they come out of a tanh)")
    return out


def hf_eq1(features: np.ndarray, gates: float | np.ndarray) -> np.ndarray:
    """Eq. 1 on (T, P) features F' with gates (see ``expand_gates``): returns F, shape (T, P)."""
    f = np.asarray(features, dtype=np.float64)
    t, p = f.shape
    g = expand_gates(gates, t, p)
    nxt = np.zeros_like(f)
    nxt[:-1] = f[1:]  # F'_{t+1}, zero after the last frame
    prev_g = np.zeros_like(g)
    prev_g[1:] = g[:-1]  # G_{t-1}, zero before the first frame
    return f + g * nxt - prev_g * f


def frame_sums(features: np.ndarray) -> np.ndarray:
    """sum_t F_t per position, (P,): the quantity HF conserves."""
    return np.asarray(features).sum(axis=0)


def consensus(features: np.ndarray) -> np.ndarray:
    """TSN's average consensus over frames, (P,): identical before and after HF (it is sum_t / T)."""
    return np.asarray(features).mean(axis=0)
