"""End to end in a real headless Chromium: the explorer as users see it.

Starts ``streamlit run app/streamlit_app.py`` on a free local port (fixture checkpoints), drives it with
Playwright and Debian's ``/usr/bin/chromium`` (never ``playwright install``), and saves screenshots to
``test-artifacts/``. Skipped when chromium or playwright is missing.
"""

from __future__ import annotations

import contextlib
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


@contextlib.contextmanager
def _streamlit(ckpt_dir: Path, log_name: str):
    """``streamlit run app/streamlit_app.py`` on a free local port; yields its URL once healthy."""
    port = _free_port()
    env = dict(os.environ, HFNET_CHECKPOINT_DIR=str(ckpt_dir), PYTHONUNBUFFERED="1")
    env.pop("HFNET_DATA_ROOT", None)
    streamlit = shutil.which("streamlit", path=str(Path(sys.executable).parent)) or "streamlit"
    ARTIFACTS.mkdir(exist_ok=True)
    with open(ARTIFACTS / log_name, "w") as log:
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
                    raise RuntimeError(f"streamlit did not start (see {ARTIFACTS / log_name})")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def server(demo_dir):  # noqa: F811
    with _streamlit(demo_dir, "streamlit.log") as url:
        yield url


@contextlib.contextmanager
def _browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2600})
            page.set_default_timeout(40_000)
            yield page
        finally:
            browser.close()


def _no_exception(page) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()


_BUSY = ("!!document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"], [data-testid=\"stSkeleton\"], "
         "[data-testid=\"stSpinner\"]')")


def _wait_idle(page, timeout_ms: float = 40_000, quiet_ms: int = 1500) -> None:
    """Until the app has been idle (no running indicator, skeleton or spinner) for ``quiet_ms``."""
    deadline = time.time() + timeout_ms / 1000
    quiet_since = None
    while time.time() < deadline:
        if page.evaluate(_BUSY):
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif (time.time() - quiet_since) * 1000 >= quiet_ms:
            return
        page.wait_for_timeout(150)
    raise TimeoutError(f"the app was still busy after {timeout_ms / 1000:.0f} s")


def test_explorer_end_to_end(server):
    t0 = time.time()
    with _browser() as page:
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
            _wait_idle(page)
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser_clip_lab.png"), full_page=True)

            # 2. Gate maps
            sidebar.get_by_role("link", name="Gate maps").click()
            main.get_by_role("heading", name="Layer by layer").wait_for()
            page.wait_for_function("document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 3")
            main.get_by_text("Map opacity over the frame").wait_for()
            _wait_idle(page)
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser_gate_maps.png"), full_page=True)

            # 3. Feature space (part B's page) renders without an exception
            sidebar.get_by_role("link", name="Feature space").click()
            main.get_by_role("heading", name="Feature space").wait_for()
            _wait_idle(page, 60_000)
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
            assert sidebar.get_by_text("broken.mp4: this is not a video file").count() == 1
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser_upload_error.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_failure.png"), full_page=True)
            raise
    assert time.time() - t0 < 90


def test_first_request_to_a_page_url(demo_dir):  # noqa: F811
    """A bookmark to a page as the server's very first request still gets the navigation and sidebar.

    (The pages live in app/views/, so Streamlit never enters its legacy pages-folder mode, where such a
    request would run the page file on its own.)
    """
    with _streamlit(demo_dir, "streamlit_direct.log") as url, _browser() as page:
        page.goto(url + "/model_cards")
        main, sidebar = page.get_by_test_id("stMain"), page.get_by_test_id("stSidebar")
        main.get_by_role("heading", name="Model cards").wait_for()
        sidebar.get_by_text("Device:").wait_for()  # the entry script's sidebar ran
        assert sidebar.get_by_role("link", name="Clip lab").count() == 1  # our navigation, not the legacy one
        assert sidebar.get_by_role("link", name="streamlit app").count() == 0
        _wait_idle(page)
        _no_exception(page)
        page.screenshot(path=str(ARTIFACTS / "browser_model_cards_direct_url.png"), full_page=True)


def test_concurrent_sessions(server):
    """Several browser sessions of one server at the same time (each runs in its own server thread, all
    share the cached models): each shows its own sample, and equal samples get equal predictions."""
    samples = ["Holding something still (#6)", "Moving something from left to right (#0)"] * 2
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            pages = [browser.new_context(viewport={"width": 1400, "height": 1600}).new_page() for _ in samples]
            for page in pages:
                page.set_default_timeout(60_000)
                page.goto(server, wait_until="commit")  # all sessions start before any is waited for
            for page in pages:
                page.get_by_test_id("stSidebar").get_by_role("combobox", name="Sample").wait_for()
            for page, sample in zip(pages, samples):  # every choice is sent before any result is read
                page.get_by_test_id("stSidebar").get_by_role("combobox", name="Sample").click()
                page.get_by_role("option", name=sample).click()
            verdicts = []
            for page, sample in zip(pages, samples):
                main = page.get_by_test_id("stMain")
                main.get_by_text(sample).first.wait_for()
                _wait_idle(page)
                _no_exception(page)
                verdicts.append(main.get_by_test_id("stAlert").first.inner_text())
        finally:
            browser.close()
    assert verdicts[0] == verdicts[2] and verdicts[1] == verdicts[3], verdicts
