"""``hfnet predict``: what one or more models say about a clip (or every clip of a folder), side by side.

    hfnet predict CKPT [CKPT ...] CLIP_OR_FOLDER [...] [--json | --csv] [--reverse] [--top-k K]

Per clip and model: the top-k classes, whether the top-1 is right when the true label is known (from a
``--labels`` file, the folder's ``samples.json``, a Something-v1 list, a class folder or a SynthSomething
file name: ``hfnet_core.analysis.true_labels``), and how the models agree. ``--reverse`` also runs every
clip played backwards, with its own true label from the reversed-pair map and, per model, the largest
logit change: 0 up to float rounding for a frame-order-blind TSN, which is the proof that it cannot tell a
clip from its reversal.

What a model sees is exactly what the explorer and ``hfnet eval`` feed it (``analysis.clips``: decode,
TSN segment-centre sampling, evaluation resize/crop, the model's pixel convention), and inference is
``analysis.inference.run_clip``. The reversed clip is the model's sampled frames in reverse order: segment
centres are not mirror-symmetric (16 frames, 8 segments: frames 1, 3, ..., 15), so reversing the whole
video first would show the model a different set of frames (14, 12, ..., 0) and change even an
order-blind model's answer for a reason that has nothing to do with order.

From Python (the README's two lines)::

    from hfnet_core.predict import predict_clip
    print(predict_clip(["checkpoints/hf_tsn_demo.safetensors", "checkpoints/tsn_demo.safetensors"],
                       "checkpoints/samples/00_moving_sth_from_left_to_right.mp4", reverse=True).table())

Checkpoints come first on the command line (any format ``load_checkpoint`` reads: ``.safetensors``,
``.pth``, ``.pth.tar``, ``.pt``, ``.ckpt``, ``.bin``), then clips and folders. Folders are searched
recursively, in sorted order, for video files and image-frame folders. A clip that cannot be read is
reported on one line (stderr) and counted; the command fails (exit 2) only when nothing could be
predicted at all. Formats of the JSON/CSV output: docs/one_clip.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch

from hfnet_core.analysis import exports
from hfnet_core.analysis.clips import ClipError, decode_video, sampled_frames
from hfnet_core.analysis.inference import ClipPrediction, run_clip
from hfnet_core.analysis.true_labels import find_true_label, load_labels_file, reversed_label
from hfnet_core.errors import ConfigError, HfnetError, describe

__all__ = ["CHECKPOINT_SUFFIXES", "PredictResult", "load_models", "model_view", "predict_view", "predict_views",
           "predict_clips", "predict_clip", "collect_clips", "split_arguments", "cli_main"]

#: File endings read as checkpoints on the command line (everything after them is a clip or folder).
CHECKPOINT_SUFFIXES = (".safetensors", ".pth", ".pt", ".tar", ".ckpt", ".bin")
#: Largest |logit difference| still called "identical" in the table (float rounding of a sum over frames).
IDENTICAL_LOGITS = 1e-4


# --- models -------------------------------------------------------------------------------------------

def _is_loaded(x: Any) -> bool:
    return hasattr(x, "model") and hasattr(x, "class_names") and hasattr(x, "config")


def load_models(checkpoints: Sequence[Any] | Mapping[str, Any], device: str | torch.device | None = None,
                **import_options: Any) -> dict[str, Any]:
    """Display name -> ``LoadedCheckpoint``. Paths are loaded with ``load_checkpoint`` (names = file
    stems, made unique with ``#2``, ``#3``); loaded checkpoints pass through; a mapping keeps its names."""
    from hfnet_core.checkpoint import load_checkpoint
    from hfnet_core.device import pick_device

    if isinstance(checkpoints, Mapping):
        items = list(checkpoints.items())
    else:
        items = [(_display_name(c), c) for c in checkpoints]
    dev = device if device is not None else pick_device()
    out: dict[str, Any] = {}
    for name, c in items:
        unique, n = name, 1
        while unique in out:
            n += 1
            unique = f"{name}#{n}"
        out[unique] = c if _is_loaded(c) else load_checkpoint(c, device=dev, **import_options)
    if not out:
        raise ConfigError("no checkpoint given.", hint="Pass at least one .safetensors (or importable) file.")
    return out


def _display_name(c: Any) -> str:
    """A checkpoint's short name: its file name without checkpoint endings (``x.pth.tar`` -> ``x``)."""
    path = str(getattr(c, "path", "") or "") if _is_loaded(c) else str(c)
    if not path:
        return str(getattr(c.config, "name", "") or "model")
    name = Path(path).name
    while True:
        low = name.lower()
        suffix = next((sfx for sfx in CHECKPOINT_SUFFIXES if low.endswith(sfx) and len(name) > len(sfx)), None)
        if suffix is None:
            return name
        name = name[: -len(suffix)]


def model_view(checkpoint: Any, frames: np.ndarray, reverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """What ``checkpoint``'s model sees of ``frames`` (uint8 (T, H, W, 3)): (indices into ``frames``,
    uint8 (K, S, S, 3)) - TSN segment centres and the evaluation crop; with ``reverse`` the same K frames
    in the opposite order (see the module docstring for why the sampled frames, not the video, are
    reversed)."""
    idx, view = sampled_frames(frames, int(checkpoint.config.num_segments), int(checkpoint.config.input_size))
    if reverse:
        return idx[::-1].copy(), np.ascontiguousarray(view[::-1])
    return idx, view


def predict_view(checkpoint: Any, view: np.ndarray, k: int = 5) -> ClipPrediction:
    """``run_clip`` on frames already sampled for the model (``model_view``), in its pixel convention."""
    x = checkpoint.model.input_convention.to_model_input(view).unsqueeze(0)
    return run_clip(checkpoint, x, k=k)


def predict_views(models: Mapping[str, Any], frames: np.ndarray, reverse: bool = False, k: int = 5
                  ) -> dict[str, tuple[np.ndarray, ClipPrediction]]:
    """Model name -> (frame indices seen, ``ClipPrediction``) for ``frames`` (or their reversal)."""
    out = {}
    for name, ck in models.items():
        idx, view = model_view(ck, frames, reverse)
        out[name] = (idx, predict_view(ck, view, k))
    return out


# --- clips --------------------------------------------------------------------------------------------

def split_arguments(args: Sequence[str]) -> tuple[list[str], list[str]]:
    """Leading checkpoint files (by ending, or a safetensors header), then clips/folders.

    Raises ``ConfigError`` when there is no checkpoint, no clip, or a checkpoint after a clip.
    """
    ckpts: list[str] = []
    i = 0
    while i < len(args) and _looks_like_checkpoint(args[i]):
        ckpts.append(args[i])
        i += 1
    clips = list(args[i:])
    late = [a for a in clips if _looks_like_checkpoint(a)]
    if late:
        raise ConfigError(f"{late[0]}: a checkpoint after a clip; checkpoints come first "
                          "(hfnet predict CKPT [CKPT ...] CLIP_OR_FOLDER ...).")
    if not ckpts:
        raise ConfigError("no checkpoint given: the first argument must be a checkpoint file "
                          f"({', '.join(CHECKPOINT_SUFFIXES)}).")
    if not clips:
        raise ConfigError("no clip given: name a video file, a frame folder or a folder of clips after the "
                          "checkpoints.")
    return ckpts, clips


def _looks_like_checkpoint(arg: str) -> bool:
    p = Path(arg)
    if p.is_dir():
        return False
    if p.name.lower().endswith(CHECKPOINT_SUFFIXES):
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(9)
        return len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 100_000_000
    except OSError:
        return False


def collect_clips(args: Iterable[str | os.PathLike[str]]) -> tuple[list[tuple[Path, str]], list[dict[str, str]]]:
    """(clips as (path, display name), missing arguments as {path, reason}). A folder contributes every
    video file and every image-frame folder below it, sorted; a folder that holds frames itself is one
    clip. Display names are paths as the user would type them (the argument joined with the rest)."""
    from hfnet_core.analysis.clips import VIDEO_SUFFIXES
    from hfnet_core.data.video import IMAGE_EXTENSIONS

    clips: list[tuple[Path, str]] = []
    missing: list[dict[str, str]] = []
    for a in args:
        p = Path(a)
        if p.is_file():
            clips.append((p, str(a)))
        elif p.is_dir():
            found = []
            for d, dirs, files in os.walk(p):
                dirs[:] = sorted(x for x in dirs if not x.startswith("."))
                vis = [f for f in files if not f.startswith(".")]
                if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in vis):
                    found.append(Path(d))
                    dirs[:] = []
                found += [Path(d) / f for f in vis if f.lower().endswith(VIDEO_SUFFIXES)]
            if not found:
                missing.append({"path": str(a), "reason": "the folder holds no video files or frame folders"})
            clips += [(f, str(f)) for f in sorted(found)]
        else:
            missing.append({"path": str(a), "reason": "no such file or folder"})
    return clips, missing


# --- results ------------------------------------------------------------------------------------------

@dataclass
class PredictResult:
    """Everything ``hfnet predict`` found: ``records`` (``exports.prediction_record`` dicts, forward and,
    with ``reverse``, reversed per clip), ``reversal`` (clip -> ``exports.reversal_comparison``),
    ``skipped`` ({path, reason}), ``models`` (``exports.model_info`` dicts) and ``settings``."""

    models: list[dict[str, Any]]
    settings: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    reversal: dict[str, Any] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def json(self) -> bytes:
        return exports.predictions_json(self.records, self.models, self.settings, self.skipped, self.reversal)

    def csv(self) -> bytes:
        return exports.predictions_csv(self.records, self.settings)

    def npz(self) -> bytes:
        return exports.predictions_npz(self.records, self.models, self.settings)

    def table(self) -> str:
        return format_table(self)


def predict_clips(checkpoints: Sequence[Any] | Mapping[str, Any], clips: Iterable[str | os.PathLike[str]],
                  k: int = 5, reverse: bool = False, labels: Mapping[str, str] | None = None,
                  device: str | torch.device | None = None,
                  on_skip: Callable[[str, str], None] | None = None,
                  on_progress: Callable[[int, int, str], None] | None = None, include_logits: bool = True,
                  **import_options: Any) -> PredictResult:
    """Predict every clip of ``clips`` (files and folders, ``collect_clips``) with every checkpoint.

    ``labels``: clip -> label (``true_labels.load_labels_file``). ``on_skip(path, reason)`` is called for
    each clip that could not be used, as it happens; ``on_progress(done, total, name)`` before each clip.
    ``include_logits=False`` keeps records small (no full logit vectors; the reversal comparison is
    still computed). Checkpoint problems raise ``CheckpointError``.
    """
    if int(k) < 1:
        raise ConfigError(f"--top-k must be at least 1, got {k}.")
    models = load_models(checkpoints, device, **import_options)
    first = next(iter(models.values()))
    settings = {"top_k": int(k), "reverse": bool(reverse),
                "sampling": "TSN segment centres, evaluation crop",
                "reversal": "the model's sampled frames in reverse order" if reverse else "none"}
    result = PredictResult([exports.model_info(ck, name) for name, ck in models.items()], settings)
    found, missing = collect_clips(clips)
    for m in missing:
        result.skipped.append(m)
        if on_skip:
            on_skip(m["path"], m["reason"])
    for i, (path, name) in enumerate(found):
        if on_progress:
            on_progress(i, len(found), name)
        try:
            _predict_one(models, first.class_names, path, name, int(k), reverse, labels, result, include_logits)
        except (HfnetError, RuntimeError, OSError, ValueError) as e:  # one bad clip never stops the rest
            reason = describe(e)
            reason = reason[len(f"{path.name}: "):] if reason.startswith(f"{path.name}: ") else reason
            result.skipped.append({"path": name, "reason": reason})
            if on_skip:
                on_skip(name, reason)
    return result


def _predict_one(models: Mapping[str, Any], class_names: Sequence[str], path: Path, name: str, k: int,
                 reverse: bool, labels: Mapping[str, str] | None, result: PredictResult,
                 include_logits: bool = True) -> None:
    frames, fps = decode_video(path, name=path.name)
    label, source = find_true_label(path, class_names, labels, name)
    info = {"frames": int(frames.shape[0]), "height": int(frames.shape[1]), "width": int(frames.shape[2]),
            "fps": float(fps)}
    fwd = predict_views(models, frames, False, k)
    records = [_record(name, fwd, label, source, "forward", k, info, include_logits)]
    if reverse:
        rev = predict_views(models, frames, True, k)
        rlabel, rsource = reversed_label(label, class_names)
        records.append(_record(name, rev, rlabel, rsource, "reversed", k, info, include_logits))
        result.reversal[name] = exports.reversal_comparison({n: p for n, (_, p) in fwd.items()},
                                                            {n: p for n, (_, p) in rev.items()})
    result.records += records


def _record(name: str, views: Mapping[str, tuple[np.ndarray, ClipPrediction]], label: str | None,
            source: str | None, direction: str, k: int, info: Mapping[str, Any],
            include_logits: bool = True) -> dict[str, Any]:
    rec = exports.prediction_record(name, {n: p for n, (_, p) in views.items()}, true_label=label,
                                    true_label_source=source, direction=direction, k=k,
                                    include_logits=include_logits)
    rec["clip_info"] = dict(info)
    rec["frames_seen"] = {n: [int(i) for i in idx] for n, (idx, _) in views.items()}
    return rec


def predict_clip(checkpoints: Sequence[Any] | Mapping[str, Any], clip: str | os.PathLike[str], k: int = 5,
                 reverse: bool = False, **kwargs: Any) -> PredictResult:
    """``predict_clips`` for one clip; raises ``ClipError`` (with the reason) when it cannot be used."""
    res = predict_clips(checkpoints, [clip], k=k, reverse=reverse, **kwargs)
    if not res.records:
        reason = res.skipped[0]["reason"] if res.skipped else "nothing could be predicted"
        raise ClipError(f"{clip}: {reason}")
    return res


# --- the table ----------------------------------------------------------------------------------------

def _mark(correct: bool | None) -> str:
    return {True: "✓", False: "✗", None: " "}[correct]


def format_table(res: PredictResult) -> str:
    """The readable default output: per clip and direction, each model's top-k (best first), a mark for
    right (✓) or wrong (✗) when the true label is known, agreement, and under ``--reverse`` what
    reversal changed; then totals."""
    width = max([len(m["name"]) for m in res.models] + [5])
    lines: list[str] = []
    by_clip: dict[str, list[dict[str, Any]]] = {}
    for r in res.records:
        by_clip.setdefault(r["clip"], []).append(r)
    for clip, recs in by_clip.items():
        info = recs[0].get("clip_info") or {}
        extra = f"  ({info['frames']} frames, {info['width']}x{info['height']})" if info else ""
        lines.append(f"{clip}{extra}")
        for r in recs:
            truth = r["true_label"] or "unknown"
            src = f" - {r['true_label_source']}" if r["true_label_source"] else ""
            lines.append(f"  {r['direction']:<8} true: {truth}{src}")
            for m in r["models"]:
                tops = "   ".join(f"{t['rank']}. {t['class']} {100 * t['prob']:.1f}%" for t in m["top_k"])
                lines.append(f"    {_mark(m['correct'])} {m['model']:<{width}}  {tops}")
            agree = r["agreement"]
            if agree["pairs"]:
                word = "agree" if agree["top1_all_agree"] else "disagree"
                overlaps = ", ".join(f"{p['a']}/{p['b']} top-{p['k']} overlap {p['topk_overlap']}"
                                     for p in agree["pairs"])
                lines.append(f"      models {word} on the top-1 ({overlaps})")
        for model, c in (res.reversal.get(clip) or {}).items():
            d = c["max_abs_logit_diff"]
            what = ("identical logits: it cannot tell the clip from its reversal" if d <= IDENTICAL_LOGITS
                    else ("top-1 changes" if c["top1_changed"] else "top-1 stays"))
            lines.append(f"  reversal · {model:<{width}}  max |logit change| {d:.2g} - {what}")
        lines.append("")
    lines += _totals(res)
    return "\n".join(lines).rstrip() + "\n"


def _totals(res: PredictResult) -> list[str]:
    clips = {r["clip"] for r in res.records}
    out = [f"{len(clips)} clip{'s' if len(clips) != 1 else ''} predicted"
           + (f", {len(res.skipped)} skipped" if res.skipped else "")]
    for direction in ("forward", "reversed"):
        recs = [r for r in res.records if r["direction"] == direction]
        if not recs:
            continue
        parts = []
        for m in res.models:
            judged = [x["correct"] for r in recs for x in r["models"] if x["model"] == m["name"]
                      and x["correct"] is not None]
            if judged:
                parts.append(f"{m['name']} {sum(judged)}/{len(judged)} right")
        agree = [r["agreement"]["top1_all_agree"] for r in recs if r["agreement"]["top1_all_agree"] is not None]
        if agree:
            parts.append(f"models agree on {sum(agree)}/{len(agree)}")
        if parts:
            out.append(f"  {direction}: " + "; ".join(parts))
    return out


# --- command line ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hfnet predict",
        description="Top-k of one or more models on clips (files, frame folders, folders of clips), with "
                    "agreement and the true label when the path or dataset tells it.")
    p.add_argument("paths", nargs="+", metavar="CKPT_OR_CLIP",
                   help="checkpoints first (.safetensors, .pth, ...), then clips or folders")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON instead of the table")
    fmt.add_argument("--csv", action="store_true", help="CSV (one row per clip, direction, model and rank)")
    p.add_argument("--reverse", action="store_true", help="also run every clip played backwards")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes listed per model (default 5)")
    p.add_argument("--labels", metavar="FILE", help="true labels: 'clip,label' lines (tab, ; or , separated; "
                   "label = class name or index)")
    p.add_argument("--out", metavar="FILE", help="write the output to FILE (atomically) instead of stdout")
    p.add_argument("--num-segments", type=int, help="frames per clip, for foreign checkpoints that do not record it")
    p.add_argument("--classes", metavar="FILE", help="class names, one per line, for foreign checkpoints")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ckpts, clips = split_arguments(args.paths)
    labels = load_labels_file(args.labels) if args.labels else None
    import_options = {k: v for k, v in (("num_segments", args.num_segments), ("classes_file", args.classes))
                      if v is not None}

    tty = sys.stderr.isatty()

    def skip(path: str, reason: str) -> None:
        print(("\r\033[K" if tty else "") + f"skipped {path}: {reason}", file=sys.stderr, flush=True)

    def progress(done: int, total: int, name: str) -> None:
        if tty and total > 1:
            print(f"\r\033[K[{done + 1}/{total}] {name}", end="", file=sys.stderr, flush=True)

    res = predict_clips(ckpts, clips, k=args.top_k, reverse=args.reverse, labels=labels, on_skip=skip,
                        on_progress=progress, include_logits=bool(args.json), **import_options)
    if tty and res.records:
        print("\r\033[K", end="", file=sys.stderr, flush=True)
    if not res.records:
        raise ClipError(f"nothing could be predicted: {len(res.skipped)} clip"
                        f"{'s' if len(res.skipped) != 1 else ''} skipped (reasons above).")
    data = res.json() if args.json else res.csv() if args.csv else res.table().encode("utf-8")
    if args.out:
        exports.write_export(args.out, data)
        print(f"wrote {args.out}: {len({r['clip'] for r in res.records})} clips, {len(res.skipped)} skipped",
              file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    if res.skipped and not args.out:
        print(f"{len(res.skipped)} skipped", file=sys.stderr)
    return 0
