"""Signing in to the dashboard end to end: Debian's chromium, driven by Playwright, against a
real master with authentication on. Each user gets a fresh browser context (its own cookies).
Screenshots are kept as artefacts in the module's tmp dir, never compared."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .chromium import CHROMIUM, CHROMIUM_ARGS, WAIT_MS, require_chromium
from .conftest import Fleet, MasterProcess
from .test_security import authenticating, issue

pytestmark = pytest.mark.integration

TINY = "320x240-h264"
NEVER = {"gpu_model": "no such GPU"}  # stays pending: no agent needed
NODE = {"hostname": "lab-box", "cpu_threads": 4, "ram_bytes": 8 << 30, "slots": 1}


@pytest.fixture(scope="module")
def master(module_fleet: Fleet) -> MasterProcess:
    master = authenticating(module_fleet, module_fleet.tmp)
    registered = master.api.post("/nodes/register", json=NODE)
    assert registered.status_code == 201, registered.text
    return master


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser(chromium: Any) -> Iterator[Any]:
    """A fresh context: a user of their own, signed out."""
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield context
    finally:
        context.close()


def sign_in(browser: Any, master: MasterProcess, token: str, path: str = "/ui") -> Any:
    page = browser.new_page()
    page.goto(f"{master.url}{path}")
    page.wait_for_selector("#sign-in-form", timeout=WAIT_MS)
    page.fill("#sign-in-form [name=token]", token)
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#viewer", timeout=WAIT_MS)
    return page


def submit_as(master: MasterProcess, token: str) -> str:
    reply = master.api.post(
        "/jobs",
        json={"scenario": TINY, "requirements": NEVER},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def test_a_signed_out_browser_signs_in_and_a_bad_token_is_told_why(
    browser: Any, master: MasterProcess, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.goto(f"{master.url}/ui/jobs")
    page.wait_for_selector("#sign-in-form", timeout=WAIT_MS)
    assert page.url.startswith(f"{master.url}/ui/sign-in?next=")
    page.fill("#sign-in-form [name=token]", "ffleet_" + "x" * 43)
    page.click("#sign-in-form button[type=submit]")
    page.locator("#notice.notice-error").wait_for(timeout=WAIT_MS)
    assert "sign-in refused: invalid token (HTTP 401)" in page.inner_text("#notice")
    assert browser.cookies() == []
    page.screenshot(path=str(tmp_path / "sign-in-refused.png"), full_page=True)
    page.close()


def test_a_reader_sees_the_fleet_but_no_action_button(
    browser: Any, master: MasterProcess, tmp_path: Path
) -> None:
    job_id = submit_as(master, issue(master, "submitter"))
    page = sign_in(browser, master, issue(master, "reader"), f"/ui/jobs/{job_id}")
    assert page.url == f"{master.url}/ui/jobs/{job_id}"  # back where it was sent from
    assert "reader" in page.inner_text("#viewer")
    (cookie,) = browser.cookies()
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["secure"]) == (True, "Strict", False)
    assert page.evaluate("document.cookie") == ""  # no script can read the token
    assert page.locator("#cancel").count() == 0
    page.goto(f"{master.url}/ui")
    page.wait_for_selector("tr[data-node]", timeout=WAIT_MS)
    assert page.locator("button[data-action]").count() == 0
    page.goto(f"{master.url}/ui/jobs")
    assert page.locator("#submit-form").count() == 0
    page.screenshot(path=str(tmp_path / "reader.png"), full_page=True)
    page.close()


def test_a_submitter_cancels_its_job_but_a_forged_form_changes_nothing(
    browser: Any, master: MasterProcess
) -> None:
    token = issue(master, "submitter")
    job_id = submit_as(master, token)
    page = sign_in(browser, master, token, f"/ui/jobs/{job_id}")
    # What a page elsewhere could make this browser send: a plain form POST, with the cookie
    # but without the dashboard's header. The wait ends when that navigation has loaded, so
    # the next one cannot interrupt it.
    with page.expect_navigation(url=f"**/jobs/{job_id}/cancel") as forged:
        page.evaluate(
            """(path) => { const form = document.createElement("form");
            form.method = "POST"; form.action = path; document.body.appendChild(form);
            form.submit(); }""",
            f"/jobs/{job_id}/cancel",
        )
    assert forged.value.status == 403
    assert master.job(job_id)["status"] == "pending"

    page.goto(f"{master.url}/ui/jobs/{job_id}")
    page.click("#cancel")
    page.wait_for_selector("#job-status:text('canceled')", timeout=WAIT_MS)
    assert master.job(job_id)["status"] == "canceled"
    page.close()


def test_revoking_the_token_signs_an_open_page_out(
    browser: Any, master: MasterProcess, tmp_path: Path
) -> None:
    made = master.api.post("/tokens", json={"role": "reader", "name": "revoked viewer"})
    credential, token = made.json()["id"], made.json()["token"]
    page = sign_in(browser, master, token)
    page.wait_for_selector("#live-state[data-state=live]", timeout=WAIT_MS)
    assert master.api.post(f"/tokens/{credential}/revoke").status_code == 200
    page.wait_for_selector("#ended", timeout=WAIT_MS)  # the sign-in page: "session has ended"
    assert browser.cookies() == []
    page.screenshot(path=str(tmp_path / "signed-out.png"), full_page=True)
    page.close()

    bad = master.api.post("/ui/session", headers={"Authorization": "Bearer ffleet_bad"})
    assert bad.status_code == 401
    trail = master.api.get("/audit", params={"action": "POST /ui/session", "limit": 100})
    outcomes = {(e["actor_name"], e["outcome"]) for e in trail.json()["entries"]}
    assert ("revoked viewer", 200) in outcomes and ("unauthenticated", 401) in outcomes
    assert token not in trail.text and token not in master.log_text()
