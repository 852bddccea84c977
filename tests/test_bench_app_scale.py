"""The pure helpers of benchmarks/bench_app_scale.py: target checks, the memory slope, the JSON writer,
the error-recording step. Nothing here starts a server or times anything."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_app_scale as bench  # noqa: E402


def _entry(project=50.0, usable=2.0, sel=1.0, sel_mb=0.5, per_session=20.0):
    return {"project": {"bundle_a_s": project},
            "pages": {"feature_space": {"usable_s": usable}},
            "feature_space": {"selection": {"latency_s": sel, "ws_mb": sel_mb}},
            "sessions": {"mb_per_extra_session": per_session}}


def test_per_extra_session_is_the_least_squares_slope():
    rows = [{"sessions": 5, "server_rss_mb": 1200.0}, {"sessions": 1, "server_rss_mb": 1000.0},
            {"sessions": 10, "server_rss_mb": 1450.0}, {"sessions": 2, "error": "timeout"}]
    assert bench.per_extra_session(rows) == 50.0  # 1000 + 50 MB per session beyond the first
    rows[0]["server_rss_mb"] = 1260.0  # off the line: slope of (1,1000), (5,1260), (10,1450)
    want = np.polyfit([1, 5, 10], [1000.0, 1260.0, 1450.0], 1)[0]
    assert bench.per_extra_session(rows) == pytest.approx(want, abs=0.01)
    assert bench.per_extra_session(rows[:1]) is None
    assert bench.per_extra_session([{"sessions": 3, "server_rss_mb": 1.0}] * 2) is None


def test_check_targets_pass_fail_and_missing():
    sizes = {"24777": _entry(project=61.0, usable=3.0, sel=2.0, sel_mb=1.0, per_session=12.0),
             "11522": {"project": {"error": "boom"}, "pages": {"feature_space": {"error": "x"}}}}
    checks = {(c["target"], c["size"]): c for c in bench.check_targets(sizes)}
    assert len(checks) == 2 * len(bench.TARGETS)
    big = {t: checks[(t, 24777)] for t in bench.TARGETS}
    assert big["project_s"]["pass"] is False and big["project_s"]["measured"] == 61.0
    assert big["feature_space_usable_s"]["pass"] is True  # <= is a pass
    assert big["selection_s"]["pass"] is False
    assert big["selection_payload_mb"]["pass"] is True
    assert big["mb_per_extra_session"]["pass"] is True
    assert all(c["binding"] for c in big.values())
    small = [c for (t, size), c in checks.items() if size == 11522]
    assert all(c["pass"] is None and c["measured"] is None and not c["binding"] for c in small)
    assert [c["size"] for c in bench.check_targets(sizes)][:2] == [11522, 24777]  # sorted by size


def test_write_json_is_complete_and_atomic(tmp_path):
    path = bench.write_json({"sizes": {"2000": _entry()}, "mode": "quick"}, tmp_path)
    assert path == tmp_path / "app_scale.json"
    data = json.loads(path.read_text())
    assert data["benchmark"] == "app_scale" and data["mode"] == "quick"
    assert data["machine"]["cpu_count"] >= 1
    assert data["targets"] == json.loads(json.dumps(bench.TARGETS))
    assert {c["target"] for c in data["checks"]} == set(bench.TARGETS)
    assert not list(tmp_path.glob("*.tmp*"))  # nothing left beside it
    assert "hfnet project" in bench.table(data) and "target project_s" in bench.table(data)


def test_step_records_an_error_and_goes_on(capsys):
    entry: dict = {}
    assert bench.step(entry, "ok", lambda: {"v": 1}) == {"v": 1}

    def fails():
        raise TimeoutError("not usable after 3 s\nsecond line")

    out = bench.step(entry, "bad", fails)
    assert entry["bad"] is out and out["error"] == "TimeoutError: not usable after 3 s"
    assert entry["ok"] == {"v": 1}
    with pytest.raises(KeyboardInterrupt):  # an interrupt is not swallowed: the run stops and cleans up
        bench.step(entry, "stop", lambda: (_ for _ in ()).throw(KeyboardInterrupt()))


def test_selectors_live_in_one_place():
    assert {p[0] for p in bench.PAGES} == {"clip_lab", "feature_space", "class_comparison", "attributions",
                                           "model_cards", "gate_maps"}
    import re

    assert int(re.search(bench.SELECTED_HEADER, "Selected clips (1,234)", re.I).group(1).replace(",", "")) == 1234
    # the button's accessible name (Streamlit marks its material icon aria-hidden)
    for name in ("Compute Grad-CAM", "Compute Integrated Gradients (32 steps)"):
        assert re.search(bench.COMPUTE_BUTTON, name)
    assert not re.search(bench.COMPUTE_BUTTON, "Recompute nothing")


def test_table_reports_the_attributions_compute_step():
    entry = dict(_entry(), attributions_compute={"first_map_s": 12.5, "all_maps_s": 20.1, "ws_mb": 0.8})
    line = next(x for x in bench.table({"sizes": {"11522": entry}}).splitlines() if "Compute" in x)
    assert "first map 12.5 s" in line and "all 20.1 s" in line


def test_history_survives_a_rerun(tmp_path):
    assert bench.kept_history(tmp_path / "missing.json") == {}
    path = bench.write_json({"sizes": {}, "before_rewrite": {"sizes": {"11522": {"x": 1}}}, "other": 2}, tmp_path)
    assert bench.kept_history(path) == {"before_rewrite": {"sizes": {"11522": {"x": 1}}}}


def test_previous_sizes_for_merge(tmp_path):
    assert bench.previous_sizes(tmp_path / "missing.json") == {}
    (tmp_path / "bad.json").write_text("{not json")
    assert bench.previous_sizes(tmp_path / "bad.json") == {}
    path = bench.write_json({"sizes": {"11522": _entry(), "24777": dict(_entry(), measured_on="earlier")}}, tmp_path)
    old = bench.previous_sizes(path)
    assert set(old) == {"11522", "24777"}
    assert old["24777"]["measured_on"] == "earlier"
    assert old["11522"]["measured_on"] == json.loads(path.read_text())["date"]


def test_a_memory_slope_over_falling_rss_is_not_a_pass():
    entry = _entry(per_session=-13.5)
    entry["sessions"]["rows"] = [{"sessions": 1, "server_rss_mb": 1386.0}, {"sessions": 5, "server_rss_mb": 1499.0},
                                 {"sessions": 10, "server_rss_mb": 1284.0}]
    check = next(c for c in bench.check_targets({"24777": entry}) if c["target"] == "mb_per_extra_session")
    assert check["pass"] is None and "fell" in check["note"]
    entry["sessions"]["rows"][2]["server_rss_mb"] = 1600.0
    check = next(c for c in bench.check_targets({"24777": entry}) if c["target"] == "mb_per_extra_session")
    assert check["pass"] is True and "note" not in check
    # a dip of a few MB (the allocator) is noise: 990.3 -> 984.7 -> 1069.2 -> 1180.7 was measured here
    entry = _entry(per_session=22.46)
    entry["sessions"]["rows"] = [{"sessions": n, "server_rss_mb": v}
                                 for n, v in ((1, 990.3), (2, 984.7), (5, 1069.2), (10, 1180.7))]
    check = next(c for c in bench.check_targets({"24777": entry}) if c["target"] == "mb_per_extra_session")
    assert check["pass"] is True and "note" not in check
    entry["sessions"]["rows"][1]["server_rss_mb"] = 975.0  # 15 MB given back: not noise any more, but from
    # 2 sessions on RSS only grows (the browsing first session's leftovers went): that slope decides
    check = next(c for c in bench.check_targets({"24777": entry}) if c["target"] == "mb_per_extra_session")
    tail = np.polyfit([2, 5, 10], [975.0, 1069.2, 1180.7], 1)[0]
    assert check["pass"] is True and f"from 2 sessions on it only grows, at {tail:.1f} MB" in check["note"]
    entry["sessions"]["rows"][3]["server_rss_mb"] = 1400.0  # steep after the fall: the tail fails the target
    check = next(c for c in bench.check_targets({"24777": entry}) if c["target"] == "mb_per_extra_session")
    assert check["pass"] is False
    entry["sessions"]["rows"][2]["server_rss_mb"] = 960.0  # a second fall: two counts left, nothing to fit
    check = next(c for c in bench.check_targets({"24777": entry}) if c["target"] == "mb_per_extra_session")
    assert check["pass"] is None and "more than 10 MB" in check["note"]
