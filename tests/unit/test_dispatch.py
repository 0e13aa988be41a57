"""Wake-up rules of the long-poll dispatcher."""

from __future__ import annotations

import asyncio

from ffleet.master.dispatch import Dispatcher


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
