"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``, installed by
``.ci/run``) driven by Playwright renders a report of a real run, with no console error, every
plot shown, and the per-sample filter changing the rows shown."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (apt-get install chromium)")


def visible_rows(page: object) -> int:
    script = "rows => rows.filter(row => row.style.display !== 'none').length"
    return int(page.eval_on_selector_all("#samples tbody tr", script))  # type: ignore[attr-defined]


def test_the_html_report_renders_plots_and_filters_samples(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    output = tmp_path / "run"
    runner = CliRunner()
    run = runner.invoke(
        app,
        [
            "eval", "--method", "full", "--method", "laser", "--budget", "256",
            "--model", str(tiny_llama_dir), "--dataset", "babilong_demo", "--lengths", "1k,2k",
            "--tasks", "qa1", "--limit", "2",
            "--demo-samples", "2", "--workers", "2", "--device", "cpu", "--dtype", "float32",
            "--block-size", "512", "--output", str(output), "--quiet",
        ],
    )  # fmt: skip
    assert run.exit_code == 0, run.output
    report = runner.invoke(app, ["report", str(output), "--format", "html"])
    assert report.exit_code == 0, report.output
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto((output / "report.html").as_uri())
        images = page.eval_on_selector_all("img", "images => images.map(i => i.complete && i.naturalWidth)")
        assert len(images) >= 2 and all(width and width > 100 for width in images)  # plots decoded and shown
        assert page.text_content("h1") == "laserkv report" and "Models" in (page.text_content("ul") or "")
        assert visible_rows(page) == 8 and page.text_content("#shown") == "8 of 8 samples shown"
        page.select_option("#filter-method", "laser")
        assert visible_rows(page) == 4
        page.select_option("#filter-length", "2k")
        assert visible_rows(page) == 2 and page.text_content("#shown") == "2 of 8 samples shown"
        page.select_option("#filter-method", "")
        assert visible_rows(page) == 4
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
