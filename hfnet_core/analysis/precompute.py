"""Precompute the Feature space projections of eval bundles so the app never waits for them.

    python -m hfnet_core.analysis.precompute checkpoints/*.npz [--methods tsne umap] [--seed 0] [--prune]

For every bundle: t-SNE and UMAP of all its clips. For every ordered pair of bundles (A, B) that share a
class list and some clip ids: the same for the clips of the 10 classes A improves most over B (the
paper's Fig. 3b/c), in both bundles. Already-cached projections are skipped, so rerunning is cheap.
One process computes everything, so umap's JIT compilation is paid once.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from hfnet_core.analysis.comparison import ClassListMismatch, improved_clip_ids
from hfnet_core.analysis.embeddings import METHODS, cache_path, cached_projection, project
from hfnet_core.eval_bundle import EvalBundle

__all__ = ["precompute", "main"]


def precompute(bundle_paths: Sequence[str | Path], methods: Sequence[str] = METHODS, seed: int = 0,
               pairs: bool = True, top_k: int = 10, prune: bool = False,
               log: Callable[[str], None] = print) -> list[tuple[str, str, str, float]]:
    """Compute and cache every missing projection; returns (bundle, method, subset, seconds) per job.

    ``prune``: afterwards delete the other ``<stem>.proj-*.npy`` files next to each bundle (left over from
    an earlier version of the bundle, or other parameters), so a folder kept in git holds only live ones.
    """
    paths = [str(p) for p in bundle_paths]
    jobs: list[tuple[str, str | None, list[str] | None]] = [(p, None, None) for p in paths]
    if pairs and len(paths) > 1:
        bundles = {p: EvalBundle.load(p) for p in paths}
        for pa, pb in itertools.permutations(paths, 2):
            try:
                _, ids = improved_clip_ids(bundles[pa], bundles[pb], top_k)
            except ClassListMismatch:
                continue
            if ids:
                label = f"top{top_k} {Path(pa).name} over {Path(pb).name}"
                jobs += [(pa, label, ids), (pb, label, ids)]
    done = []
    live: set[Path] = set()
    for path, label, ids in jobs:
        for method in methods:
            subset = label or "all clips"
            live.add(cache_path(path, method, seed, clip_ids=ids))
            if cached_projection(path, method, seed, clip_ids=ids) is not None:
                log(f"{path} {method} ({subset}): cached")
                continue
            t0 = time.perf_counter()
            coords = project(path, method, seed, clip_ids=ids)
            dt = time.perf_counter() - t0
            log(f"{path} {method} ({subset}): {coords.shape[0]} points in {dt:.1f} s")
            done.append((path, method, subset, dt))
    if prune:
        for path in paths:
            stem = Path(path).name.removesuffix(".npz")
            for old in Path(path).resolve().parent.glob(f"{stem}.proj-*.npy"):
                if old not in live:
                    old.unlink()
                    log(f"removed stale {old.name}")
    return done


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hfnet_core.analysis.precompute", description=__doc__.split("\n")[0])
    ap.add_argument("bundles", nargs="+", help="eval bundles (.npz)")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-k", type=int, default=10, help="most-improved classes per pair (default 10)")
    ap.add_argument("--no-pairs", action="store_true", help="only whole-bundle projections")
    ap.add_argument("--prune", action="store_true",
                    help="delete other cached projections next to these bundles (stale or other parameters)")
    args = ap.parse_args(argv)
    missing = [b for b in args.bundles if not Path(b).is_file()]
    if missing:
        print(f"no such bundle: {', '.join(missing)}", file=sys.stderr)
        return 2
    precompute(args.bundles, args.methods, args.seed, pairs=not args.no_pairs, top_k=args.top_k,
               prune=args.prune)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
