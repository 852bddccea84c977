"""End to end in a real headless Chromium: the explorer as users see it.

Starts ``streamlit run app/streamlit_app.py`` on a free local port (fixture checkpoints), drives it with
Playwright and Debian's ``/usr/bin/chromium`` (never ``playwright install``), and saves screenshots to
``test-artifacts/``. Skipped when chromium or playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _app_fixtures import demo_dir  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("HFNET_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_dir):  # noqa: F811
    port = _free_port()
    env = dict(os.environ, HFNET_CHECKPOINT_DIR=str(demo_dir), PYTHONUNBUFFERED="1")
    env.pop("HFNET_DATA_ROOT", None)
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    log = open(ARTIFACTS.joinpath("streamlit.log") if ARTIFACTS.mkdir(exist_ok=True) is None else os.devnull, "w")
    proc = subprocess.Popen(
        [streamlit, "run", str(ROOT / "app" / "streamlit_app.py"), "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 45
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start (see {ARTIFACTS / 'streamlit.log'})")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _no_exception(page) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()


def test_explorer_end_to_end(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    t0 = time.time()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(40_000)
        try:
            page.goto(server)
            page.get_by_role("heading", name="Clip lab").wait_for()
            main = page.get_by_test_id("stMain")
            sidebar = page.get_by_test_id("stSidebar")

            # 1. pick a sample clip; both models' predictions appear
            sidebar.get_by_role("combobox", name="Sample").click()
            page.get_by_role("option", name="Holding something still (#6)").click()
            main.get_by_text("Holding something still (#6)").wait_for()
            main.get_by_role("heading", name="A · hf_tsn_demo").wait_for()
            main.get_by_role("heading", name="B · tsn_demo").wait_for()
            page.wait_for_function("document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 2")
            assert main.get_by_text("True label: Holding something still").count() == 1
            assert main.get_by_text("Both models say").count() + main.get_by_text("The models disagree").count() == 1
            assert sidebar.get_by_text("Device:").count() == 1  # the sidebar survives reruns
            _no_exception(page)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "browser_clip_lab.png"), full_page=True)

            # 2. Gate maps
            sidebar.get_by_role("link", name="Gate maps").click()
            main.get_by_role("heading", name="Layer by layer").wait_for()
            page.wait_for_function("document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 3")
            _no_exception(page)
            page.wait_for_timeout(800)
            page.screenshot(path=str(ARTIFACTS / "browser_gate_maps.png"), full_page=True)

            # 3. Feature space (part B's page) renders without an exception
            sidebar.get_by_role("link", name="Feature space").click()
            main.get_by_role("heading").first.wait_for()
            page.wait_for_function(
                "!document.querySelector('[data-testid=\"stStatusWidget\"]') || "
                "!document.querySelector('[data-testid=\"stStatusWidget\"]').innerText.includes('Running')",
                timeout=60_000)
            page.wait_for_timeout(1500)
            _no_exception(page)
            assert "Traceback" not in main.inner_text()
            page.screenshot(path=str(ARTIFACTS / "browser_feature_space.png"), full_page=True)

            # 4. a corrupt upload gives a specific error, and the app keeps working
            sidebar.get_by_role("link", name="Clip lab").click()
            main.get_by_role("heading", name="Clip lab").wait_for()
            sidebar.get_by_text("Upload a video").click()
            sidebar.locator('input[type="file"]').set_input_files(
                files=[{"name": "broken.mp4", "mimeType": "video/mp4", "buffer": b"\x00garbage" * 200}])
            main.get_by_text("broken.mp4: this is not a video file").wait_for()
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser_upload_error.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    assert time.time() - t0 < 90
