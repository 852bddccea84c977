"""``hfnet project``: compute and store every projection set the Feature space pages read.

    hfnet project checkpoints/*.test.npz [--methods tsne umap pca] [--seed 0] [--top-k 10] [--prune]

For every bundle: a ``ProjectionSet`` of all its clips (t-SNE, UMAP, PCA, neighbours, silhouette,
centroids: ``hfnet_core.analysis.embeddings``), stored beside it (``projection_store``). For every
ordered pair of bundles (A, B) that share a class list and some clip ids: the same for the clips of the
``top_k`` classes A improves most over B (the paper's Fig. 3b/c), in both bundles. Sets already stored
are skipped, so rerunning is cheap; one process computes everything, so umap's JIT is paid once.
``hfnet eval`` calls ``project_bundles`` on the bundles it writes.

For the app: ``start_projection`` submits the same computation as a background job
(``hfnet_core.analysis.jobs``) and returns its status (progress, ETA, queue position); the page polls
``projection_job_status`` and reads the result with ``projection_store.shared_set`` once it is done.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from hfnet_core.analysis import projection_store as store
from hfnet_core.analysis.embeddings import (  # noqa: F401 (re-exported: the format-1 API lives there)
    PARAM_FIELDS, ProjectionStatus, base_set, compute_set, projection_job_key, projection_job_status, spec_for,
    store_coords)
from hfnet_core.analysis.jobs import JobContext, JobPool, JobStatus, shared_pool
from hfnet_core.analysis.projection_store import METHODS, ProjectionSet, ProjectionSpec
from hfnet_core.analysis.task_view import grouping_labels, task_view
from hfnet_core.eval_bundle import EvalBundle
from hfnet_core.errors import BundleError

__all__ = [
    "PARAM_FIELDS",
    "ProjectedSet",
    "ProjectionStatus",
    "base_set",
    "cli_main",
    "eta_estimate_s",
    "improved_subsets",
    "main",
    "precompute",
    "project_bundle",
    "project_bundles",
    "projection_job",
    "projection_job_key",
    "projection_job_status",
    "spec_for",
    "start_projection",
    "store_coords",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class ProjectedSet:
    """One stored set: which bundle and subset, where, and whether it was computed now."""

    bundle: str
    subset: str  # "all clips" or "top10 A over B"
    path: Path
    computed: list[str]  # methods computed in this call ([] = everything was already stored)
    seconds: float
    set: ProjectionSet


def project_bundle(bundle_path: str | os.PathLike[str], spec: ProjectionSpec | None = None,
                   methods: Sequence[str] = METHODS, clip_ids: Sequence[str] | None = None,
                   progress: Callable[[float, str], None] | None = None, cancel: Callable[[], bool] | None = None,
                   parallel: bool | None = None, force: bool = False, subset: str = "all clips") -> ProjectedSet:
    """The projection set of one bundle (or clip subset): read if stored with every ``methods``, else
    computed (only what is missing, unless ``force``) and stored."""
    spec = spec or ProjectionSpec()
    bundle = EvalBundle.load(bundle_path, mmap=True)
    rows = store.subset_rows(bundle, clip_ids)
    existing = None if force else store.load_set(bundle_path, spec, clip_ids)
    if existing is not None and existing.n != len(rows):
        existing = None
    if existing is not None and all(existing.has(m) for m in methods):
        path = store.set_path(bundle_path, spec, clip_ids)
        return ProjectedSet(str(bundle_path), subset, path, [], 0.0, existing)
    t0 = time.perf_counter()
    todo = [m for m in methods if existing is None or not existing.has(m)]
    labels, num_classes, grouped_by = grouping_labels(bundle)  # a multi-task bundle: by verb
    ps = compute_set(bundle.features[rows], labels[rows], num_classes, spec, methods, rows,
                     existing, progress, cancel, parallel)
    ps.info.update(bundle_sha256=store.bundle_sha256(bundle_path), bundle=Path(bundle_path).name,
                   subset=store.subset_digest(clip_ids), subset_label=subset, grouped_by=grouped_by)
    path = store.save_set(bundle_path, ps, spec, clip_ids)
    return ProjectedSet(str(bundle_path), subset, path, todo, time.perf_counter() - t0, ps)


def improved_subsets(bundle_paths: Sequence[str | Path], top_k: int = 10) -> list[tuple[str, str, list[str]]]:
    """(bundle, label, clip ids) for the top-``top_k`` most-improved classes of every ordered pair that
    shares a class list, in both bundles of the pair (the paper's Fig. 3b/c subsets). Multi-task bundles
    are compared by their verbs, the explorer's default task for them."""
    from hfnet_core.analysis.comparison import ClassListMismatch, improved_clip_ids

    paths = [str(p) for p in bundle_paths]
    if len(paths) < 2:
        return []
    bundles = {p: task_view(EvalBundle.load(p, mmap=True), "verb") for p in paths}
    out = []
    for pa, pb in itertools.permutations(paths, 2):
        try:
            _, ids = improved_clip_ids(bundles[pa], bundles[pb], top_k)
        except ClassListMismatch:
            continue
        if ids:
            label = f"top{top_k} {Path(pa).name} over {Path(pb).name}"
            out += [(pa, label, ids), (pb, label, ids)]
    return out


def _bar(desc: str, show: bool) -> tuple[Callable[[float, str], None], Callable[[], None]]:
    """A progress callback: a tqdm bar on a terminal, else a log line every 10 %."""
    if show:
        from tqdm import tqdm

        bar = tqdm(total=1000, desc=desc, leave=False, bar_format="{desc} {percentage:3.0f}%|{bar}| "
                   "{elapsed}<{remaining} {postfix}")

        def update(f: float, msg: str) -> None:
            bar.n = int(1000 * f)
            bar.set_postfix_str(msg, refresh=False)
            bar.refresh()
        return update, bar.close
    last = [-1]

    def log(f: float, msg: str) -> None:
        decile = int(10 * f)
        if decile > last[0]:
            last[0] = decile
            print(f"{desc}: {100 * f:3.0f}% {msg}", file=sys.stderr, flush=True)
    return log, lambda: None


def project_bundles(bundle_paths: Sequence[str | Path], methods: Sequence[str] = METHODS,
                    spec: ProjectionSpec | None = None, pairs: bool = True, top_k: int = 10,
                    prune: bool = False, force: bool = False, parallel: bool | None = None,
                    log: Log = print, show_progress: bool | None = None) -> list[ProjectedSet]:
    """Every whole-bundle set, then (``pairs``) every Fig. 3b/c subset set; returns them all.

    ``prune``: afterwards delete the other ``<stem>.proj-*`` files beside each bundle (sets of an
    earlier version of the bundle or other parameters, and format-1 ``.npy`` maps) so a folder kept in
    git holds only live ones.
    """
    spec = spec or ProjectionSpec()
    show = sys.stderr.isatty() if show_progress is None else show_progress
    paths = [str(p) for p in bundle_paths]
    for p in paths:
        if not Path(p).is_file():
            raise BundleError(f"{p}: no such eval bundle.", path=p)
    jobs: list[tuple[str, str, list[str] | None]] = [(p, "all clips", None) for p in paths]
    if pairs:
        jobs += [(p, label, ids) for p, label, ids in improved_subsets(paths, top_k)]
    out = []
    for path, label, ids in jobs:
        update, close = _bar(f"{Path(path).name} ({label})", show)
        try:
            res = project_bundle(path, spec, methods, ids, progress=update, parallel=parallel, force=force,
                                 subset=label)
        finally:
            close()
        log(_summary(res))
        out.append(res)
    if prune:
        live = {r.path.resolve() for r in out}
        for path in paths:
            stem = Path(path).name.removesuffix(".npz")
            for old in Path(path).resolve().parent.glob(f"{stem}.proj-*"):
                if old.resolve() not in live:
                    old.unlink()
                    log(f"removed stale {old.name}")
    return out


def _summary(r: ProjectedSet) -> str:
    head = f"{r.bundle} ({r.subset}): "
    if not r.computed:
        return head + "cached"
    info = r.set.info.get("methods", {})
    parts = [f"{m} {info[m]['seconds']:.1f} s" if "seconds" in info.get(m, {}) else m for m in r.computed]
    sil = r.set.silhouette
    if sil:
        how = "exact" if sil["exact"] else f"on a stratified sample of {sil['n']:,} of {sil['of']:,} clips"
        parts.append(f"silhouette {sil['value']:.3f} ({how})")
    return head + f"{r.set.n} points in {r.seconds:.1f} s: " + ", ".join(parts) + f" -> {r.path.name}"


# --- background jobs for the app ------------------------------------------------------------------------

def projection_job(ctx: JobContext, bundle_path: str, spec: dict[str, Any], clip_ids: list[str] | None,
                   methods: list[str], parallel: bool | None = None) -> dict[str, Any]:
    """Job body (runs in a worker process): compute and store the set; returns its path and methods."""
    res = project_bundle(bundle_path, ProjectionSpec.from_dict(spec), methods, clip_ids, progress=ctx.progress,
                         cancel=lambda: ctx.cancelled, parallel=parallel)
    return {"path": str(res.path), "methods": res.set.methods, "computed": res.computed,
            "seconds": round(res.seconds, 2)}


def eta_estimate_s(n_points: int, methods: Sequence[str] = METHODS) -> float:
    """Rough seconds for a set of ``n_points`` on a 2-core laptop CPU (from benchmarks/bench_projection.py:
    ~35 s of t-SNE and ~45 s of UMAP incl. its JIT at 25k points; exact neighbours grow as n^2)."""
    n = max(0, int(n_points))
    t = 1.0 + 1.2e-8 * n * n + 1.2e-4 * n
    if "tsne" in methods:
        t += 1.5e-3 * n
    if "umap" in methods:
        t += 20.0 + 1.0e-3 * n
    return t


def start_projection(bundle_path: str | os.PathLike[str], spec: ProjectionSpec | None = None,
                     clip_ids: Sequence[str] | None = None, methods: Sequence[str] = METHODS, owner: Any = None,
                     pool: JobPool | None = None, retry: bool = False) -> JobStatus:
    """Submit the set's computation as a background job (once per key) and return its status.

    A set already stored with every method comes back as a finished job at once (``cached=True``).
    """
    spec = spec or ProjectionSpec()
    pool = pool or shared_pool()
    key = projection_job_key(bundle_path, spec, clip_ids)
    ps = store.shared_set(bundle_path, spec, clip_ids)
    if ps is not None and all(ps.has(m) for m in methods):
        status = pool.status(key)
        return status if status.state == "done" else JobStatus(key, "done", 1.0, "stored", cached=True,
                                                                 result={"path": str(store.set_path(
                                                                     bundle_path, spec, clip_ids)),
                                                                     "methods": ps.methods, "computed": []})
    status = pool.status(key)
    if status.state == "done" and not retry:  # done, but the file has gone (or lacks a method): redo
        pool.forget(key)
    n = len(clip_ids) if clip_ids is not None else len(EvalBundle.load(bundle_path, mmap=True).clip_ids)
    return pool.submit(key, projection_job,
                       {"bundle_path": str(bundle_path), "spec": spec.to_dict(),
                        "clip_ids": None if clip_ids is None else list(clip_ids), "methods": list(methods)},
                       description=f"projections of {Path(bundle_path).name} ({n:,} clips)", owner=owner,
                       eta_hint_s=eta_estimate_s(n, methods), retry=retry)


# --- CLI ------------------------------------------------------------------------------------------------

def precompute(bundle_paths: Sequence[str | Path], methods: Sequence[str] = METHODS, seed: int = 0,
               pairs: bool = True, top_k: int = 10, prune: bool = False,
               log: Log = print) -> list[tuple[str, str, str, float]]:
    """Older entry point: ``project_bundles``; returns (bundle, methods, subset, seconds) per computed set."""
    res = project_bundles(bundle_paths, methods, ProjectionSpec(seed=seed), pairs, top_k, prune, log=log)
    return [(r.bundle, ",".join(r.computed), r.subset, r.seconds) for r in res if r.computed]


def build_parser(prog: str = "hfnet project") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="Compute the Feature space projections (t-SNE, "
                                 "UMAP, PCA, neighbours, silhouette) of eval bundles and store them beside "
                                 "each bundle.")
    ap.add_argument("bundles", nargs="+", help="eval bundles (.npz)")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--top-k", type=int, default=10, help="most-improved classes per pair (default 10)")
    ap.add_argument("--no-pairs", action="store_true", help="only whole-bundle projections")
    ap.add_argument("--prune", action="store_true",
                    help="delete other stored projections beside these bundles (stale or other parameters)")
    ap.add_argument("--force", action="store_true", help="recompute even what is stored")
    ap.add_argument("--no-parallel", action="store_true", help="run UMAP after t-SNE instead of beside it")
    return ap


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    project_bundles(args.bundles, args.methods, ProjectionSpec(seed=args.seed), pairs=not args.no_pairs,
                    top_k=args.top_k, prune=args.prune, force=args.force,
                    parallel=False if args.no_parallel else None)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hfnet_core.analysis.precompute``: as ``hfnet project`` (exit 2 on a missing bundle)."""
    try:
        return cli_main(argv)
    except BundleError as e:
        print(e.one_line(), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
