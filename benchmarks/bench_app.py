"""Explorer latency: from choosing a clip to both models' predictions and all gate maps drawn.

Times what the Clip lab and Gate maps pages compute for one clip played forward *and* backwards (the
explorer's core lesson; the heaviest setting), uncached: decoding the sample file, TSN sampling + input
convention for both models, four ``model.inspect`` passes (two models x two directions), and building every
figure (top-5 x 4, the gate player with both directions over grey frames, locality, gate summary, layer x
pair matrix, forward - backwards difference) including the validation + JSON serialisation
``st.plotly_chart`` does; the all-layers grid, drawn only on request, is timed apart (``grid_on_request``,
build + serialisation). Demo-size models (width 0.25, 112 px, 8 frames):
the shipped ``checkpoints/{hf_tsn,tsn}_demo.safetensors`` when present, else random ones of the same
architecture. Target: <= 2 s on CPU (reported, not asserted).

    python benchmarks/bench_app.py [--repeats 3] [--threads 1] [--out benchmarks/results/app_latency.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import plotly.io as pio  # noqa: E402
import plotly.tools  # noqa: E402
import torch  # noqa: E402

from app.figures import (GatePanel, backward_aligned, gate_difference_figure, gate_grid_figure,  # noqa: E402
                         gate_matrix_figure, gate_player_figure, gate_summary_figure, locality_figure, top5_figure)
from app.model_facts import hf_blocks  # noqa: E402
from hfnet_core.analysis.clips import decode_video, sampled_frames  # noqa: E402
from hfnet_core.analysis.gates import gate_locality, most_local_layer, pair_gates, summarise_gates  # noqa: E402
from hfnet_core.analysis.inference import run_clip  # noqa: E402
from hfnet_core.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from hfnet_core.data.synthetic import SYNTH_CLASSES  # noqa: E402
from hfnet_core.model import build_model  # noqa: E402

TARGET_S = 2.0


def _models(tmp: Path) -> tuple[list, str]:
    shipped = [ROOT / "checkpoints" / "hf_tsn_demo.safetensors", ROOT / "checkpoints" / "tsn_demo.safetensors"]
    if all(p.is_file() for p in shipped):
        return [load_checkpoint(p) for p in shipped], "shipped demo checkpoints"
    out = []
    for name in ("hf_tsn_bninception_demo", "tsn_bninception_demo"):
        torch.manual_seed(0)
        model = build_model(name, num_classes=len(SYNTH_CLASSES))
        with torch.no_grad():
            for p in model.gate_parameters():
                p.normal_(0, 0.05)
        path = tmp / f"{name}.safetensors"
        save_checkpoint(path, model, list(SYNTH_CLASSES))
        out.append(load_checkpoint(path))
    return out, "random demo-architecture checkpoints (shipped ones not found)"


def _serialise(fig) -> int:
    """What st.plotly_chart does with a figure: validate into a Figure, then JSON."""
    f = plotly.tools.return_figure_from_figure_or_data(fig, validate_figure=True)
    return len(pio.to_json(f, validate=False))


def one_clip(path: Path, models: list) -> dict[str, float]:
    t = {}
    t0 = time.perf_counter()
    frames, _ = decode_video(path)
    t["decode"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    inputs, views = [], []
    for m in models:
        _, view = sampled_frames(frames, m.config.num_segments, m.config.input_size)
        views.append(view)
        inputs.append(m.model.input_convention.to_model_input(view).unsqueeze(0))
    t["sampling"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    preds = [run_clip(m, x) for m, x in zip(models, inputs)]
    backwards = [run_clip(m, x.flip(1)) for m, x in zip(models, inputs)]
    t["inference_2_models_2_directions"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    figs = [top5_figure(p, f"top-5 {i}") for i, p in enumerate(preds + backwards)]
    hf = next(i for i, m in enumerate(models) if hf_blocks(m))
    gates, back = preds[hf].gates, backwards[hf].gates
    layer = most_local_layer(gates)
    panels = [GatePanel("forward", views[hf], pair_gates(gates[layer])),
              GatePanel("backwards", views[hf][1:], backward_aligned(back)[layer])]
    figs += [gate_player_figure(panels, per_row=2), locality_figure(gate_locality(gates), gate_locality(back)),
             gate_summary_figure(summarise_gates(gates)), gate_matrix_figure(gates),
             gate_difference_figure(gates, back)]
    t["figures_build"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    _serialise(gate_grid_figure(gates, views[hf]))  # drawn only when the user asks for every map at once
    t["grid_on_request"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    t["payload_bytes"] = float(sum(_serialise(f) for f in figs))
    t["figures_serialise"] = time.perf_counter() - t0
    t["total"] = (t["decode"] + t["sampling"] + t["inference_2_models_2_directions"] + t["figures_build"]
                  + t["figures_serialise"])
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="passes over the sample clips")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "app_latency.json"))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("HFNET_TORCH_THREADS", "1")),
                    help="torch intra-op threads (the app's default is 1, see app/settings.py configure_torch)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips = sorted((ROOT / "checkpoints" / "samples").glob("*.mp4"))[:6]
    if not clips:
        print("no sample clips: run `python -m hfnet_core.analysis.make_samples`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        models, which = _models(Path(tmp))
        cold = one_clip(clips[0], models)  # first call: allocator, thread pools, plotly validators warm up
        runs = [one_clip(c, models) for _ in range(args.repeats) for c in clips]
    keys = [k for k in runs[0] if k != "payload_bytes"]
    summary = {k: {"median_s": round(statistics.median(r[k] for r in runs), 4),
                   "p90_s": round(sorted(r[k] for r in runs)[int(0.9 * (len(runs) - 1))], 4)} for k in keys}
    result = {
        "what": "choose a clip -> both models' predictions forward and backwards + all gate-map figures (uncached page work)",
        "models": which,
        "model_configs": [{"hf_blocks": len(hf_blocks(m)), "width_mult": m.config.width_mult,
                           "input_size": m.config.input_size, "num_segments": m.config.num_segments} for m in models],
        "clips": [c.name for c in clips],
        "runs": len(runs),
        "cold_first_clip_s": {k: round(v, 4) for k, v in cold.items() if k != "payload_bytes"},
        "warm": summary,
        "figure_payload_kib_median": round(statistics.median(r["payload_bytes"] for r in runs) / 1024, 1),
        "target_s": TARGET_S,
        "meets_target_warm_median": summary["total"]["median_s"] <= TARGET_S,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version(),
                    "torch": torch.__version__, "device": "cpu"},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"warm_total_median_s": summary["total"]["median_s"], "p90_s": summary["total"]["p90_s"],
                      "cold_total_s": round(cold["total"], 3), "target_s": TARGET_S, "models": which}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
