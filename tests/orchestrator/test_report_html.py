"""report.html in a real headless Chromium: offline, no console errors, every plot drawn; keeps a screenshot.

Needs Debian's chromium (``apt-get install -y chromium``) and the ``playwright`` package; the
browser bundled by ``playwright install`` is not used. Skips with the reason when either is missing.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from orchestrator.reporting import ReportMeta, write_report
from report_fixtures import synthetic_trials

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
_ALL_DRAWN = """() => {
  const divs = Array.from(document.querySelectorAll('.plotly-graph-div'));
  return divs.length > 0 && divs.every(d => d.querySelector('.scatterlayer .trace'));
}"""
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright)"
)
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)", allow_module_level=True
    )


@pytest.fixture(scope="module")
def trials():
    return synthetic_trials(seed=2)


@pytest.fixture(scope="module")
def report(trials, tmp_path_factory):
    meta = ReportMeta(
        "html-test", "sha256:abc", "http://127.0.0.1:5000", "1", created_at=datetime(2026, 11, 3, tzinfo=timezone.utc)
    )
    return write_report(trials, meta, tmp_path_factory.mktemp("report"), pick="psnr>=30")


@pytest.fixture(scope="module")
def page_run(report, tmp_path_factory):
    """Open the report once; collect console errors, page errors and every request made."""
    seen = {"console": [], "pageerror": [], "requests": [], "external": []}
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: seen["pageerror"].append(str(e)))
            page.on("request", lambda r: seen["requests"].append(r.url))
            page.route(
                re.compile(r"^(https?|wss?)://"),
                lambda route: (seen["external"].append(route.request.url), route.abort()),
            )
            page.goto(report["report_html"].resolve().as_uri(), wait_until="load")
            try:  # every plot div holds drawn traces; on timeout the plot test below names the empty ones
                page.wait_for_function(_ALL_DRAWN, timeout=30_000)
            except sync_api.TimeoutError:
                pass
            seen["plots"] = (
                page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-graph-div')).map(d => ({
                id: d.id,
                svg: d.querySelectorAll('svg.main-svg').length,
                traces: d.querySelectorAll('.scatterlayer .trace').length,
                points: d.querySelectorAll('.scatterlayer .point').length,
                lines: d.querySelectorAll('.scatterlayer path.js-line').length}))""")
            )
            first = page.locator("#plot-front-snr20_kn1-48 .scatterlayer .point").first
            first.hover(force=True)
            page.wait_for_timeout(300)
            seen["hover"] = page.locator("#plot-front-snr20_kn1-48 .hoverlayer").text_content()
            page.evaluate("() => { window.__opened = []; window.open = (url) => { window.__opened.push(url); }; }")
            page.locator("#plot-front-snr20_kn1-48 .scatterlayer .point").last.click(force=True)
            page.wait_for_timeout(300)
            seen["opened"] = page.evaluate("window.__opened")
            shot = tmp_path_factory.mktemp("screenshot") / "report_screenshot.png"
            page.screenshot(path=str(shot), full_page=True)
            seen["screenshot"] = shot
        finally:
            browser.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(seen["screenshot"], ARTIFACTS / "report_screenshot.png")
    return seen


def test_no_console_or_page_errors(page_run):
    assert page_run["console"] == [] and page_run["pageerror"] == []


def test_only_the_local_file_is_requested(page_run, report):
    assert page_run["external"] == []
    assert all(u.startswith(("file://", "data:")) for u in page_run["requests"]), page_run["requests"]


def test_every_plot_is_drawn_with_points(page_run, trials):
    plots = {p["id"]: p for p in page_run["plots"]}
    expected = trials["condition"].nunique() + trials["snr_db"].nunique() + 1
    assert len(plots) == expected, sorted(plots)
    for pid, p in plots.items():
        assert p["svg"] > 0 and p["traces"] > 0 and p["points"] > 0, (pid, p)
    for pid in plots:
        if pid.startswith("plot-front-"):
            assert plots[pid]["lines"] >= 1, f"{pid}: the front's step line is missing"


def test_hover_shows_hyperparameters_and_run(page_run):
    text = page_run["hover"]
    for key in ("trial", "method", "α1", "τ", "proj dim", "accuracy", "psnr", "run"):
        assert key in text, (key, text)


def test_clicking_a_point_opens_its_mlflow_run(page_run, trials):
    urls = set(trials.loc[trials["condition"] == "snr20_kn1-48", "mlflow_run_url"])
    assert len(page_run["opened"]) == 1 and page_run["opened"][0] in urls


def test_plotly_is_embedded_once_and_not_from_a_cdn(report):
    html = report["report_html"].read_text()
    assert len(re.findall(r"\* plotly\.js v\d", html)) == 1
    assert not re.search(r"<script[^>]+src=", html)


def test_screenshot_is_kept(page_run):
    kept = ARTIFACTS / "report_screenshot.png"
    assert kept.is_file() and kept.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert page_run["screenshot"].is_file()
