"""A reply the master holds on purpose (a result that waits for the next job) gets that wait
plus LONG_POLL_SLACK_S before the agent's client gives up; any other reply the plain timeout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ffleet.agent import client as agent_client
from ffleet.agent.client import MasterClient
from ffleet.client import MasterUnavailable
from ffleet.models import ResultSubmission

HELD_S = 0.6  # how late the master below answers every result
SHORT_S = 0.3  # the plain request timeout and the slack in these tests: below HELD_S


class _SlowResults(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(HELD_S)
        body = json.dumps({"status": "success", "job": None}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowResults)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_a_result_that_waits_for_the_next_job_is_given_its_wait(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_client, "REQUEST_TIMEOUT_S", SHORT_S)
    monkeypatch.setattr(agent_client, "LONG_POLL_SLACK_S", SHORT_S)
    result = ResultSubmission(job_id="j1", node_id="n1", attempt=1, status="completed")
    waiting = ResultSubmission(
        job_id="j1", node_id="n1", attempt=1, status="completed", claim_next=True, claim_wait=0.4
    )
    with MasterClient(url) as client:
        assert client.post_result(waiting).job is None  # 0.4 + 0.3 s > the 0.6 s it took
        with pytest.raises(MasterUnavailable):
            client.post_result(result)  # not asked to wait: 0.3 s
