"""Wake-up rules of the long-poll dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from starlette.testclient import TestClient

from ffleet.master.app import create_app
from ffleet.master.dispatch import Dispatcher
from ffleet.master.settings import MasterSettings


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


def test_one_job_wakes_one_waiter_oldest_first() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        first, second, third = dispatcher.enlist(), dispatcher.enlist(), dispatcher.enlist()
        dispatcher.notify()
        assert first.done() and not second.done() and not third.done()
        assert first.result() == 3  # may be passed around everyone who was waiting
        dispatcher.notify(2)  # a batch of two jobs wakes the next two
        assert second.result() == third.result() == 2
        assert dispatcher.waiting == 0

    run(scenario())


def test_a_wake_with_nobody_waiting_is_not_kept_for_later() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        dispatcher.notify()
        late = dispatcher.enlist()
        assert not late.done()  # it claims before waiting, so it finds the job itself

    run(scenario())


def test_a_wake_passed_on_goes_around_the_queue_once_then_dies_out() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        agents = {name: dispatcher.enlist() for name in ("a", "b", "c")}
        dispatcher.notify()
        woken: list[tuple[str, int]] = []
        for _ in range(10):  # more rounds than the wake may last
            done = [(name, wake) for name, wake in agents.items() if wake.done()]
            if not done:
                break
            name, wake = done[0]
            woken.append((name, wake.result()))
            # As the API does: enlist again before claiming, find nothing, pass the wake on.
            agents[name] = dispatcher.enlist()
            dispatcher.pass_on(wake.result())
        assert woken == [("a", 3), ("b", 2), ("c", 1), ("a", 0)]
        assert dispatcher.waiting == 3  # everyone still waits; nobody was woken twice in a row

    run(scenario())


def test_leaving_with_an_unused_wake_hands_it_on() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        first, second, third = dispatcher.enlist(), dispatcher.enlist(), dispatcher.enlist()
        dispatcher.notify()
        dispatcher.leave(first)  # e.g. it claimed a job without needing the wake
        assert second.result() == 2 and not third.done()

    run(scenario())


def test_leaving_without_a_wake_wakes_nobody() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        gone, stays = dispatcher.enlist(), dispatcher.enlist()
        dispatcher.leave(gone)
        assert gone.cancelled() and not stays.done()
        dispatcher.notify()
        assert stays.result() == 1  # the wake skipped the one that left

    run(scenario())


def test_notify_all_wakes_everyone_without_passing_on() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        many = [dispatcher.enlist() for _ in range(4)]
        dispatcher.notify_all()
        assert [w.result() for w in many] == [0, 0, 0, 0]
        assert dispatcher.waiting == 0

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


def test_a_wait_ends_with_the_wake_or_unwoken_out_of_the_queue() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        woken, unwoken = dispatcher.enlist(), dispatcher.enlist()
        asyncio.get_running_loop().call_soon(dispatcher.notify)
        assert await dispatcher.wait(woken, 5.0) == 2
        assert await dispatcher.wait(unwoken, 0.01) is None
        assert dispatcher.waiting == 0
        dispatcher.leave(unwoken)  # leaving after the wait ended changes nothing
        assert dispatcher.waiting == 0

    run(scenario())


def test_a_waiter_cancelled_with_its_request_is_skipped_and_its_wake_handed_on() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        first = dispatcher.enlist()
        task = asyncio.create_task(dispatcher.wait(first, 5.0))
        second = dispatcher.enlist()
        await asyncio.sleep(0)
        task.cancel()
        dispatcher.notify()  # before the cancelled request has run again to leave
        assert second.result() == 2
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert dispatcher.waiting == 0

    run(scenario())


class Claims:
    """A claim that finds work only once `ready` is set, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.ready = False

    async def __call__(self) -> str | None:
        self.calls += 1
        return "job" if self.ready else None


async def never_gone() -> bool:
    return False


LongPoll = Callable[..., Coroutine[Any, Any, str | None]]


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher()


@pytest.fixture
def long_poll(dispatcher: Dispatcher) -> LongPoll:
    """`dispatcher.long_poll` for node "n": no rechecks, a client that stays and a master that
    runs, unless a test passes its own."""
    return functools.partial(
        dispatcher.long_poll,
        node_id="n",
        recheck_s=None,
        client_gone=never_gone,
        stopping=lambda: False,
    )


def test_a_long_poll_looks_again_only_when_woken_unless_it_must_recheck(
    dispatcher: Dispatcher, long_poll: LongPoll
) -> None:
    async def scenario() -> None:
        claims = Claims()
        waiting = asyncio.create_task(long_poll(claims, 5.0))
        await asyncio.sleep(0.05)
        assert claims.calls == 1 and dispatcher.waiting == 1
        claims.ready = True
        dispatcher.notify()
        assert await waiting == "job" and claims.calls == 2

        rechecking = Claims()
        found = await long_poll(rechecking, 0.1, recheck_s=0.02)
        assert found is None and rechecking.calls >= 3  # the first, then every recheck
        unwoken = Claims()
        found = await long_poll(unwoken, 0.05)
        assert found is None and unwoken.calls == 1  # no last look when the poll ends
        assert dispatcher.waiting == 0

    run(scenario())


def test_a_woken_long_poll_whose_client_left_hands_the_wake_on(
    dispatcher: Dispatcher, long_poll: LongPoll
) -> None:
    async def gone() -> bool:
        return True

    async def scenario() -> None:
        claims = Claims()
        left = asyncio.create_task(long_poll(claims, 5.0, client_gone=gone))
        await asyncio.sleep(0)
        other = dispatcher.enlist()
        dispatcher.notify()
        assert await left is None and claims.calls == 1
        assert other.result() == 2  # the wake it did not use, unspent

    run(scenario())


def test_a_wake_whose_job_was_taken_meanwhile_is_not_passed_on() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        first, second = dispatcher.enlist(), dispatcher.enlist()
        dispatcher.notify()  # one job: `first` is woken
        dispatcher.taken()  # ...but a poll just arriving claimed the job first
        dispatcher.pass_on(first.result())  # `first` found nothing
        assert not second.done()  # nothing left to look for: no claim in vain
        again = dispatcher.enlist()
        dispatcher.notify()  # a job only `again` can run: `second` is woken first
        dispatcher.pass_on(second.result())  # ...and cannot use it: still untaken
        assert again.result() == 1

    run(scenario())


def test_a_node_taking_work_again_wakes_its_own_waiters_only() -> None:
    async def scenario() -> None:
        dispatcher = Dispatcher()
        other, mine, anonymous = dispatcher.enlist("a"), dispatcher.enlist("b"), dispatcher.enlist()
        dispatcher.notify_node("b")
        assert mine.result() == 0 and not other.done() and not anonymous.done()
        assert dispatcher.waiting == 2

    run(scenario())


def test_work_created_during_a_results_first_look_wakes_it_at_once(
    dispatcher: Dispatcher, long_poll: LongPoll
) -> None:
    async def scenario() -> None:
        claims = Claims()

        async def store_result() -> str | None:
            # A job arrives while the result's transaction runs (and finds nothing): this
            # request is already enlisted, so the job's wake is not lost.
            claims.ready = True
            dispatcher.notify()
            return None

        found = await long_poll(claims, 30.0, first=store_result)
        assert found == "job" and claims.calls == 1
        assert dispatcher.waiting == 0

    run(scenario())


def test_the_first_look_runs_on_a_stopping_master_and_nothing_waits_after_it(
    dispatcher: Dispatcher, long_poll: LongPoll
) -> None:
    async def scenario() -> None:
        claims = Claims()
        stored: list[str] = []

        async def store_result() -> str | None:
            stored.append("result")
            return None

        found = await long_poll(claims, 30.0, stopping=lambda: True, first=store_result)
        assert found is None and stored == ["result"] and claims.calls == 0
        assert dispatcher.waiting == 0

    run(scenario())


def test_a_stop_ends_a_waiting_long_poll_without_a_claim(
    dispatcher: Dispatcher, long_poll: LongPoll
) -> None:
    async def scenario() -> None:
        claims = Claims()
        stopping = False
        waiting = asyncio.create_task(long_poll(claims, 30.0, stopping=lambda: stopping))
        await asyncio.sleep(0)
        assert dispatcher.waiting == 1
        claims.ready = True
        stopping = True
        dispatcher.notify_all()  # what the master's planned stop does
        assert await waiting is None and claims.calls == 1

    run(scenario())
