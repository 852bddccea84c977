"""End to end in a real headless Chromium: the explorer as users see it.

Starts ``streamlit run app/streamlit_app.py`` on a free local port (fixture checkpoints), drives it with
Playwright and Debian's ``/usr/bin/chromium`` (never ``playwright install``), and saves screenshots to
``test-artifacts/``. Skipped when chromium or playwright is missing.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from _app_fixtures import demo_dir, multitask_dir, operator_dir  # noqa: F401

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
def _browser(width: int = 1400, height: int = 2600):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(40_000)
            yield page
        finally:
            browser.close()


def _open(page, url: str) -> None:
    """Go to ``url`` and wait until the explorer's header is drawn (the first run of a session loads the
    models and the clip: on a busy 2-core machine that can take most of a minute)."""
    page.goto(url)
    page.locator(".hf-header").first.wait_for(timeout=120_000)


def _no_exception(page) -> None:
    exc = page.locator('[data-testid="stException"]')
    assert exc.count() == 0, exc.first.inner_text()


_BUSY = ("!!document.querySelector('[data-testid=\"stStatusWidgetRunningIcon\"], [data-testid=\"stSkeleton\"], "
         "[data-testid=\"stSpinner\"]') || Array.from(document.querySelectorAll('iframe')).some(f => {"
         " try { const b = f.contentDocument && f.contentDocument.body; return !!b && b.dataset.busy === '1'; }"
         " catch (e) { return false; } })")  # a component frame still drawing (Feature space's maps)
#: Feature space's maps frame (``app.linked_maps``) and, in JS, the document inside it (same origin).
MAPS_FRAME = '[data-testid="stMain"] iframe[title$="linked_maps"]'
MAPS_DOC = f"((document.querySelector('{MAPS_FRAME}') || {{}}).contentDocument || document.createElement('div'))"


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
    with _browser() as page:
        try:
            _open(page, server)
            page.get_by_role("heading", name="Clip lab").wait_for()
            main = page.get_by_test_id("stMain")
            sidebar = page.get_by_test_id("stSidebar")

            # 1. pick a sample clip; both models' predictions appear
            sidebar.get_by_role("combobox", name="Sample").click()
            page.get_by_role("option", name="Holding something still (#6)").click()
            main.get_by_text("Holding something still (#6)").wait_for()
            main.get_by_text("A · hf_tsn_demo", exact=True).wait_for()
            main.get_by_text("B · tsn_demo", exact=True).wait_for()
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
            main.get_by_text("Overlay strength").wait_for()
            _wait_idle(page)
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser_gate_maps.png"), full_page=True)

            # 3. Feature space renders without an exception
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


def test_guided_tour(server):
    """The three steps of the tour, as a new user clicks them: a clip, the clip backwards, the gate maps."""
    with _browser(1280, 800) as page:
        try:
            _open(page, server)
            main = page.get_by_test_id("stMain")
            main.get_by_role("button", name="▶ Guided tour (3 steps)").click()
            main.get_by_text("Tour 1/3").wait_for()
            _wait_idle(page)
            page.screenshot(path=str(ARTIFACTS / "browser_tour_1.png"))
            problems = page.evaluate(_OVERFLOW_JS)
            main.get_by_role("button", name="Next: play it backwards →").click()
            main.get_by_text("Tour 2/3").wait_for()
            main.get_by_text("max |Δlogit|").first.wait_for()
            _wait_idle(page)
            assert "rev=1" in page.url
            page.screenshot(path=str(ARTIFACTS / "browser_tour_2.png"))
            problems += page.evaluate(_OVERFLOW_JS)
            main.get_by_role("button", name="Next: gate maps →").click()
            main.get_by_text("Tour 3/3").wait_for()
            page.wait_for_url("**/gate_maps?**")
            page.wait_for_function("document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 1")
            _wait_idle(page)
            assert page.locator(".js-plotly-plot .annotation-text", has_text="backwards").count() >= 1
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "browser_tour_3.png"))
            problems += page.evaluate(_OVERFLOW_JS)
            assert not problems, problems  # the tour's buttons and texts fit too
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_failure_tour.png"), full_page=True)
            raise


def test_reload_restores_the_selection(server):
    """What was chosen is in the URL: a reload (a new session) comes back to the same page, clip, reversal
    and layer; the same link in a fresh browser does too."""
    with _browser(1280, 1400) as page:
        try:
            _open(page, server)
            main, sidebar = page.get_by_test_id("stMain"), page.get_by_test_id("stSidebar")
            sidebar.get_by_role("combobox", name="Sample").click()
            page.get_by_role("option", name="Squeezing something (#5)").click()
            main.get_by_text("Squeezing something (#5)").first.wait_for()
            main.get_by_text("Play the clip backwards too").click()
            main.get_by_text("max |Δlogit|").first.wait_for()
            sidebar.get_by_role("link", name="Gate maps").click()
            main.get_by_role("heading", name="Layer by layer").wait_for()
            main.get_by_test_id("stButtonGroup").get_by_role("radio", name=re.compile(r"^3b\b")).click()
            page.wait_for_url("**layer=inception_3b**")
            _wait_idle(page)
            link = page.url
            assert "/gate_maps?" in link and "rev=1" in link and "clip=12_squeezing_sth.mp4" in link
            page.reload()
            main.get_by_role("heading", name="Layer by layer").wait_for()
            _wait_idle(page)
            assert page.url == link
            toggle = main.get_by_role("switch", name="Backwards too (side by side)")
            assert toggle.is_checked()
            assert main.get_by_test_id("stButtonGroup").locator('[aria-checked="true"]').inner_text().startswith("3b")
            assert main.get_by_text("Squeezing something (#5)").count() >= 1
            _no_exception(page)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_failure_reload.png"), full_page=True)
            raise
    with _browser(1280, 1400) as fresh:  # a shared link: another browser, nothing in common but the URL
        _open(fresh, link)
        fresh.get_by_test_id("stMain").get_by_role("heading", name="Layer by layer").wait_for()
        _wait_idle(fresh)
        assert fresh.get_by_test_id("stMain").get_by_role("switch", name="Backwards too (side by side)").is_checked()


# Element boxes that must not overflow: text that is cut or spills out of its box, anything outside the
# main column, Plotly labels outside their chart.
_OVERFLOW_JS = """
() => {
  const main = document.querySelector('[data-testid="stMain"] [data-testid="stMainBlockContainer"]');
  const mb = main.getBoundingClientRect();
  const out = [];
  const visible = (r) => r.width > 2 && r.height > 2;  // 1 px boxes are screen-reader text, not shown
  const name = (el) => (el.getAttribute('data-testid') || el.tagName) + ': ' + (el.innerText || el.textContent || '').trim().slice(0, 60);
  const boxes = '[data-testid="stMarkdownContainer"], [data-testid="stCaptionContainer"], [data-testid="stAlert"],'
    + ' [data-testid="stTable"], [data-testid="stImage"], [data-testid="stPlotlyChart"], [data-testid="stVideo"],'
    + ' [data-testid="stButtonGroup"], [data-testid="stWidgetLabel"], button, table td, table th';
  for (const el of main.querySelectorAll(boxes)) {
    const r = el.getBoundingClientRect();
    if (!visible(r)) continue;
    if (r.left < mb.left - 1 || r.right > mb.right + 1) out.push('outside the page: ' + name(el));
  }
  for (const el of main.querySelectorAll('button *, [data-testid="stMarkdownContainer"] p, td, th, [data-testid="stWidgetLabel"] p')) {
    const r = el.getBoundingClientRect();
    if (!visible(r) || el.closest('[data-testid^="stIcon"], svg')) continue;  // icon ligatures are not text
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).display !== 'inline') out.push('text cut: ' + name(el));
  }
  for (const plot of main.querySelectorAll('.js-plotly-plot')) {
    const pr = plot.getBoundingClientRect();
    if (!visible(pr)) continue;
    for (const t of plot.querySelectorAll('.main-svg text, .infolayer text')) {
      const r = t.getBoundingClientRect();
      if (!visible(r) || !(t.textContent || '').trim()) continue;
      if (r.left < pr.left - 2 || r.right > pr.right + 2 || r.top < pr.top - 2 || r.bottom > pr.bottom + 2)
        out.push('chart label cut: ' + t.textContent.trim().slice(0, 60));
    }
  }
  return Array.from(new Set(out));
}
"""


def _fits(page, shot: str, width: int, tall: int) -> None:
    """Nothing cut or outside its container, in the window and in a ``tall`` one showing the whole page;
    screenshots of both (``<shot>.png``, ``<shot>_full.png``)."""
    page.screenshot(path=str(ARTIFACTS / f"{shot}.png"))
    problems = page.evaluate(_OVERFLOW_JS)
    page.set_viewport_size({"width": width, "height": tall})
    _wait_idle(page)
    problems += page.evaluate(_OVERFLOW_JS)
    page.screenshot(path=str(ARTIFACTS / f"{shot}_full.png"))
    assert not problems, problems


@pytest.mark.parametrize("width,height", [(1440, 900), (1280, 800), (800, 1000)])
def test_any_screen(server, width, height):
    """Clip lab and Gate maps (both directions) at three window sizes: key results above the fold at
    1280 x 800, the sidebar collapsed at <= 900 px, and no text or chart cut or outside its container."""
    with _browser(width, height) as page:
        try:
            _open(page, server + "/?rev=1")
            main = page.get_by_test_id("stMain")
            main.get_by_text("max |Δlogit|").first.wait_for()
            page.wait_for_function("document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 4")
            _wait_idle(page)
            collapsed = page.get_by_test_id("stSidebar").get_attribute("data-collapsed")
            assert collapsed == ("true" if width <= 900 else "false")
            page.screenshot(path=str(ARTIFACTS / f"screen_{width}x{height}_clip_lab.png"))
            top5 = page.evaluate("Array.from(document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot'))"
                                 ".slice(0, 2).map(p => p.getBoundingClientRect().bottom)")
            if (width, height) == (1280, 800):
                assert max(top5) <= height, top5  # both models' forward top-5 without scrolling
            problems = page.evaluate(_OVERFLOW_JS)
            page.set_viewport_size({"width": width, "height": 3000})
            _wait_idle(page)
            problems += page.evaluate(_OVERFLOW_JS)
            page.screenshot(path=str(ARTIFACTS / f"screen_{width}x{height}_clip_lab_full.png"))
            assert not problems, problems

            page.set_viewport_size({"width": width, "height": height})
            _open(page, server + "/gate_maps?rev=1")
            main.get_by_role("heading", name="Layer by layer").wait_for()
            page.wait_for_function("document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 3")
            _wait_idle(page)
            _fits(page, f"screen_{width}x{height}_gate_maps", width, 3200)
            _no_exception(page)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"screen_{width}x{height}_failure.png"), full_page=True)
            raise


@pytest.mark.parametrize("width,height", [(1280, 800), (800, 1000)])
def test_gate_maps_of_a_gsm_model(operator_dir, width, height):  # noqa: F811
    """Gate maps of a GSM model, both directions: the two gates' player (four panels), the per-place
    summary and the matrices render, with nothing cut or outside its container."""
    with _streamlit(operator_dir, f"streamlit_gsm_{width}.log") as url, _browser(width, height) as page:
        try:
            _open(page, url + "/gate_maps?a=gsm_demo.safetensors&b=none&rev=1")
            main = page.get_by_test_id("stMain")
            main.get_by_role("heading", name="Place by place").wait_for()
            page.wait_for_function("document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 4")
            _wait_idle(page)
            main.get_by_text("backward shift · backwards").first.wait_for()  # a panel title of the player
            assert main.get_by_text("Overlay strength").count() == 1
            _fits(page, f"screen_{width}x{height}_gate_maps_gsm", width, 3400)
            _no_exception(page)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"screen_{width}x{height}_gsm_failure.png"), full_page=True)
            raise


def test_clip_lab_of_a_multitask_model(multitask_dir):  # noqa: F811
    """A multi-task model in slot A, shown as nouns from a link: its verb, noun and action top-5 render
    beside the plain TSN's, nothing cut at 1280 px, and the sidebar offers the three tasks."""
    with _streamlit(multitask_dir, "streamlit_multitask.log") as url, _browser(1280, 800) as page:
        try:
            _open(page, url + "/?a=mt_hf_tsn_demo.safetensors&task=noun")
            main = page.get_by_test_id("stMain")
            main.get_by_text("noun top-5 (the task the other pages show)").wait_for()
            page.wait_for_function("document.querySelectorAll('[data-testid=\"stMain\"] .js-plotly-plot').length >= 4")
            _wait_idle(page)
            for words in ("verb top-5", "action top-5 · ranked by p(verb) × p(noun)"):
                assert main.get_by_text(words).count() == 1
            sidebar = page.get_by_test_id("stSidebar")
            assert sidebar.get_by_text("Multi-task models show").count() == 1
            for task in ("verb", "noun", "action"):
                assert sidebar.get_by_text(task, exact=True).count() == 1
            _fits(page, "screen_1280x800_multitask_clip_lab", 1280, 3000)
            _no_exception(page)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "screen_multitask_failure.png"), full_page=True)
            raise


def test_first_request_to_a_page_url(demo_dir):  # noqa: F811
    """A bookmark to a page as the server's very first request still gets the navigation and sidebar.

    (The pages live in app/views/, so Streamlit never enters its legacy pages-folder mode, where such a
    request would run the page file on its own.)
    """
    with _streamlit(demo_dir, "streamlit_direct.log") as url, _browser() as page:
        _open(page, url + "/model_cards")
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
            for page in pages:  # four first runs at once: on a busy 2-core machine that takes a while
                page.locator(".hf-header").first.wait_for(timeout=180_000)
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
