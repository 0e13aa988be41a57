"""Wake-up rules of the long-poll dispatcher."""

from __future__ import annotations

import asyncio

from starlette.testclient import TestClient

from ffleet.master.app import create_app
from ffleet.master.dispatch import Dispatcher
from ffleet.master.settings import MasterSettings


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_one_job_wakes_one_waiter_oldest_first() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        first, second = dispatcher.enlist(), dispatcher.enlist()
        dispatcher.notify()
        assert first.done() and not second.done()
        assert first.result() == 2  # may be passed around everyone who was waiting

    run(scenario())


def test_a_wake_passed_on_goes_around_the_queue_at_most_once() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        waiters = [dispatcher.enlist() for _ in range(3)]
        dispatcher.notify()
        hops = waiters[0].result()
        woken = 1
        while hops > 0:
            # the woken waiter found nothing and waits again, then passes the wake on
            dispatcher.enlist()
            dispatcher.pass_on(hops)
            now_done = [w for w in waiters if w.done()]
            if len(now_done) == woken:
                break
            woken = len(now_done)
            hops = now_done[-1].result()
        assert all(w.done() for w in waiters)
        assert dispatcher.enlist().done() is False  # the wake died out: no endless ping-pong

    run(scenario())


def test_leaving_with_an_unused_wake_hands_it_on() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        first, second = dispatcher.enlist(), dispatcher.enlist()
        dispatcher.notify()
        dispatcher.leave(first)  # e.g. it claimed a job without needing the wake
        assert second.done()

    run(scenario())


def test_left_waiters_are_skipped_and_notify_all_wakes_everyone() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        gone, stays = dispatcher.enlist(), dispatcher.enlist()
        dispatcher.leave(gone)
        dispatcher.notify()
        assert stays.done() and gone.cancelled()
        many = [dispatcher.enlist() for _ in range(4)]
        dispatcher.notify_all()
        assert all(w.done() for w in many)

    run(scenario())


def test_polls_that_leave_leave_no_waiter_behind() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        for _ in range(1000):  # what a poll without `wait` does when there is no job
            dispatcher.leave(dispatcher.enlist())
        assert dispatcher.waiting == 0
        waiter = dispatcher.enlist()
        dispatcher.leave(waiter)
        dispatcher.leave(waiter)  # leaving twice is harmless
        assert dispatcher.waiting == 0

    run(scenario())


def test_idle_polls_through_the_api_leave_no_waiter_behind() -> None:
    settings = MasterSettings(store_url="memory", max_wait_s=1, recheck_s=0.02)
    with TestClient(create_app(settings)) as client:
        dispatcher = client.app.state.master.dispatcher  # type: ignore[attr-defined]
        node = client.post("/nodes/register", json={"address": "10.0.0.5", "cpu_threads": 4})
        params = {"node_id": node.json()["id"]}
        for _ in range(200):  # a v1.0 poller: no `wait`
            assert client.get("/jobs/next", params=params).json() == {"job": None}
        for _ in range(3):  # long-polls that time out after several rechecks
            assert client.get("/jobs/next", params={**params, "wait": "0.1"}).json() == {
                "job": None
            }
        assert client.get("/jobs/next", params={"node_id": "ghost"}).status_code == 404
        assert dispatcher.waiting == 0
