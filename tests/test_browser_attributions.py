"""Attributions in a real headless Chromium with the real shared pool (a worker process): nothing before the
button, a map with its colour bar after it, "cached" when asked again, and Cancel; meanwhile another session's
page answers. Helpers and skips come from ``test_browser``."""

from __future__ import annotations

import pytest

from _app_fixtures import demo_dir  # noqa: F401
from test_browser import ARTIFACTS, _browser, _no_exception, _open, _streamlit, _wait_idle, pytestmark  # noqa: F401


@pytest.fixture(scope="module")
def server(demo_dir, tmp_path_factory):  # noqa: F811
    mp = pytest.MonkeyPatch()
    mp.setenv("HFNET_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    mp.setenv("HFNET_JOB_MODE", "process")
    try:
        with _streamlit(demo_dir, "streamlit_attributions.log") as url:
            yield url
    finally:
        mp.undo()


def test_attributions_on_request_with_a_colour_bar_cached_and_cancel(server):
    with _browser(1400, 2200) as page:
        try:
            _open(page, server + "/attributions")
            main = page.get_by_test_id("stMain")
            main.get_by_role("button", name="Compute Grad-CAM").wait_for()
            _wait_idle(page)
            assert main.get_by_text("not computed yet").count() == 2
            assert page.locator('[data-testid="stMain"] .js-plotly-plot').count() == 0

            main.get_by_role("button", name="Compute Grad-CAM").click()
            page.wait_for_function(
                "document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot .colorbar').length >= 2",
                timeout=120_000)  # both maps, each with its colour bar
            main.get_by_text("computed in", exact=False).first.wait_for()
            _wait_idle(page)
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser_attributions.png"), full_page=True)

            # IG with many steps: progress, and Cancel stops it
            main.get_by_role("combobox", name="Method").click()
            page.get_by_role("option", name="Integrated Gradients").click()
            main.get_by_role("button", name="Compute Integrated Gradients (16 steps)").wait_for()
            main.get_by_role("button", name="Compute Integrated Gradients (16 steps)").click()
            main.get_by_role("button", name="Cancel").wait_for(timeout=30_000)
            # a progress bar (running) or a queue position (waiting for the worker): polled, so wait for it
            page.wait_for_function(
                "document.querySelectorAll('[data-testid=\"stProgress\"]').length >= 1"
                " || document.body.innerText.includes('in the queue')", timeout=60_000)
            main.get_by_role("button", name="Cancel").click()
            main.get_by_text("cancelled. Press the button").first.wait_for(timeout=60_000)
            _no_exception(page)

            # back to Grad-CAM: read again, and said to be cached
            main.get_by_role("combobox", name="Method").click()
            page.get_by_role("option", name="Grad-CAM").click()
            main.get_by_text("cached (computed on", exact=False).first.wait_for(timeout=60_000)
            _no_exception(page)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_attributions_failure.png"), full_page=True)
            raise
