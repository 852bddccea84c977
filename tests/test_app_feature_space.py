"""Feature space page (AppTest): loads, plots both models from stored projections, widgets act, selection
is shared between the plots and opens clips in the Clip lab; at the paper's scale (174 classes, 2,400 clips):
one WebGL trace per plot with colour arrays, no legend, the class picker and "10 most improved", dimming,
misclassification rings, thinning, a missing set computed by a background job with progress, the current
clip as a star with its neighbours (also in Clip lab)."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from _analysis_fixtures import (  # noqa: F401 - fixtures
    analysis_dir,
    analysis_env,
    full_app,
    make_mismatch_dir,
    no_exceptions,
    page,
)
from _app_fixtures import linked_map_args, linked_map_figures, plotly_array
from _scale_fixtures import FAST, FAST_JSON, K, make_scale_dir, store_projections
from app.analysis_figures import FeaturePoints
from app.feature_map import (MapOptions, class_palette, frame_selection, map_figure, plot_coords, reported_rows,
                             resolve_selection, selected_rows_csv, selected_rows_table, stratified_rows)
from hfnet_core.analysis import embeddings as emb
from hfnet_core.analysis import jobs
from hfnet_core.analysis import precompute as pre
from hfnet_core.analysis.comparison import most_improved
from hfnet_core.errors import BundleError
from hfnet_core.eval_bundle import EvalBundle


def specs(at) -> list[dict]:
    """The maps' figures (drawn in one component frame), then any other chart of the page."""
    return linked_map_figures(at) + [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titles(at) -> list[str]:
    return [s["layout"]["title"]["text"] for s in specs(at)]


@pytest.fixture()
def no_projection_compute(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the page computed a projection although it is cached")

    monkeypatch.setattr(emb, "compute_projection", boom)


def test_default_run_draws_both_models_from_the_cache(analysis_env, no_projection_compute):
    at = page("feature_space").run()
    no_exceptions(at)
    assert not at.error
    assert titles(at) == ["A · hf_tsn_demo: t-SNE of 64 clips", "B · tsn_demo: t-SNE of 64 clips"]
    assert any("64 clips matched by id (64 in A, 64 in B)" in c.value for c in at.caption)
    seps = [c.value for c in at.caption if "silhouette" in c.value]
    assert len(seps) == 2  # A's features are the tight clusters of the fixture
    a_sep, b_sep = (float(v.split("**")[1]) for v in seps)
    assert a_sep > b_sep
    spec = specs(at)[0]
    names = at.session_state["_hf_selection"].class_names
    short = [n[:29] + "…" if len(n) > 30 else n for n in names]
    (main,) = point_traces(spec)  # one WebGL trace of every point
    assert main["type"] == "scattergl" and main["name"] == "64 clips"
    assert [t["name"] for t in specs(at)[1]["data"]][-1] == "✗ B is wrong (23)"  # 64 points: on by default
    assert main["hovertemplate"] == "<b>%{text}</b><br>true: %{hovertext}<extra></extra>"
    a = EvalBundle.load(analysis_env / "hf_tsn_demo.test.npz")
    rows = plotly_array(main["customdata"]).astype(int)  # the rows, as a typed array
    assert sorted(rows.tolist()) == list(range(64))
    assert main["text"] == [a.clip_ids[r] for r in rows]
    assert main["hovertext"] == [f"{short[y]}<br>A: " + ("✓" if p == y else f"{short[p]} ✗")
                                 for p, y in zip(a.predictions[rows], a.labels[rows])]
    legend = [t["name"] for t in spec["data"] if t.get("showlegend") and t["name"][0] not in "✗★"]
    assert legend == short
    assert not at.progress  # nothing to compute


def test_widgets_change_the_plots(analysis_env, no_projection_compute):
    at = page("feature_space").run()
    at.radio(key="fs_method").set_value("umap").run()
    no_exceptions(at)
    assert titles(at)[0] == "A · hf_tsn_demo: UMAP of 64 clips"

    def colours():  # B's colour values of every point, in row order
        traces = point_traces(specs(at)[1])
        rows = np.concatenate([plotly_array(t["customdata"]).astype(int) for t in traces])
        return np.concatenate([plotly_array(t["marker"]["color"]) for t in traces])[np.argsort(rows)]

    by_true = colours()
    at.radio(key="fs_colour").set_value("pred").run()
    by_pred = colours()
    assert np.bincount(by_true.astype(int), minlength=16).tolist() == [4] * 16
    assert (by_pred != by_true).sum() == 23  # B's mistakes move clips to other colours
    at.radio(key="fs_method").set_value("pca").run()
    assert titles(at)[0] == "A · hf_tsn_demo: PCA of 64 clips"
    at.radio(key="fs_method").set_value("umap").run()

    at.checkbox(key="fs_restrict").check().run()
    no_exceptions(at)
    assert titles(at)[0] == "A · hf_tsn_demo: UMAP of 40 clips"
    assert any(c.value.startswith("10 most-improved classes (40 clips)") for c in at.caption)
    at.checkbox(key="fs_reproject").check().run()  # the subset's own projection (cached by the fixture)
    no_exceptions(at)
    assert titles(at)[1] == "B · tsn_demo: UMAP of 40 clips"
    at.checkbox(key="fs_reproject").uncheck().run()
    at.number_input(key="fs_top_k").set_value(3).run()
    no_exceptions(at)
    assert titles(at)[0] == "A · hf_tsn_demo: UMAP of 12 clips"  # cut out of the whole-set projection


def test_a_selection_dims_the_rest_in_both_plots_and_lists_them(analysis_env):
    at = page("feature_space").run()
    assert any("Nothing selected" in c.value for c in at.caption)
    at.session_state["fs_selected"] = ["synth/test/000003", "synth/test/000019", "not/a/clip"]
    at.run()
    no_exceptions(at)
    assert at.subheader[0].value == "Selected clips (2)"
    for spec in specs(at):
        dimmed, *bright = point_traces(spec)
        assert dimmed["name"] == "62 other clips (dimmed)" and n_points(dimmed) == 62
        assert dimmed["hoverinfo"] == "skip" and "text" not in dimmed and "customdata" not in dimmed
        assert sorted(i for t in bright for i in t["text"]) == ["synth/test/000003", "synth/test/000019"]
        assert all((plotly_array(t["marker"]["color"]) < 16).all() for t in bright)
        assert (plotly_array(dimmed["marker"]["color"]) >= 16).all()  # the dimmed copies of the class colours
    table = at.dataframe[0].value
    assert list(table["clip id"]) == ["synth/test/000003", "synth/test/000019"]
    assert set(table.columns) == {"clip id", "true", "A predicts", "B predicts"}
    assert [b.label for b in at.button if b.label.startswith("Open")] == [
        "Open synth/test/000003 in Clip lab", "Open synth/test/000019 in Clip lab"]
    at.button(key="fs_clear").click().run()
    assert at.subheader[0].value == "Selected clips (0)"


def test_clearing_gives_both_plots_a_new_revision(analysis_env):
    """After Clear no chart is the one plotly drew the box in (a chart with that spec would come back with
    its stored selection): the figures are the unselected ones, at a new UI revision."""
    at = page("feature_space").run()
    before = [m["digest"] for a in linked_map_args(at) for m in a["maps"]]
    at.session_state["fs_selected"] = ["synth/test/000003", "synth/test/000019"]
    at.run()
    assert all(point_traces(spec)[0]["name"] == "62 other clips (dimmed)" for spec in specs(at))
    selected = [m["digest"] for a in linked_map_args(at) for m in a["maps"]]
    at.button(key="fs_clear").click().run()
    no_exceptions(at)
    assert at.subheader[0].value == "Selected clips (0)" and at.session_state["fs_revision"] == 1
    assert all("dimmed" not in t["name"] for spec in specs(at) for t in point_traces(spec))
    after = [m["digest"] for a in linked_map_args(at) for m in a["maps"]]
    assert len(set(before + selected + after)) == 6  # every figure new: the frame redraws each plot
    assert {spec["layout"]["uirevision"] for spec in specs(at)} == {"A/1", "B/1"}


def test_the_maps_frame_leaves_unchanged_plots_alone_and_gets_changed_ones_anew(analysis_env):
    """Both maps go to one component frame under one key (its identity: it is never mounted again); each
    plot with a digest of everything its figure depends on, so the frame redraws only what changed and a
    rerun re-sends the same message (the browser keeps it: only its hash comes back)."""
    at = page("feature_space").run()
    (args,) = linked_map_args(at)
    assert args["key"] == "fs_maps" and [m["slot"] for m in args["maps"]] == ["A", "B"]
    first = {m["slot"]: m["digest"] for m in args["maps"]}
    message = [c.proto.json_args for c in at.get("component_instance")]
    at.run()
    assert [c.proto.json_args for c in at.get("component_instance")] == message  # a rerun: the same message
    at.radio(key="fs_colour").set_value("pred").run()
    no_exceptions(at)
    changed = {m["slot"]: m["digest"] for m in linked_map_args(at)[0]["maps"]}
    assert all(changed[s] != first[s] for s in first)
    at.radio(key="fs_colour").set_value("true").run()
    assert {m["slot"]: m["digest"] for m in linked_map_args(at)[0]["maps"]} == first
    assert [c.proto.json_args for c in at.get("component_instance")] == message


def test_a_frame_event_is_resolved_in_its_own_plot_on_every_point():
    """What the maps frame sends back (its slot, a box or lasso in that plot's 16-bit grid units) means the
    clips inside it in that model's map, drawn or not; limited to the classes shown; anything else none."""
    xy_a = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    pts = FeaturePoints(["c0", "c1", "c2", "c3"], [""] * 4, np.array([0, 1, 0, 1]), ["x", "y"],
                        xy={"A": xy_a, "B": xy_a[::-1].copy()})
    points = {"A": pts, "B": pts}
    grid = plot_coords(xy_a).astype(float)  # A's points on the grid: 0, 21845, 43690, 65535
    box = {"x": [grid[1, 0] - 1, grid[2, 0] + 1], "y": [grid[1, 1] - 1, grid[2, 1] + 1]}
    event = {"slot": "A", "seq": 3, "selection": {"box": [box], "lasso": [], "points": []}}
    assert frame_selection(event, points) == ["c1", "c2"]
    assert frame_selection(dict(event, slot="B"), points) == ["c1", "c2"]  # B's map is A's mirrored
    assert frame_selection(event, points, only_classes=[1]) == ["c1"]
    tri = {"x": [-10.0, 30000.0, -10.0], "y": [-10.0, -10.0, 30000.0]}  # a lasso round the first point only
    assert frame_selection({"slot": "A", "selection": {"box": [], "lasso": [tri]}}, points) == ["c0"]
    assert frame_selection({"slot": "A", "selection": {"box": [], "lasso": [], "points": []}}, points) == []
    for odd in (None, {}, {"slot": "C", "selection": {}}, {"slot": ["A"]}, "A", {"slot": 1}):
        assert frame_selection(odd, points) is None


def test_a_warm_up_frame_once_per_session_on_a_page_without_the_maps(analysis_env):
    """The first page a session shows gets an empty maps frame at the foot of the sidebar (the browser
    compiles plotly.js there); the next run has none, and Feature space itself never had one."""
    at = full_app().run()
    no_exceptions(at)
    warm = linked_map_args(at)
    assert [a["key"] for a in warm] == ["maps_warmup"] and warm[0]["maps"] == [] and warm[0]["warm"] is True
    at.run()
    assert linked_map_args(at) == []
    fs = page("feature_space").run()
    assert [a["key"] for a in linked_map_args(fs)] == ["fs_maps"]


def test_selection_events_are_read_from_customdata():
    event = {"selection": {"points": [{"customdata": 4, "point_index": 0}, {"customdata": [9]},
                                      {"customdata": 4.0}, {"x": 1}, {"customdata": "7"}, {"customdata": -1},
                                      {"customdata": True}, {"customdata": 2.5}]}}
    assert reported_rows(event) == [4, 9]  # once each, in report order; nothing that is not a row
    assert reported_rows(None) == [] and reported_rows({"selection": {"points": []}}) == []
    assert resolve_selection(event, np.zeros((12, 2)) + 5, [f"c{i}" for i in range(12)]) == ["c4", "c9"]
    assert resolve_selection({"selection": {"points": [{"customdata": 99}]}}, np.zeros((3, 2)), "abc") == []


def test_open_in_clip_lab_from_the_full_app(analysis_env):
    at = full_app()
    at.switch_page("views/feature_space.py").run()
    no_exceptions(at)
    at.session_state["fs_selected"] = ["synth/test/000019"]
    at.run()
    at.button(key="fs_open_synth/test/000019").click().run()
    no_exceptions(at)
    assert at.session_state["_hf_choices"]["bundle_clip"]["clip_id"] == "synth/test/000019"
    assert at.session_state["_hf_choices"]["clip_source"] == "bundle"
    assert at.session_state["_hf_selection"].clip.name == "synth/test/000019"  # opened in Clip lab
    assert not [a for a in linked_map_args(at) if a["key"] == "fs_maps"]  # we left the page: no maps frame


def test_class_lists_in_another_order_still_plot_but_cannot_restrict(tmp_path, monkeypatch):
    d = make_mismatch_dir(tmp_path / "mismatch")
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    at = page("feature_space").run()
    no_exceptions(at)
    assert any("different order" in w.value for w in at.warning)
    assert at.checkbox(key="fs_restrict").disabled
    assert len(titles(at)) == 2


def test_one_model_alone_gets_its_own_plot(tmp_path, monkeypatch, analysis_dir, no_projection_compute):
    d = tmp_path / "alone"
    d.mkdir()
    for name in ("hf_tsn_demo.safetensors", "hf_tsn_demo.test.npz"):
        (d / name).write_bytes((analysis_dir / name).read_bytes())
    for f in analysis_dir.glob("hf_tsn_demo.test.proj-*"):
        (d / f.name).write_bytes(f.read_bytes())
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    at = page("feature_space").run()
    no_exceptions(at)
    assert titles(at) == ["A · hf_tsn_demo: t-SNE of 64 clips"]
    assert at.checkbox(key="fs_restrict").disabled
    first = point_traces(specs(at)[0])[0]
    assert first["hovertext"][0].endswith("<br>A: ✓") or first["hovertext"][0].endswith(" ✗")
    at.session_state["fs_selected"] = [first["text"][0]]
    at.run()
    assert set(at.dataframe[0].value.columns) == {"clip id", "true", "A predicts"}


# --- the paper's scale: 174 classes, 2,400 clips -------------------------------------------------------

SCALE_CLIPS = 2400


@pytest.fixture(scope="module")
def scale_dir(tmp_path_factory):
    return make_scale_dir(tmp_path_factory.mktemp("scale"), SCALE_CLIPS)


@pytest.fixture()
def scale_env(scale_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(scale_dir))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HFNET_PROJECTION_SPEC", FAST_JSON)
    monkeypatch.delenv("HFNET_DATA_ROOT", raising=False)
    return scale_dir


def point_traces(spec: dict) -> list[dict]:
    """A map's traces of points: the dimmed rest (if any), then the bright (or all) points."""
    return [t for t in spec["data"] if t["name"].endswith("(dimmed)")
            or ("customdata" in t and t["name"][0] not in "✗★")]


def map_specs(at) -> list[dict]:
    return [s for s in specs(at) if str(s["layout"]["title"]["text"]).endswith(" clips")]


def main_traces(at) -> list[dict]:
    """Each map's points joined: ``x`` of all of them (dimmed or not), and of the bright ones (the class
    traces) their rows (customdata), clip ids (text) and colour values; the dimmed ones' colour values."""
    out = []
    for s in map_specs(at):
        parts = point_traces(s)
        bright = [t for t in parts if "customdata" in t]
        dimmed = [t for t in parts if "customdata" not in t]
        out.append({"x": [v for t in parts for v in _list(t["x"])],
                    "rows": [int(v) for t in bright for v in _list(t["customdata"])],
                    "ids": [i for t in bright for i in t["text"]],
                    "colour": np.asarray([v for t in bright for v in _list(t["marker"]["color"])]),
                    "dimmed_colour": np.asarray([v for t in dimmed for v in _list(t["marker"]["color"])])})
    return out


def _list(v) -> list:
    return v if isinstance(v, list) else plotly_array(v).tolist()


def n_points(trace: dict) -> int:
    x = trace["x"]
    return len(x) if isinstance(x, list) else len(plotly_array(x))


def test_scale_one_webgl_trace_per_plot_with_colour_arrays_and_no_legend(scale_env, no_projection_compute):
    at = page("feature_space").run()
    no_exceptions(at)
    plots = map_specs(at)
    assert [s["layout"]["title"]["text"] for s in plots] == [
        f"A · hf_tsn_demo: t-SNE of {SCALE_CLIPS} clips", f"B · tsn_demo: t-SNE of {SCALE_CLIPS} clips"]
    a = EvalBundle.load(scale_env / "hf_tsn_demo.test.npz")
    for s in plots:
        points = point_traces(s)
        assert len(points) == 1 and points[0]["type"] == "scattergl"  # one trace for all 2,400 points
        t = points[0]
        rows = plotly_array(t["customdata"]).astype(int)
        assert t["customdata"]["dtype"] == "i4" and sorted(rows.tolist()) == list(range(SCALE_CLIPS))
        assert len(plotly_array(t["marker"]["color"])) == n_points(t) == len(t["text"]) == len(t["hovertext"])
        assert t["marker"]["coloraxis"] == "coloraxis" and "colorscale" not in t["marker"]
        assert t["text"][:3] == [a.clip_ids[r] for r in rows[:3]] and not t["showlegend"]
        # no legend entries per class; misclassification rings off by default above 2,000 points
        assert [t["name"] for t in s["data"] if t["name"].startswith("✗")] == []
        assert not [t for t in s["data"] if t.get("showlegend") and not t["name"].startswith("★")]
        scale = s["layout"]["coloraxis"]["colorscale"]
        assert len({c for _, c in scale[:K]}) == K  # 174 distinct class colours, one scale for all traces
    assert at.multiselect(key="fs_classes").value == []
    assert at.toggle(key="fs_wrong").value is False


def test_palette_never_repeats_and_pairs_share_a_hue():
    import colorsys

    pairs = [(c, c + 1) for c in range(0, 174, 2)]
    pal = class_palette(174, pairs)
    assert len(set(pal)) == 174 and len(set(class_palette(400))) == 400

    def hls(c):
        return colorsys.rgb_to_hls(*(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)))

    for a, b in pairs:
        (ha, la, _), (hb, lb, _) = hls(pal[a]), hls(pal[b])
        assert abs(ha - hb) < 0.02 and lb - la > 0.2  # one hue, a dark and a light shade
    hues = [hls(pal[a])[0] for a, _ in pairs]
    assert min(abs(h1 - h2) for i, h1 in enumerate(hues) for h2 in hues[i + 1:]) > 0.001


def test_scale_class_picker_and_ten_most_improved(scale_env, scale_dir):
    at = page("feature_space").run()
    at.button(key="fs_top10").click().run()
    no_exceptions(at)
    a = EvalBundle.load(scale_dir / "hf_tsn_demo.test.npz")
    b = EvalBundle.load(scale_dir / "tsn_demo.test.npz")
    top = [r["class_index"] for r in most_improved(a, b, 10)]
    assert at.multiselect(key="fs_classes").value == top
    in_top = np.isin(a.labels, top)
    for trace in main_traces(at):  # the top 10 bright, the rest dimmed
        assert sorted(trace["rows"]) == np.flatnonzero(in_top).tolist() and (trace["colour"] < K).all()
        assert len(trace["dimmed_colour"]) == int((~in_top).sum()) and (trace["dimmed_colour"] >= K).all()
    at.toggle(key="fs_only").set_value(True).run()
    assert [n_points(t) for t in main_traces(at)] == [int(in_top.sum())] * 2
    at.multiselect(key="fs_classes").set_value([5]).run()
    assert [n_points(t) for t in main_traces(at)] == [int((a.labels == 5).sum())] * 2
    one = a.clip_ids[int(np.flatnonzero(a.labels == 5)[0])]
    at.session_state["fs_selected"] = [one]
    at.run()  # a selection among the shown classes: only class 5 drawn, all but the one clip dimmed
    for trace in main_traces(at):
        assert n_points(trace) == int((a.labels == 5).sum())
        assert trace["ids"] == [one] and (trace["colour"] < K).all() and (trace["dimmed_colour"] >= K).all()


def test_scale_selection_dims_the_rest_and_lists_both_predictions(scale_env, scale_dir):
    at = page("feature_space").run()
    ids = ["100007", "100500", "102399"]
    at.session_state["fs_selected"] = ids
    at.run()
    no_exceptions(at)
    for trace in main_traces(at):
        assert sorted(trace["ids"]) == sorted(ids) and (trace["colour"] < K).all()
        assert n_points(trace) == SCALE_CLIPS and len(trace["dimmed_colour"]) == SCALE_CLIPS - 3
    table = at.dataframe[0].value
    assert list(table["clip id"]) == ids and set(table.columns) == {"clip id", "true", "A predicts", "B predicts"}


def test_scale_a_big_selection_sends_a_short_table_and_offers_all_as_csv(scale_env, scale_dir):
    at = page("feature_space").run()
    a = EvalBundle.load(scale_dir / "hf_tsn_demo.test.npz")
    at.session_state["fs_selected"] = list(a.clip_ids[:1500])
    at.run()
    no_exceptions(at)
    assert at.subheader[0].value == "Selected clips (1,500)"
    assert list(at.dataframe[0].value["clip id"]) == list(a.clip_ids[:500])
    assert any("first 500 of the 1,500 selected clips" in c.value for c in at.caption)
    csv = [b for b in at.get("download_button") if b.proto.label == "Download all 1,500 as CSV"]
    assert len(csv) == 1


def test_map_figures_skip_validation_but_are_what_plotly_would_validate():
    """``map_figure`` hands out its dict without plotly's validation (~0.8 s per 25k-point figure): plotly's
    validation must accept that dict and change nothing in it, typed arrays included."""
    import plotly.graph_objects as go
    import plotly.io as pio

    from app.feature_map import FrozenFigure

    rng = np.random.default_rng(0)
    n, names = 300, [f"class {i}" for i in range(5)]
    pts = FeaturePoints([f"c{i}" for i in range(n)], [""] * n, rng.integers(0, 5, n), names,
                        xy={"A": rng.normal(size=(n, 2)).astype(np.float32)}, preds={"A": rng.integers(0, 5, n)},
                        confs={"A": rng.random(n)}, pred_names={"A": names})
    for focus in (None, np.arange(n) < 40):
        fig = map_figure(pts, "A", "a map", class_palette(5), MapOptions(show_wrong=True), focus, (0.1, 0.2))
        assert isinstance(fig, FrozenFigure)
        ours = json.loads(pio.to_json(fig, validate=False))
        theirs = json.loads(pio.to_json(go.Figure(fig.to_dict()), validate=False))  # validated
        assert ours == theirs
        main = next(t for t in ours["data"] if "customdata" in t)
        assert main["x"]["dtype"] == "u2" and main["customdata"]["dtype"] == "i4"
        np.testing.assert_array_equal(plotly_array(main["customdata"]), np.flatnonzero(focus if focus is not None
                                                                                      else np.ones(n, bool)))


def test_hover_text_and_the_csv_keep_odd_names_as_text():
    """Clip ids and class names are text in the hover (plotly renders a subset of HTML) and in the CSV."""
    names = ["<b>bold</b> & co", "100%{x} done", "plain"]
    pts = FeaturePoints(["a<br>1", "b,2", 'c"3'], ["", "", ""], np.array([0, 1, 2]), names,
                        xy={"A": np.arange(6, dtype=np.float32).reshape(3, 2)}, preds={"A": np.array([1, 1, 2])},
                        confs={"A": np.array([0.5, 0.9, 1.0])}, pred_names={"A": names})
    spec = json.loads(map_figure(pts, "A", "t", class_palette(3), MapOptions()).to_json())
    (main,) = point_traces(spec)
    assert main["text"] == ["a&lt;br&gt;1", "b,2", 'c"3']
    assert main["hovertext"][0] == "&lt;b&gt;bold&lt;/b&gt; &amp; co<br>A: 100%\u200b{x} done ✗"
    assert main["hovertext"][2] == "plain<br>A: ✓"
    rows = selected_rows_table(pts, ["b,2", "a<br>1", "nope"])
    csv = selected_rows_csv(rows).splitlines()
    assert csv[0] == "clip id,true,A predicts" and len(csv) == 3
    assert csv[1] == '"b,2",100%{x} done,100%{x} done (90 %)' and csv[2].startswith("a<br>1,<b>bold</b> & co,")
    assert selected_rows_csv([]) == ""


def test_maps_are_drawn_on_a_16_bit_grid_that_selections_come_back_in():
    rng = np.random.default_rng(3)
    xy = rng.normal(0, 40, (500, 2)).astype(np.float32)
    grid = plot_coords(xy)
    assert grid.dtype == np.uint16 and grid.min(axis=0).tolist() == [0, 0] and grid.max(axis=0).tolist() == [65535] * 2
    back = grid / 65535.0 * (xy.max(axis=0) - xy.min(axis=0)) + xy.min(axis=0)
    assert np.abs(back - xy).max() <= (xy.max() - xy.min()) / 65535  # within one grid step
    np.testing.assert_array_equal(np.argsort(grid[:, 0], kind="stable"), np.argsort(np.rint(
        (xy[:, 0].astype(np.float64) - xy[:, 0].min()) * 65535 / np.ptp(xy[:, 0])), kind="stable"))
    names = ["a", "b"]
    pts = FeaturePoints([f"c{i}" for i in range(500)], [""] * 500, np.arange(500) % 2, names, xy={"A": xy},
                        preds={"A": np.zeros(500, int)}, confs={"A": np.ones(500)}, pred_names={"A": names})
    star = (float(xy[7, 0]), float(xy[7, 1]))
    spec = json.loads(map_figure(pts, "A", "t", class_palette(2), MapOptions(), marker=star).to_json())
    (main,) = point_traces(spec)
    assert main["x"]["dtype"] == "u2" and main["y"]["dtype"] == "u2"
    rows = plotly_array(main["customdata"]).astype(int)
    np.testing.assert_array_equal(plotly_array(main["x"]), grid[rows, 0])
    (marker,) = [t for t in spec["data"] if t["name"].startswith("★")]
    assert abs(marker["x"][0] - grid[7, 0]) <= 0.5 and abs(marker["y"][0] - grid[7, 1]) <= 0.5
    box = {"selection": {"points": [], "box": [{"x": [0, 32767], "y": [0, 65535]}]}}
    assert resolve_selection(box, grid, pts.clip_ids) == [c for c, g in zip(pts.clip_ids, grid) if g[0] <= 32767]
    assert plot_coords(np.zeros((0, 2))).shape == (0, 2) and plot_coords(np.ones((3, 2))).tolist() == [[0, 0]] * 3


def test_scale_misclassification_rings_and_thinning(scale_env, scale_dir):
    at = page("feature_space").run()
    at.toggle(key="fs_wrong").set_value(True).run()
    no_exceptions(at)
    a = EvalBundle.load(scale_dir / "hf_tsn_demo.test.npz")
    wrong = int((a.predictions != a.labels).sum())
    rings = [t for t in specs(at)[0]["data"] if t["name"].startswith("✗")]
    assert [t["name"] for t in rings] == [f"✗ A is wrong ({wrong:,})"]
    assert rings[0]["marker"]["symbol"] == "circle-open" and n_points(rings[0]) == wrong
    at.toggle(key="fs_sample").set_value(True).run()
    at.number_input(key="fs_max_points").set_value(1000).run()
    no_exceptions(at)
    for trace in main_traces(at):
        rows = np.asarray(trace["rows"])
        assert n_points(trace) <= 1000 and len(set(a.labels[rows])) == K  # every class keeps a point


def test_selection_resolves_boxes_and_lassos_on_the_full_set():
    xy = np.array([[0, 0], [1, 1], [2, 2], [0.5, 1.5], [3, 0]], dtype=float)
    ids = ["a", "b", "c", "d", "e"]
    box = {"selection": {"points": [], "box": [{"x": [0.8, 2.5], "y": [0.5, 2.5]}], "lasso": []}}
    assert resolve_selection(box, xy, ids) == ["b", "c"]  # d lies left of the box
    lasso = {"selection": {"points": [{"customdata": 4}], "box": [],
                           "lasso": [{"x": [-1, 1.5, 0.6, -1], "y": [-1, 0.5, 2, 2]}]}}
    assert resolve_selection(lasso, xy, ids) == ["a", "b", "d", "e"]  # e: reported by the chart
    assert resolve_selection(box, xy, ids, among=np.array([1, 0, 1, 1, 1], bool)) == ["c"]  # b not shown
    labels = np.repeat(np.arange(10), [1, 2, 3, 50, 50, 50, 50, 50, 50, 194])
    keep = stratified_rows(labels, 100)
    assert len(keep) <= 100 and set(labels[keep]) == set(range(10))
    np.testing.assert_array_equal(stratified_rows(labels, 1000), np.arange(len(labels)))


def test_scale_current_clip_is_a_star_in_both_maps_with_its_neighbours(scale_env):
    at = page("feature_space").run()
    no_exceptions(at)
    stars = [[t for t in s["data"] if t["name"].startswith("★")] for s in specs(at)[:2]]
    assert [len(s) for s in stars] == [1, 1] and stars[0][0]["marker"]["symbol"] == "star"
    clip_name = at.session_state["_hf_selection"].clip.name
    assert any(h.value == f"Nearest clips to {clip_name}" for h in at.subheader)
    tables = [d.value for d in at.dataframe]
    assert len(tables) == 2
    for t in tables:
        assert len(t) == 10 and {"clip id", "true", "A predicts", "B predicts", "distance"} <= set(t.columns)
        assert list(t["distance"]) == sorted(t["distance"])
    at.toggle(key="fs_show_clip").set_value(False).run()
    assert not [t for s in specs(at) for t in s["data"] if t["name"].startswith("★")]


def test_scale_clip_lab_places_the_clip_too(scale_env):
    at = page("clip_lab").run()
    no_exceptions(at)
    assert not [p for p in at.get("plotly_chart") if p.key and p.key.startswith("clip_map")]  # opt-in
    at.toggle(key="cl_clip_map").set_value(True).run()
    no_exceptions(at)
    maps = [s for s in specs(at) if "t-SNE" in str(s["layout"].get("title", {}).get("text", ""))]
    assert len(maps) == 2 and all(any(t["name"].startswith("★") for t in s["data"]) for s in maps)
    tables = [d.value for d in at.dataframe if "distance" in d.value.columns]
    assert len(tables) == 2 and all(len(t) == 10 for t in tables)


@pytest.fixture()
def thread_pool(monkeypatch):
    pool = jobs.JobPool(workers=1, mode="thread")
    monkeypatch.setattr(jobs, "_shared", pool)
    yield pool
    pool.shutdown()


def test_scale_missing_projections_start_a_job_with_progress_and_the_page_works(tmp_path, monkeypatch,
                                                                                thread_pool):
    d = make_scale_dir(tmp_path / "fresh", SCALE_CLIPS, projections=False)
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HFNET_PROJECTION_SPEC", FAST_JSON)
    release, calls = threading.Event(), []

    def slow_job(ctx, bundle_path, spec, clip_ids, methods, parallel=None):
        calls.append((bundle_path, sorted(methods)))
        ctx.progress(0.4, "t-SNE")
        if not release.wait(60):
            raise RuntimeError("never released")
        store_projections(type(d)(bundle_path), tsne=False)
        return {"path": "", "methods": list(methods), "computed": list(methods)}

    monkeypatch.setattr(pre, "projection_job", slow_job)
    at = page("feature_space")
    at.run()
    no_exceptions(at)
    deadline = time.time() + 30
    while len(calls) < 1 and time.time() < deadline:
        time.sleep(0.05)
    at.run()
    bars = [p.proto.text for p in at.get("progress")]
    assert len(bars) == 2
    assert "A · hf_tsn_demo: projections of 2,400 clips, t-SNE (about" in bars[0]
    assert "queue position 1" in bars[1]  # one worker: B waits behind A
    assert any("in the background" in i.value for i in at.info)
    assert len({c[0] for c in calls}) == 1 and calls[0][1] == ["pca", "tsne", "umap"]
    assert not map_specs(at)
    at.button(key="fs_top10").click().run()  # the rest of the page works meanwhile
    no_exceptions(at)
    assert len(at.multiselect(key="fs_classes").value) == 10
    release.set()
    for n in ("hf_tsn_demo", "tsn_demo"):
        status = thread_pool.wait(pre.projection_job_key(d / f"{n}.test.npz", FAST), timeout=120)
        assert status.state == "done", status.error
    at.run()
    no_exceptions(at)
    assert not at.get("progress")
    assert len(main_traces(at)) == 2 and all(n_points(t) == SCALE_CLIPS for t in main_traces(at))


def test_scale_a_failed_job_says_why_and_offers_a_retry(tmp_path, monkeypatch, thread_pool):
    d = make_scale_dir(tmp_path / "broken", 400, projections=False)
    monkeypatch.setenv("HFNET_CHECKPOINT_DIR", str(d))
    monkeypatch.setenv("HFNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HFNET_PROJECTION_SPEC", FAST_JSON)

    def broken(ctx, **kwargs):
        raise ValueError("the features contain NaN")

    monkeypatch.setattr(pre, "projection_job", broken)
    at = page("feature_space").run()
    for n in ("hf_tsn_demo", "tsn_demo"):
        thread_pool.wait(pre.projection_job_key(d / f"{n}.test.npz", FAST), timeout=60)
    at.run()
    no_exceptions(at)
    assert any("the features contain NaN" in e.value for e in at.error)
    assert at.button(key="fs_retry_A").label == "Try the projections of A · hf_tsn_demo again"


def test_a_bundle_clip_keeps_its_stored_place_and_an_outside_clip_is_placed_by_its_features(scale_dir):
    from app.feature_map import clip_placement
    from hfnet_core.analysis.projection_store import load_set

    path = scale_dir / "hf_tsn_demo.test.npz"
    bundle, ps = EvalBundle.load(path), load_set(path, FAST)
    at_home = clip_placement(ps, bundle, bundle.clip_ids[7], None)
    np.testing.assert_array_equal(at_home.coords["tsne"][0], ps.coords["tsne"][7])
    np.testing.assert_array_equal(at_home.neighbour_rows[0], ps.rows[ps.knn_indices[7][:10]])
    assert 7 not in at_home.neighbour_rows[0]
    outside = clip_placement(ps, bundle, "not-in-the-bundle", bundle.features[7])
    assert outside.neighbour_rows[0][0] == 7 and outside.neighbour_distances[0][0] < 1e-2
    assert set(outside.coords) == {"tsne", "umap", "pca"}
    with pytest.raises(BundleError, match="dimensions"):
        clip_placement(ps, bundle, None, np.ones(12, np.float32))


def test_no_folder_for_the_maps_frame_is_one_clear_error_and_the_page_goes_on(analysis_env, monkeypatch):
    from app import linked_maps as lm

    def no_folder():
        raise OSError("no folder for Feature space's maps page (/x: Read-only file system); set HFNET_CACHE_DIR")

    monkeypatch.setattr(lm, "_served", no_folder)
    at = page("feature_space").run()
    no_exceptions(at)
    assert any("The maps cannot be drawn: no folder for Feature space's maps page" in e.value for e in at.error)
    assert at.subheader[0].value == "Selected clips (0)"  # the rest of the page still works
