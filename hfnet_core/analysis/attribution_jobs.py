"""Attribution maps as background jobs: progress, cancel, one computation per machine.

Integrated Gradients at full width takes tens of seconds; computed in a page request it blocks that
session and, run by several sessions at once, starves all of them. So the Attributions page asks
``start_attribution(...)`` and polls the returned key (``hfnet_core.analysis.jobs``): the job runs in the
shared pool's worker process (lower priority, one torch thread), reports progress after every batch of
IG steps, stops between batches when cancelled (the page cancels when the user leaves or changes the
clip), and its result is stored on disk by

    (checkpoint sha256, clip hash, method, target class, steps, layer)

under ``<hfnet cache>/attributions/<key>.npz`` (plain arrays + JSON), so asking again - in any session,
after a restart - reads it instead of computing (``JobStatus.cached``).

The worker loads the checkpoint itself from its path (and checks the sha256 the page saw, so a file
replaced meanwhile is refused) and keeps the two most recent models in memory.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from hfnet_core.analysis.jobs import JobContext, JobPool, JobStatus, NpzResultCache, shared_pool
from hfnet_core.analysis.projection_store import cache_root

__all__ = ["METHODS", "attribution_job", "attribution_key", "cache_path", "clip_hash", "start_attribution"]

METHODS = ("integrated_gradients", "saliency", "grad_cam")
_FORMAT = 1


def clip_hash(x: Any) -> str:
    """sha256 of a model input (its float32 values and shape): the clip as the model sees it."""
    arr = np.ascontiguousarray(x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x),
                               dtype=np.float32)
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def attribution_key(checkpoint_sha256: str, clip: str, method: str, target: int, steps: int | None = None,
                    layer: str | None = None) -> str:
    """The cache key of one map (steps only count for IG, the layer only for Grad-CAM)."""
    if method not in METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")
    doc = {"format": _FORMAT, "checkpoint": checkpoint_sha256, "clip": clip, "method": method,
           "target": int(target), "steps": int(steps) if method == "integrated_gradients" else None,
           "layer": layer if method == "grad_cam" else None}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32]


def cache_path(key: str) -> Path:
    return cache_root() / "attributions" / f"{key}.npz"


_models: OrderedDict[str, Any] = OrderedDict()
_models_lock = threading.Lock()


def _model(checkpoint_path: str, sha256: str) -> Any:
    """The checkpoint's model, loaded once per worker (two kept), refused if the file changed."""
    from hfnet_core.checkpoint import load_checkpoint
    from hfnet_core.errors import CheckpointError

    with _models_lock:
        if sha256 in _models:
            _models.move_to_end(sha256)
            return _models[sha256]
    loaded = load_checkpoint(checkpoint_path)
    if loaded.sha256 != sha256:
        raise CheckpointError(checkpoint_path, "changed on disk since the page loaded it (sha256 differs)",
                              "Reload the page to use the new file.")
    with _models_lock:
        _models[sha256] = loaded.model
        while len(_models) > 2:
            _models.popitem(last=False)
    return loaded.model


def attribution_job(ctx: JobContext, checkpoint_path: str, checkpoint_sha256: str, x: np.ndarray, method: str,
                    target: int, steps: int = 16, layer: str | None = None) -> dict[str, Any]:
    """Job body: load the model, compute the map with progress and cancellation; plain arrays out."""
    import torch

    from hfnet_core.analysis import attributions as attr

    ctx.progress(0.0, "loading the model")
    model = _model(checkpoint_path, checkpoint_sha256)
    clip = torch.as_tensor(np.asarray(x, dtype=np.float32))
    ctx.check()
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if method == "integrated_gradients":
        batch, checkpointed = attr.ig_plan(model, clip)
        raw, delta = attr.integrated_gradients_raw(model, clip, target, int(steps), batch_size=batch,
                                                   checkpoint=checkpointed, progress=ctx.progress,
                                                   cancel=lambda: ctx.cancelled)
        maps = attr.normalise_maps(raw[0].abs().sum(dim=1), percentile=99.5)
        extra = {"delta": float(delta), "batch_size": int(batch), "checkpointed": bool(checkpointed)}
    elif method == "saliency":
        maps = attr.saliency(model, clip, target, progress=ctx.progress, cancel=lambda: ctx.cancelled)
    elif method == "grad_cam":
        if not layer:
            raise ValueError("Grad-CAM needs a layer (one of layer_choices(model))")
        maps = attr.grad_cam(model, clip, target, layer)
        ctx.progress(1.0, "Grad-CAM: done")
    else:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {METHODS}")
    return {"maps": np.asarray(maps, dtype=np.float32), "method": method, "target": int(target),
            "steps": int(steps) if method == "integrated_gradients" else None, "layer": layer,
            "seconds": round(time.perf_counter() - t0, 2), **extra}


def start_attribution(checkpoint_path: str | Path, checkpoint_sha256: str, x: Any, method: str, target: int,
                      steps: int = 16, layer: str | None = None, owner: Any = None, pool: JobPool | None = None,
                      clip: str | None = None, retry: bool = False) -> JobStatus:
    """Submit (or find, or read from disk) the map of ``x`` (1, T, 3, H, W) by this checkpoint; returns
    the job status. ``clip`` is the clip's hash if the caller has one (default ``clip_hash(x)``); pass
    a session id as ``owner`` and ``pool.cancel(status.key, owner)`` when the session moves on."""
    key = attribution_key(checkpoint_sha256, clip or clip_hash(x), method, target, steps, layer)
    arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    what = {"integrated_gradients": f"Integrated Gradients ({steps} steps)", "saliency": "Saliency",
            "grad_cam": f"Grad-CAM at {layer}"}.get(method, method)
    return (pool or shared_pool()).submit(
        f"attribution|{key}", attribution_job,
        {"checkpoint_path": str(checkpoint_path), "checkpoint_sha256": checkpoint_sha256, "x": arr,
         "method": method, "target": int(target), "steps": int(steps), "layer": layer},
        description=f"{what} of class {int(target)} by {Path(checkpoint_path).name}",
        cache=NpzResultCache(cache_path(key)), owner=owner, retry=retry)
