"""The dashboard end to end: Debian's chromium, driven by Playwright, against a real master
with a real agent running real FFmpeg. Screenshots are kept as artefacts (in the module's
tmp dir, or FFLEET_TEST_ARTEFACTS), never compared.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from .chromium import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require_chromium
from .conftest import AgentProcess, Fleet, MasterProcess, wait_until

pytestmark = pytest.mark.integration

EVIL = "<script>alert('label')</script>"
ENDLESS = {"duration": 600}  # 320x240 for minutes: caught running, never left to finish
TINY = "320x240-h264"


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    chosen = os.environ.get("FFLEET_TEST_ARTEFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots in {path}")
    return path


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A fresh headless chromium profile; dialogs are recorded (an alert means a script ran)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 800},
        )
        context.dialogs = []  # type: ignore[attr-defined]
        context.on(
            "dialog", lambda dialog: (context.dialogs.append(dialog.message), dialog.dismiss())
        )
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def shared(module_fleet: Fleet) -> tuple[MasterProcess, AgentProcess]:
    master = module_fleet.master()
    agent = module_fleet.agent(
        master, extra_args=["--label", f"note={EVIL}", "--label", "site=lab", "--slots", "1"]
    )
    return master, agent


def open_page(browser: Any, url: str) -> Any:
    page = browser.new_page()
    page.goto(url)
    page.wait_for_selector("#live-state[data-state=live]", timeout=WAIT_MS)
    return page


def running_job(master: MasterProcess, agent: AgentProcess) -> dict[str, Any]:
    job = master.submit(TINY, parameters=ENDLESS)
    master.wait_job(job["id"], ["running"])
    wait_until(agent.ffmpeg_pids, timeout=30, message="FFmpeg to start")
    return job


def test_the_fleet_page_lists_the_agent_and_shows_a_script_label_as_text(
    browser: Any, shared: tuple[MasterProcess, AgentProcess], artefacts: Path
) -> None:
    master, agent = shared
    page = open_page(browser, f"{master.url}/ui")
    row = page.locator(f"tr[data-node='{agent.node_id}']")
    row.wait_for(timeout=WAIT_MS)
    assert "available" in row.inner_text()
    labels = row.locator(".label").all_inner_texts()
    assert f"note={EVIL}" in labels and "site=lab" in labels
    assert page.locator("script").count() == 1  # ours: the label did not become one
    assert browser.dialogs == []
    page.screenshot(path=str(artefacts / "fleet.png"), full_page=True)
    page.close()


def test_a_running_jobs_progress_bar_advances_without_a_reload(
    browser: Any, shared: tuple[MasterProcess, AgentProcess], artefacts: Path
) -> None:
    master, agent = shared
    job = running_job(master, agent)
    page = open_page(browser, f"{master.url}/ui/jobs/{job['id']}")
    page.evaluate("window.sameDocument = true")
    bar = page.locator(f"progress[data-job='{job['id']}']")
    bar.wait_for(timeout=WAIT_MS)
    first = float(bar.get_attribute("value") or 0)
    # Polled from here: the page's CSP forbids the string eval that wait_for_function uses.
    wait_until(
        lambda: float(bar.get_attribute("value") or 0) > first,
        timeout=WAIT_MS / 1000,
        interval=0.2,
        message=f"the progress bar to pass {first}",
    )
    assert page.evaluate("window.sameDocument") is True  # advanced in place, no reload
    page.screenshot(path=str(artefacts / "job-running.png"), full_page=True)
    master.api.post(f"/jobs/{job['id']}/cancel")
    master.wait_job(job["id"], ["canceled"])
    page.close()


def test_cancelling_from_the_job_page_kills_ffmpeg_and_retry_queues_it_again(
    browser: Any, shared: tuple[MasterProcess, AgentProcess], artefacts: Path
) -> None:
    master, agent = shared
    job = running_job(master, agent)
    ffmpeg = agent.ffmpeg_pids()
    page = open_page(browser, f"{master.url}/ui/jobs/{job['id']}")
    page.click("#cancel")
    page.wait_for_selector("#job-status:text('canceled')", timeout=WAIT_MS)
    assert master.job(job["id"])["status"] == "canceled"
    wait_until(
        lambda: not any(psutil.pid_exists(pid) for pid in ffmpeg) and not agent.ffmpeg_pids(),
        timeout=10,
        message="FFmpeg to be killed",
    )
    page.screenshot(path=str(artefacts / "job-canceled.png"), full_page=True)
    page.click("#retry")
    page.wait_for_selector("#job-status:text-matches('pending|running')", timeout=WAIT_MS)
    assert master.job(job["id"])["status"] in ("pending", "running")
    master.api.post(f"/jobs/{job['id']}/cancel")
    master.wait_job(job["id"], ["canceled"])
    page.close()


def test_drain_and_undrain_from_the_fleet_page(
    browser: Any, shared: tuple[MasterProcess, AgentProcess]
) -> None:
    master, agent = shared
    page = open_page(browser, f"{master.url}/ui")
    row = page.locator(f"tr[data-node='{agent.node_id}']")
    row.locator("button:text('Drain')").click()
    row.locator(".status:text('draining')").wait_for(timeout=WAIT_MS)
    assert master.api.get(f"/nodes/{agent.node_id}").json()["draining"] is True
    row.locator("button:text('Undrain')").click()
    row.locator(".status:text('available')").wait_for(timeout=WAIT_MS)
    assert master.api.get(f"/nodes/{agent.node_id}").json()["draining"] is False
    page.close()


def test_submitting_from_the_jobs_page_gets_the_apis_validation(
    browser: Any, shared: tuple[MasterProcess, AgentProcess]
) -> None:
    master, _ = shared
    refused = master.api.post("/jobs", json={"scenario": TINY, "parameters": {"duration": -1}})
    assert refused.status_code == 400
    before = master.api.get("/jobs").json()["total"]
    page = open_page(browser, f"{master.url}/ui/jobs")
    page.click("details.submit summary")
    page.fill("#submit-form [name=scenario]", TINY)
    page.fill("#submit-form [name=parameters]", "duration=-1")
    page.click("#submit-form button[type=submit]")
    page.locator("#notice.notice-error").wait_for(timeout=WAIT_MS)
    assert refused.json()["error"] in page.inner_text("#notice")
    assert master.api.get("/jobs").json()["total"] == before

    page.fill("#submit-form [name=parameters]", "duration=1")
    page.fill("#submit-form [name=repeats]", "2")
    page.click("#submit-form button[type=submit]")
    page.locator("#notice.notice-ok").wait_for(timeout=WAIT_MS)
    assert "submitted 2 job(s)" in page.inner_text("#notice")
    assert master.api.get("/jobs").json()["total"] == before + 2
    page.close()


def test_a_page_that_reconnects_catches_up(
    browser: Any, shared: tuple[MasterProcess, AgentProcess]
) -> None:
    """The stream is cut (the master restarts) and kept from reconnecting while the job is
    canceled; once it may reconnect, its first event shows the job as it is now."""
    master, _ = shared
    waiting = master.submit(TINY, requirements={"gpu_model": "no such GPU"})
    page = open_page(browser, f"{master.url}/ui/jobs/{waiting['id']}")
    assert page.inner_text("#job-status") == "pending"
    page.route("**/events*", lambda route: route.abort())
    master.restart()
    page.wait_for_selector("#live-state[data-state=reconnecting]", timeout=WAIT_MS)
    master.api.post(f"/jobs/{waiting['id']}/cancel")
    assert page.inner_text("#job-status") == "pending"  # nothing reached the page meanwhile
    page.unroute("**/events*")
    page.wait_for_selector("#job-status:text('canceled')", timeout=WAIT_MS)
    page.close()
