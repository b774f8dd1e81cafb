"""The MLflow UI opens a study where a tuner looks: its runs, with the study described.

A real ``mlflow server`` on 127.0.0.1 and Debian's headless Chromium, in a fresh browser profile
(MLflow 3.17 would otherwise open the experiment on its GenAI traces overview).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.tracking.runs import experiment_url
from orchestrator.tracking.study_run import open_study_run

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium", allow_module_level=True)


def test_the_study_link_opens_on_its_runs_with_its_description(mlflow_server, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: ui-study\n")
    study = open_study_run(mlflow_server, "ui-study", None, {"semtune.version": "test"}, {"budget.trials": 3},
                           "semtune study **ui-study**: report with `semtune report`", str(spec))
    url = experiment_url(mlflow_server, study.experiment_id)
    assert url.startswith(mlflow_server) and "workflowType=machine_learning" in url
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--headless=new", "--no-sandbox",
                                                                          "--disable-gpu"])
        try:
            page = browser.new_context().new_page()  # a fresh profile: no workflow chosen before
            page.goto(url)
            page.get_by_text("Run Name").first.wait_for(timeout=60_000)
            page.get_by_text("ui-study", exact=True).first.wait_for(timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "mlflow-ui-study.png"))
            body = page.inner_text("body")
            assert "/runs" in page.url and "overview" not in page.url
            assert "Token Usage" not in body  # not the GenAI overview
            assert "semtune study ui-study" in body  # the description, from the note tag
        finally:
            browser.close()
