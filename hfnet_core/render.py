"""``hfnet render``: a clip as the model saw it, with one layer's gates over it and the models' top-3 below.

    hfnet render CKPT [CKPT_B] CLIP --out FILE.mp4|.gif [--layer 4d] [--reverse] [--fps 2]

One output frame per sampled frame t: on the left the frame in colour, on the right the same frame in grey
with ``G-_t`` of the chosen layer over it (``analysis.gates.gate_overlay``: blue = averaging with frame
t+1, red = differencing, opacity = |G|; the grey base keeps gate colours from mixing with the content's
own). The default layer is the most local one (``analysis.gates.most_local_layer``); the layer's
behaviour and locality are named under the panels (a layer pinned at +-1 is flagged as fixed). Below:
each model's top-3 for the whole clip, the true label when the path tells it (``analysis.true_labels``)
and a mark for right/wrong. Gates come from the first model that has HF modules; a model without them
(TSN) only contributes its captions.

Frames and predictions are the ones ``hfnet predict`` computes (``predict.model_view``, ``run_clip``);
``--reverse`` renders the reversed clip (the sampled frames backwards) with its own true label.
Writing: MP4 = H.264 yuv420p via PyAV (``data.video.write_video``, atomic); GIF = Pillow with an adaptive
256-colour palette per frame (PyAV's GIF encoder only has the fixed 3-3-2 ``rgb8`` palette, which bands
the grey frames and the gate colours badly), looping, written atomically.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from hfnet_core.analysis.clips import decode_video
from hfnet_core.analysis.figure_export import text_font
from hfnet_core.analysis.gates import (
    AVERAGING_RGB, BEHAVIOURS, DIFFERENCING_RGB, gate_locality, gate_overlay, most_local_layer, short_block_name,
)
from hfnet_core.analysis.true_labels import find_true_label, reversed_label
from hfnet_core.errors import ConfigError
from hfnet_core.predict import load_models, model_view, predict_view, split_arguments

__all__ = ["render_frames", "render_clip", "resolve_layer", "cli_main"]

#: Side of each image panel in the output (px); smaller model inputs are scaled up to it.
DEFAULT_PANEL = 224
_PAD = 8
_BG = (250, 250, 250)
_INK = (30, 30, 30)
_MUTED = (100, 100, 100)


def resolve_layer(gates: Mapping[str, Any], layer: str | None) -> str | None:
    """A block name from ``layer`` ("4d", "inception_4d"; None = the most local layer). ``ConfigError``
    listing the layers when it names none of them."""
    if not gates:
        return None
    if layer is None:
        return most_local_layer(gates)
    for b in gates:
        if layer in (b, short_block_name(b)):
            return b
    raise ConfigError(f"--layer {layer!r}: no HF layer of that name; this model has "
                      + ", ".join(short_block_name(b) for b in gates) + ".")


def _resize(img: np.ndarray, side: int) -> np.ndarray:
    from PIL import Image

    if img.shape[0] == side and img.shape[1] == side:
        return img
    h, w = img.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    resample = Image.NEAREST if s == int(s) else Image.BILINEAR
    out = np.asarray(Image.fromarray(img).resize(size, resample))
    if out.shape[:2] == (side, side):
        return out
    canvas = np.full((side, side, 3), _BG, np.uint8)  # letterbox non-square inputs
    y, x = (side - out.shape[0]) // 2, (side - out.shape[1]) // 2
    canvas[y : y + out.shape[0], x : x + out.shape[1]] = out
    return canvas


def _fit(draw: Any, text: str, font: Any, width: int) -> str:
    """``text`` shortened with an ellipsis until it fits ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def render_frames(models: Mapping[str, Any], frames: np.ndarray, layer: str | None = None, reverse: bool = False,
                  clip_name: str = "", true_label: str | None = None, opacity: float = 0.75,
                  panel: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The rendered frames, uint8 (K, H, W, 3) with even H and W, and what they show (``info``: layer,
    its ``gate_locality`` row, the overlay model, the top-3 per model, frame indices, true label).

    ``models``: display name -> ``LoadedCheckpoint`` (one or two, in caption order); ``frames``: the
    decoded clip (T, H, W, 3) uint8. ``true_label`` is the label of the clip as given: with ``reverse`` it
    should already be the reversed clip's label.
    """
    from PIL import Image, ImageDraw

    if not models:
        raise ConfigError("render needs at least one model.")
    seen = {n: model_view(ck, frames, reverse) for n, ck in models.items()}
    views = {n: (idx, predict_view(models[n], v, 3)) for n, (idx, v) in seen.items()}
    overlay_model = next((n for n, (_, p) in views.items() if p.gates), None)
    base_model = overlay_model or next(iter(models))
    idx, view = seen[base_model]
    gates = views[overlay_model][1].gates if overlay_model else {}
    block = resolve_layer(gates, layer)
    row = next((r for r in gate_locality(gates) if r["block"] == block), None) if block else None
    side = int(panel or max(DEFAULT_PANEL, view.shape[1]))
    side += side % 2
    k = view.shape[0]
    maps = gates[block][:k] if block else np.zeros((k, 1, 1), np.float32)
    over = gate_overlay(view, maps, opacity=opacity) if block else view

    title_f, text_f, small_f = text_font(15), text_font(13), text_font(11)
    width = 2 * side + 3 * _PAD
    cap_lines = sum(1 + len(p.top5_names[:3]) for _, p in views.values())
    header_h, legend_h, line_h = 62, 38, 17
    height = header_h + side + legend_h + cap_lines * line_h + _PAD * (len(views) + 1)
    height += height % 2
    out = np.empty((k, height, width, 3), np.uint8)
    direction = "reversed" if reverse else "forward"
    for t in range(k):
        im = Image.new("RGB", (width, height), _BG)
        d = ImageDraw.Draw(im)
        head = f"{clip_name or 'clip'} · {direction}"
        d.text((_PAD, 5), _fit(d, head, title_f, width - 2 * _PAD), fill=_INK, font=title_f)
        truth = f"true label: {true_label or 'unknown'}"
        d.text((_PAD, 25), _fit(d, truth, text_f, width - 2 * _PAD), fill=_INK, font=text_f)
        sub = f"frame {t + 1}/{k} (clip frame {int(idx[t])})"
        if block:
            sub += (f" · layer {short_block_name(block)}: G between frames {t} and {t + 1}" if t < k - 1
                    else f" · layer {short_block_name(block)}: last frame, no successor")
        d.text((_PAD, 44), _fit(d, sub, small_f, width - 2 * _PAD), fill=_MUTED, font=small_f)
        y0 = header_h
        im.paste(Image.fromarray(_resize(view[t], side)), (_PAD, y0))
        im.paste(Image.fromarray(_resize(over[t], side)), (2 * _PAD + side, y0))
        y = y0 + side + 6
        if block and row is not None:
            x = _PAD
            for rgb, label in ((AVERAGING_RGB, "blue = averaging (G > 0)"), (DIFFERENCING_RGB, "red = differencing (G < 0)")):
                d.rectangle([x, y + 2, x + 10, y + 12], fill=rgb)
                d.text((x + 14, y), label, fill=_INK, font=small_f)
                x += 18 + int(d.textlength(label, font=small_f)) + 12
            loc = row["locality"]
            flag = f"{row['behaviour'].replace('_', ' ')}" + (" - FIXED, not a local choice" if row["fixed"] else "")
            note = f"layer {short_block_name(block)} of {overlay_model}: locality {loc:.2f} · {flag}" \
                if np.isfinite(loc) else f"layer {short_block_name(block)} of {overlay_model}: {flag}"
            d.text((_PAD, y + 17), _fit(d, note, small_f, width - 2 * _PAD), fill=_MUTED, font=small_f)
        else:
            d.text((_PAD, y + 4), "no HF gates in these models: frames shown without an overlay", fill=_MUTED,
                   font=small_f)
        y = y0 + side + legend_h + _PAD
        for name, (_, p) in views.items():
            known = true_label is not None and true_label in p.class_names
            mark = ("✓ " if p.top5_names[0] == true_label else "✗ ") if known else ""
            d.text((_PAD, y), _fit(d, f"{mark}{name}", text_f, width - 2 * _PAD), fill=_INK, font=text_f)
            y += line_h
            for r, (cls, prob) in enumerate(zip(p.top5_names[:3], p.top5_probs[:3]), 1):
                colour = (40, 120, 40) if cls == true_label else _INK
                pct = f"{100 * prob:.1f}%"
                d.text((_PAD + 14, y), _fit(d, f"{r}. {cls}", text_f, width - 80), fill=colour, font=text_f)
                d.text((width - _PAD, y), pct, fill=colour, font=text_f, anchor="ra")
                y += line_h
            y += _PAD
        out[t] = np.asarray(im)
    info = {
        "layer": block, "locality": row, "overlay_model": overlay_model, "frames_seen": [int(i) for i in idx],
        "direction": direction, "true_label": true_label,
        "top3": {n: list(zip(p.top5_names[:3], p.top5_probs[:3])) for n, (_, p) in views.items()},
        "behaviour_text": BEHAVIOURS.get(row["behaviour"]) if row else None,
    }
    return out, info


def _write_gif(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    from PIL import Image

    from hfnet_core.atomic import write_bytes_atomic

    images = [Image.fromarray(f).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
              for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0,
                   duration=max(20, round(1000 / fps)), disposal=1, optimize=False)
    return write_bytes_atomic(path, buf.getvalue())


def render_clip(checkpoints: Sequence[Any] | Mapping[str, Any], clip: str | Path, out: str | Path,
                layer: str | None = None, reverse: bool = False, fps: float = 2.0, opacity: float = 0.75,
                panel: int | None = None, device: Any = None, **import_options: Any) -> dict[str, Any]:
    """Render ``clip`` with one or two checkpoints to ``out`` (.mp4 or .gif); returns ``render_frames``'
    info plus ``out``, ``frames``, ``width``, ``height``, ``fps``."""
    from hfnet_core.data.video import write_video

    out_p = Path(out)
    suffix = out_p.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise ConfigError(f"--out {out}: write .mp4 (H.264) or .gif.")
    if not 0 < float(fps) <= 60:
        raise ConfigError(f"--fps must be in (0, 60], got {fps}.")
    if not 0 <= float(opacity) <= 1:
        raise ConfigError(f"--opacity must be in [0, 1], got {opacity}.")
    if panel is not None and not 32 <= int(panel) <= 1024:
        raise ConfigError(f"--panel must be between 32 and 1024 px, got {panel}.")
    models = load_models(checkpoints, device, **import_options)
    if len(models) > 2:
        raise ConfigError(f"render shows one or two models, got {len(models)}.")
    clip_p = Path(clip)
    frames, _ = decode_video(clip_p, name=clip_p.name)
    first = next(iter(models.values()))
    label, _ = find_true_label(clip_p, first.class_names)
    if reverse:
        label, _ = reversed_label(label, first.class_names)
    rendered, info = render_frames(models, frames, layer, reverse, clip_p.name, label, opacity, panel)
    if suffix == ".mp4":
        write_video(out_p, rendered, fps=float(fps), codec="libx264",
                    options={"crf": "18", "preset": "medium", "movflags": "+faststart"})
    else:
        _write_gif(out_p, rendered, float(fps))
    info.update(out=str(out_p), frames=int(rendered.shape[0]), height=int(rendered.shape[1]),
                width=int(rendered.shape[2]), fps=float(fps))
    return info


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hfnet render", description="A clip's sampled frames with one layer's HF "
                                "gates drawn over them and the models' top-3 as captions, as MP4 or GIF.")
    p.add_argument("paths", nargs="+", metavar="CKPT_OR_CLIP", help="CKPT [CKPT_B] CLIP")
    p.add_argument("--out", required=True, help="output .mp4 (H.264) or .gif")
    p.add_argument("--layer", help="HF layer to overlay, e.g. 4d or inception_4d (default: the most local one)")
    p.add_argument("--reverse", action="store_true", help="render the clip played backwards")
    p.add_argument("--fps", type=float, default=2.0, help="output frames per second (default 2)")
    p.add_argument("--opacity", type=float, default=0.75, help="gate colour at |G| = 1 (default 0.75)")
    p.add_argument("--panel", type=int, help=f"panel side in px (default max({DEFAULT_PANEL}, input size))")
    p.add_argument("--num-segments", type=int, help="frames per clip, for foreign checkpoints that do not record it")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ckpts, clips = split_arguments(args.paths)
    if len(clips) != 1:
        raise ConfigError(f"render takes one clip, got {len(clips)}: {', '.join(clips)}.")
    if len(ckpts) > 2:
        raise ConfigError(f"render shows one or two models, got {len(ckpts)} checkpoints.")
    opts = {"num_segments": args.num_segments} if args.num_segments else {}
    info = render_clip(ckpts, clips[0], args.out, args.layer, args.reverse, args.fps, args.opacity, args.panel,
                       **opts)
    layer = f"layer {short_block_name(info['layer'])} of {info['overlay_model']}" if info["layer"] else "no gates"
    print(f"wrote {info['out']}: {info['frames']} frames, {info['width']}x{info['height']}, {layer}",
          file=sys.stderr)
    return 0
