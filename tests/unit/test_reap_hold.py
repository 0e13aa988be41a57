"""When the reaper may judge nodes: never within a node timeout of a time it could not see them."""

from __future__ import annotations

from ffleet.master.reap_hold import ReapHold


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_800_000_000.0

    def advance(self, seconds: float, *, wall_extra: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + wall_extra


def hold_of(clocks: Clocks) -> ReapHold:
    return ReapHold(10.0, 1.0, clock=lambda: clocks.mono, wall=lambda: clocks.wall)


def run_passes(hold: ReapHold, clocks: Clocks, count: int) -> list[bool]:
    allowed = []
    for _ in range(count):
        clocks.advance(1.0)
        assert hold.tick() is None
        allowed.append(hold.may_reap())
    return allowed


def test_held_for_one_node_timeout_from_the_start() -> None:
    clocks = Clocks()
    hold = hold_of(clocks)
    assert run_passes(hold, clocks, 11) == [False] * 9 + [True, True]


def test_a_stall_longer_than_a_quarter_timeout_holds_again_from_its_end() -> None:
    clocks = Clocks()
    hold = hold_of(clocks)
    run_passes(hold, clocks, 10)
    clocks.advance(1.0 + 2.4)  # late by 2.4 s: under the 2.5 s tolerance
    assert hold.tick() is None and hold.may_reap()
    clocks.advance(1.0 + 30.0)  # SIGSTOP for 30 s
    gap = hold.tick()
    assert gap is not None and "did not run for 31.0 s" in gap
    assert not hold.may_reap()
    assert run_passes(hold, clocks, 10) == [False] * 9 + [True]


def test_a_forward_clock_step_holds() -> None:
    clocks = Clocks()
    hold = hold_of(clocks)
    run_passes(hold, clocks, 10)
    clocks.advance(1.0, wall_extra=60.0)
    gap = hold.tick()
    assert gap is not None and "wall clock jumped 60.0 s forward" in gap
    assert not hold.may_reap()


def test_a_store_failure_holds_from_the_moment_it_was_seen() -> None:
    clocks = Clocks()
    hold = hold_of(clocks)
    run_passes(hold, clocks, 10)
    assert hold.may_reap()
    hold.blind()
    assert run_passes(hold, clocks, 10) == [False] * 9 + [True]


def test_a_store_failure_holds_also_for_the_pause_refused_clients_were_told() -> None:
    clocks = Clocks()
    hold = ReapHold(
        10.0, 1.0, clock=lambda: clocks.mono, wall=lambda: clocks.wall, refusal_pause_s=3.0
    )
    run_passes(hold, clocks, 10)
    hold.blind()
    assert run_passes(hold, clocks, 13) == [False] * 12 + [True]


def test_the_reapers_own_long_pass_is_not_taken_for_absence() -> None:
    clocks = Clocks()
    hold = hold_of(clocks)
    run_passes(hold, clocks, 10)
    clocks.advance(5.0)  # a pass over a vanished fleet's leases, in batches
    hold.worked()
    assert run_passes(hold, clocks, 1) == [True]
