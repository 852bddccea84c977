"""Benchmark: how long plotly.js takes to draw one Feature space map in headless Chromium, and its bytes.

The app's figure (``app.feature_map.map_figure``: one WebGL trace of every point) against the same points
split into one trace per true class (the design that writes each class name once instead of once per
point), at 24,777 points and 174 classes: first draw (``Plotly.react`` on an empty div until the next
frame) and the redraw a box selection causes (the figure with 8,730 clips bright, the rest dimmed),
median of ``--rounds`` alternating rounds, plus the JSON bytes of each figure. Plotly alone, no Streamlit:
the page-level numbers are ``bench_app_scale.py``'s. Chromium runs with ``--disable-gpu`` (software WebGL),
as the browser tests do. Writes ``benchmarks/results/map_render.json``.
Run: ``python benchmarks/bench_map_render.py [--clips N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from common import write_result  # noqa: E402

import plotly  # noqa: E402
import plotly.io as pio  # noqa: E402

from app.analysis_figures import FeaturePoints  # noqa: E402
from app.feature_map import MapOptions, class_palette, map_figure  # noqa: E402
from hfnet_core.analysis.synthetic_bundles import synthetic_pair  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DRAW_JS = """async (s) => { const t0 = performance.now(); const f = JSON.parse(s);
    await Plotly.react('g', f.data, f.layout);
    await new Promise(r => requestAnimationFrame(() => setTimeout(r, 0)));
    return performance.now() - t0; }"""


def per_class(spec: dict[str, Any], labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    """``spec`` with its bright trace split into one trace per true class (hover: the class name in the
    trace's template, the prediction per point) - the alternative design, for comparison only."""
    out = dict(spec, data=[])
    for t in spec["data"]:
        if "customdata" not in t or t["name"].startswith(("✗", "★")):
            out["data"].append(t)
            continue
        rows = np.asarray(_array(t["customdata"]), dtype=np.int64)
        x, y, c = (np.asarray(_array(v)) for v in (t["x"], t["y"], t["marker"]["color"]))
        for k in np.unique(labels[rows]):
            sel = labels[rows] == k
            out["data"].append(dict(
                type="scattergl", mode="markers", showlegend=False, name=names[k], x=_typed(x[sel], "f4"),
                y=_typed(y[sel], "f4"), customdata=_typed(rows[sel], "i4"),
                marker=dict(t["marker"], color=_typed(c[sel], "i2")),
                text=[s for s, m in zip(t["text"], sel) if m],
                hovertext=[h.split("<br>", 1)[1] for h, m in zip(t["hovertext"], sel) if m],
                hovertemplate=f"<b>%{{text}}</b><br>true: {names[k]}<br>%{{hovertext}}<extra></extra>"))
    return out


def _typed(values: np.ndarray, dtype: str) -> dict[str, str]:
    """Plotly's typed-array encoding (what plotly.py writes for numpy arrays)."""
    import base64

    return {"dtype": dtype, "bdata": base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode()}


def _array(v: Any) -> list:
    if isinstance(v, dict) and "bdata" in v:
        import base64

        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=24_777)
    ap.add_argument("--selected", type=int, default=8_730)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    a, _ = synthetic_pair(args.clips, dim=8, k=174)
    rng = np.random.default_rng(0)
    pts = FeaturePoints(a.clip_ids, a.paths, a.labels, a.class_names,
                        xy={"A": rng.standard_normal((args.clips, 2)).astype(np.float32)},
                        preds={"A": a.predictions}, confs={"A": np.ones(args.clips)},
                        pred_names={"A": list(a.class_names)})
    palette = class_palette(len(a.class_names))
    focus = np.zeros(args.clips, dtype=bool)
    focus[rng.choice(args.clips, args.selected, replace=False)] = True
    one = [json.loads(pio.to_json(map_figure(pts, "A", "map", palette, MapOptions(), f), validate=False))
           for f in (None, focus)]
    variants = {"one trace (the app)": one,
                "one trace per class": [per_class(s, np.asarray(a.labels), list(a.class_names)) for s in one]}
    specs = {k: [json.dumps(s) for s in v] for k, v in variants.items()}
    js = (Path(plotly.__file__).parent / "package_data" / "plotly.min.js").read_text()
    times: dict[str, dict[str, list[float]]] = {k: {"first_draw": [], "selection_redraw": []} for k in specs}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 800})
        page.set_content("<html><body><div id=g style='width:700px;height:620px'></div></body></html>")
        page.add_script_tag(content=js)
        for _ in range(args.rounds):
            for name, (first, selected) in specs.items():
                times[name]["first_draw"].append(page.evaluate(DRAW_JS, first))
                times[name]["selection_redraw"].append(page.evaluate(DRAW_JS, selected))
                page.evaluate("Plotly.purge('g')")
        browser.close()
    result = {"clips": args.clips, "classes": 174, "selected": args.selected, "rounds": args.rounds,
              "browser": {"executable": CHROMIUM, "args": CHROMIUM_ARGS}, "variants": {}}
    for name in specs:
        row = {k: round(statistics.median(v)) for k, v in times[name].items()}
        row.update(traces=len(variants[name][0]["data"]), figure_mb=round(len(specs[name][0]) / 1e6, 2),
                   selection_figure_mb=round(len(specs[name][1]) / 1e6, 2),
                   all_ms={k: [round(x) for x in v] for k, v in times[name].items()})
        result["variants"][name] = row
        print(f"{name:22s} first draw {row['first_draw']:5d} ms, selection redraw {row['selection_redraw']:5d} ms, "
              f"{row['figure_mb']} / {row['selection_figure_mb']} MB, {row['traces']} traces")
    print(f"wrote {write_result('map_render', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
