"""Regenerate docs/dashboard.png, the dashboard shown in README:
`python -m tests.integration.dashboard_screenshot`.

A real master, two real agents and real FFmpeg on 127.0.0.1: a few short jobs finish, two long
ones run, and Debian's chromium photographs the fleet page while their progress bars move.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.integration.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.processes import ROOT, AgentProcess, MasterProcess, wait_until

OUT = ROOT / "docs" / "dashboard.png"


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        master = MasterProcess(work)
        agents = [
            AgentProcess(
                work,
                master.url,
                name=f"agent{i}",
                heartbeat_interval="1s",
                extra_args=["--label", f"rack={rack}", "--label", "site=lab"],
            )
            for i, rack in enumerate(["a", "b"])
        ]
        try:
            master.start()
            for agent in agents:
                agent.start()
                agent.wait_registered(master)
            done = [master.submit("320x240-h264", parameters={"duration": 1}) for _ in range(3)]
            for job in done:
                master.wait_job(job["id"], ["completed"])
            long = [master.submit("640x360-h264", parameters={"duration": 600}) for _ in agents]
            master.submit("1080p-h265", requirements={"gpu": True})
            for job in long:
                master.wait_job(job["id"], ["running"])
            wait_until(
                lambda: all(
                    (master.job(j["id"]).get("progress") or {}).get("percent") for j in long
                ),
                timeout=30,
                message="progress from both agents",
            )
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport={"width": 1280, "height": 560})
                page.goto(f"{master.url}/ui")
                page.wait_for_selector("#live-state[data-state=live]")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(OUT))
                browser.close()
        finally:
            for process in [*agents, master]:
                process.kill()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
