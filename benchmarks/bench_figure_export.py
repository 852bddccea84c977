"""Figure export: kaleido (Plotly's renderer + Debian's chromium) against the browser-free Pillow fallback.

For three explorer figures of the shipped demo pair on one sample clip - top-5 bars, the layer x pair
gate matrix, the all-layers gate grid over the frames (70 heatmaps + 70 images) - times, in one run:

* ``kaleido_cold``: the first PNG in the process (starts chromium, loads plotly.js);
* ``kaleido_warm``: median PNG / SVG once the browser is up (``figure_export`` keeps it for the process);
* ``fallback``: median PNG / SVG of ``figure_export.render_fallback`` (no browser);

and records output sizes and the resident memory of the chromium processes kaleido keeps. The choice this
informs is written up in docs/one_clip.md.

    python benchmarks/bench_figure_export.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import median, write_result  # noqa: E402


def _chromium_rss_mb() -> float | None:
    """Resident memory of this process's descendants (the chromium kaleido keeps), in MiB."""
    try:
        out = subprocess.run(["ps", "-eo", "pid,ppid,rss"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [tuple(int(v) for v in line.split()) for line in out.splitlines()[1:] if line.split()]
    mine, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, ppid, _ in rows if ppid in mine and pid not in mine}
        mine |= new
        grew = bool(new)
    rss = [r for pid, _, r in rows if pid in mine and pid != os.getpid()]
    return round(sum(rss) / 1024, 1) if rss else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from app.figures import gate_grid_figure, gate_matrix_figure, top5_figure
    from hfnet_core.analysis import figure_export as fe
    from hfnet_core.analysis.clips import decode_video
    from hfnet_core.predict import load_models, model_view, predict_view

    models = load_models([ROOT / "checkpoints" / "hf_tsn_demo.safetensors"], device="cpu")
    ck = models["hf_tsn_demo"]
    frames, _ = decode_video(ROOT / "checkpoints" / "samples" / "00_moving_sth_from_left_to_right.mp4")
    _, view = model_view(ck, frames)
    pred = predict_view(ck, view)
    figures = {"top5_bars": top5_figure(pred, "top-5 of A"), "gate_matrix": gate_matrix_figure(pred.gates),
               "gate_grid": gate_grid_figure(pred.gates, view, 0.6)}
    who = ("00_moving_sth_from_left_to_right.mp4", ["hf_tsn_demo"], {"layer": "all"})
    engine = fe.figure_engine()
    cases = {}
    cold = None
    def measure(fn, fig, eng: str) -> tuple[float, float]:
        """(median seconds, KiB) of ``args.repeats`` exports."""
        times, size = [], 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            size = len(fn(fig, *who, engine=eng))
            times.append(time.perf_counter() - t0)
        return round(median(times), 3), round(size / 1024, 1)

    for name, fig in figures.items():
        case: dict[str, object] = {}
        if engine == "kaleido" and cold is None:
            t0 = time.perf_counter()
            fe.figure_png(fig, *who, engine="kaleido")
            cold = time.perf_counter() - t0
        for eng in (["kaleido"] if engine == "kaleido" else []) + ["fallback"]:
            for fmt, fn in (("png", fe.figure_png), ("svg", fe.figure_svg)):
                secs, kib = measure(fn, fig, eng)
                case[f"{eng}{'_warm' if eng == 'kaleido' else ''}_{fmt}_s"] = secs
                case[f"{eng}_{fmt}_kib"] = kib
        cases[name] = case
        print(name, case, flush=True)
    result = {
        "engine_found": engine,
        "browser": fe.find_browser(),
        "kaleido_cold_first_png_s": round(cold, 2) if cold is not None else None,
        "chromium_rss_mb_while_kept": _chromium_rss_mb(),
        "repeats": args.repeats,
        "figures": cases,
        "png_scale": 2,
    }
    print(write_result("figure_export", result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
