"""Group commit: the SQLite store calls made together on the event loop share one COMMIT.

A COMMIT on the SQLite file was the largest single cost of a request (~75 us of a job's
~218 us in the store, 13 WAL frames for a result with `claim_next`): each wrote the pages it
changed to the WAL again, though the next request changes the same pages. So while a master
serves, the store methods its handlers run on the event loop (through `GroupCommit.call`) join
one open write transaction: each method is a SAVEPOINT, released when it succeeds and rolled
back to when it raises, so a failing method undoes only its own changes, as before. The first
method schedules the COMMIT for once the requests that arrived meanwhile have joined the group,
and defers it again while more keep joining (`_commit_when_quiet`): the group's pages are
written once for all of them.

How long a group stays open: a COMMIT costs ~330 K instructions (its WAL frames, their
checksums, waking the calls), so its share of a job is that over the group's size. Committed
at the end of the loop turn that opened it, a group held 15-19 calls on average with 64 agents
posting results over HTTP; checked again after the requests that arrived meanwhile have run,
and deferred while it grows, 45-48 (BENCHMARKS.md). A lone call waits a loop turn or two more
than it did. No group is deferred more than GROUP_MAX_WAITS times, past GROUP_MAX_CALLS calls,
or once GROUP_MAX_AGE_S old: what grouping adds to a reply's latency stays under ~20 ms even
when requests never stop coming.

A `redoable` method (a result with `claim_next`, a heartbeat: one transaction, a function of
its arguments and the database) has no savepoint of its own: the pair cost ~8 % of a result's
instructions and ~5 % of a heartbeat's, each journalling again the pages it changes. Its
failures mostly come before any write (NotFound, Conflict; `total_changes` unmoved), and the
group goes on as if it never ran. One that changed rows rolls back to the `mark` savepoint,
opened before the first unguarded method since the group began or since a guarded member ran
(whose changes it must never undo): that undoes the unguarded calls since the mark too, and
they run again once the group commits, being unanswered until then (only their logging shows
it twice). A call's later transactions are guarded: only what one transaction did is redone.

The durability promise stays: nothing is answered before it is committed. `call` does not
return before the COMMIT of every group its method joined, so no reply, no wake-up and no
archive push happens first; reads wait too, as they may have seen the group's uncommitted
changes. A COMMIT that fails (disk full, I/O error) rolls the whole group back and every call
waiting on it raises StoreUnavailable: nothing is reported done that was not committed.

Any other transaction is alone: BEGIN IMMEDIATE ... COMMIT, after committing the open group
if there is one (its calls settle as on the loop's own COMMIT; a failure of it fails them, not
this transaction). So are another thread's (the batch submissions, the splitter), a store call
the loop makes directly, those of a store not being served (tests, CLI `--store`, migrations),
and a heavy one: `transaction(alone=True)`, for a method that may change many rows (a
registration that makes a queue schedulable, a purge, expiries). The reaper's batches stay
members: bounded (base.REAP_BATCH), each journals ~0.2 MiB.

Why heavy ones stay out: SQLite journals, for a savepoint, the original of every page changed
under it until its RELEASE (and, for a statement that changes many rows, of every page that
statement changes). A group's savepoints keep that journal in memory (`temp_store=MEMORY`,
set as the group begins): spilled to a temporary file past 64 KiB, as by default, it cost ~6
`pwrite` a job over HTTP. Only small calls are members, so it stays small; a transaction
alone keeps the default, its big statements spilling to a file as before, rather than holding
a 5,000-job batch's or a whole queue's pages in memory (BENCHMARKS.md).

`temp_store` stays MEMORY from a group's BEGIN to the next transaction alone: what runs on
the connection between is grouped members, whose sorts and RETURNING temporary B-trees are as
small as their journals. Set back at once, it would cost two PRAGMAs a group for nothing.

`settled` (the checkpointer's write lock) commits an open group too: a RESTART checkpoint
waits for the writer, which would be the loop's open group.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ffleet.store.availability import unavailable_cause
from ffleet.store.base import StoreUnavailable

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
# How the transaction under the mutex ends: see GroupCommit.enter.
_ALONE, _MEMBER, _UNGUARDED = range(3)
# A group's COMMIT is deferred while calls keep joining it, at most this many times and only
# while it has fewer calls than this (its savepoint journals are held in memory).
GROUP_MAX_WAITS = 8
GROUP_MAX_CALLS = 256
GROUP_MAX_AGE_S = 0.02


def redoable(method: F) -> F:
    """Declare a store method that runs one transaction and is a function of its arguments
    and the database alone (beyond logging): grouped, it runs without a savepoint of its own,
    and is run again should another's failure undo it."""
    method.redoable = True  # type: ignore[attr-defined]
    return method


class _Call:
    """One `call` on the served loop: the groups its method joined, whether it may run
    unguarded (`redoable`, its first transaction only) and whether a failure undid that."""

    __slots__ = ("began", "groups", "redoable", "voided")

    def __init__(self, redoable: bool) -> None:
        self.groups: list[_Group] = []
        self.redoable = redoable
        self.began = False
        self.voided = False


class _Group:
    """One open outer transaction: whether it has ended, how, and who waits for it."""

    __slots__ = ("failure", "opened", "seen", "settled", "waiters", "waits")

    def __init__(self, opened: float) -> None:
        self.opened = opened  # the loop's time when it began
        self.seen = 1  # the calls it had when last checked: at first, the one that opened it
        self.waits = 0  # how often its COMMIT was deferred
        self.settled = False
        self.failure: BaseException | None = None
        self.waiters: list[asyncio.Future[None]] = []

    def outcome(self) -> BaseException | None:
        """What a call that joined this settled group raises: None once committed."""
        failure = self.failure
        if failure is None:
            return None
        cause = unavailable_cause(failure)
        if cause is None:
            return failure
        error = StoreUnavailable(cause)
        error.__cause__ = failure
        return error


class GroupCommit:
    """The transactions on one shared sqlite3 connection (autocommit mode), used under
    `mutex`; grouped while `serve(loop)` is in effect."""

    def __init__(self, conn: sqlite3.Connection, mutex: threading.Lock) -> None:
        self._conn = conn
        self._mutex = mutex
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._group: _Group | None = None
        self._temp_in_memory = False  # the connection's temp_store: see _begin
        # The running `call`; None outside one. Only the loop thread reads or writes it.
        self._running: _Call | None = None
        # The unguarded calls since the open group's latest `SAVEPOINT mark` (None: no mark
        # open, or a guarded member ran since): what `ROLLBACK TO mark` would undo.
        self._region: list[_Call] | None = None
        self.settled = _Settled(self)
        # The transaction under the mutex (see `enter`): how it ends, and for an unguarded
        # one the connection's `total_changes` as it began.
        self._scope = _ALONE
        self._changes = 0

    def serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """Group the calls made through `call` on `loop` from now on."""
        with self._mutex:
            self._loop = loop
            self._loop_thread = threading.get_ident()

    def unserve(self) -> None:
        """Commit what is open and stop grouping: every transaction is alone again."""
        with self._mutex:
            self._commit_open()
            self._loop = None
            self._loop_thread = None

    async def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store method on the loop, and return (or raise) once what it did is
        committed; inline and alone when the loop is not being served. A `redoable` method
        another member's failure undid runs again once that group has committed."""
        if self._loop_thread != threading.get_ident():
            return method(*args, **kwargs)
        may_redo = getattr(method, "redoable", False)
        while True:
            running = self._running = _Call(may_redo)
            try:
                outcome = method(*args, **kwargs)
            except BaseException:
                await self._committed(running)
                if not running.voided:
                    raise
            else:
                await self._committed(running)
                if not running.voided:
                    return outcome

    async def _committed(self, running: _Call) -> None:
        """Its method over, wait for the groups `running` joined to end; raise how the first
        that failed did."""
        self._running = None
        for group in running.groups:
            # No lock: only this thread adds waiters, and a group settled on another
            # thread is woken here by a callback after `settled` (see _settle).
            if not group.settled:
                assert self._loop is not None
                waiter = self._loop.create_future()
                group.waiters.append(waiter)
                await waiter
            failure = group.outcome()
            if failure is not None:
                raise failure

    def enter(self, alone: bool = False) -> sqlite3.Cursor:
        """Begin one store method's transaction and return its cursor, the mutex held until
        `exit`: a member of the loop's group inside `call` unless `alone`, else alone (after
        committing an open group). Under the mutex one transaction runs at a time: what `exit`
        needs to end it is kept here."""
        self._mutex.acquire()
        try:
            cursor = self._conn.cursor()
            running = self._running
            if running is not None and self._loop_thread == threading.get_ident():
                first, running.began = not running.began, True
                if not alone:
                    group = self._open()
                    groups = running.groups
                    if not groups or groups[-1] is not group:
                        groups.append(group)
                    if first and running.redoable:
                        self._enter_unguarded()
                    else:
                        self._enter_member()
                    return cursor
            self._settle_open()
            self._begin(grouped=False)
            self._scope = _ALONE
        except BaseException:
            self._mutex.release()
            raise
        return cursor

    def exit(self, cursor: sqlite3.Cursor, failure: BaseException | None) -> None:
        """End the transaction `enter` began: commit (or release) it, or undo it after
        `failure`, which the caller raises then; and release the mutex.

        The cursor is closed first, before the mutex is released. sqlite3 shares one cached
        statement per SQL text among a connection's cursors, and a cursor that is closed, runs
        again or is freed resets the statement it last ran (an `executemany` keeps it). Freed
        later, on whatever thread drops its Tx, it would reset a statement another thread may
        be running under the mutex at that moment; that thread then skips its own reset and
        binds its next row to a statement not reset: `InterfaceError: bad parameter or other
        API misuse`, a 5,000-job batch failing beside another."""
        try:
            cursor.close()
            scope = self._scope
            if scope == _UNGUARDED:
                self._exit_unguarded(failure)
            elif scope == _MEMBER:
                self._exit_member(failure)
            else:
                self._exit_alone(failure)
        finally:
            self._mutex.release()

    def _exit_alone(self, failure: BaseException | None) -> None:
        conn = self._conn
        if failure is None:
            try:
                conn.execute("COMMIT")
                return
            except BaseException:
                # A failed COMMIT (disk full, I/O error) too: an open transaction on the
                # shared connection would refuse every later BEGIN.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _open(self) -> _Group:
        """The loop's open group, begun (and its COMMIT scheduled) if there is none."""
        group = self._group
        if group is None:
            assert self._loop is not None
            self._begin(grouped=True)
            group = self._group = _Group(self._loop.time())
            self._region = None
            self._check_later(group)
        return group

    def _begin(self, grouped: bool) -> None:
        """BEGIN IMMEDIATE, a group's with its savepoint journals in memory (SQLite reads
        `temp_store` as a write transaction begins), anything else's spilling to a file.
        A transaction still open here is one a failed ROLLBACK left behind (its group has
        failed already): rolled back now, or this transaction fails as the store does."""
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        if self._temp_in_memory is not grouped:
            self._conn.execute(f"PRAGMA temp_store={'MEMORY' if grouped else 'DEFAULT'}")
            self._temp_in_memory = grouped
        self._conn.execute("BEGIN IMMEDIATE")

    def _enter_unguarded(self) -> None:
        """A redoable method's transaction in the open group, with no savepoint of its own.
        Most failures (NotFound, Conflict) come before any write: the group goes on as if it
        never ran. One that changed rows is undone with `ROLLBACK TO mark`, and so are the
        unguarded calls since the mark, which run again after the group's COMMIT."""
        if self._region is None:
            self._conn.execute("SAVEPOINT mark")
            self._region = []
        self._changes = self._conn.total_changes
        self._scope = _UNGUARDED

    def _exit_unguarded(self, failure: BaseException | None) -> None:
        region = self._region
        assert region is not None and self._running is not None
        if failure is None:
            region.append(self._running)
        elif not self._conn.in_transaction:
            self._abandon(failure)
        elif self._conn.total_changes != self._changes:
            self._undo_region(region, failure)

    def _undo_region(self, region: list[_Call], failure: BaseException) -> None:
        """`ROLLBACK TO mark`: the failing method's changes and those of the calls in the
        region go; those calls are voided (run again). The mark stays, the region empties."""
        try:
            self._conn.execute("ROLLBACK TO mark")
        except sqlite3.Error as undo_failed:
            self._abandon(undo_failed)
            return
        for voided in region:
            voided.voided = True
        region.clear()

    def _enter_member(self) -> None:
        """A SAVEPOINT in the open group: a failure undoes this method's changes only, unless
        SQLite rolled the whole transaction back (it may, on disk full or I/O errors). What it
        does is never undone by a later `ROLLBACK TO mark`: the next unguarded call opens a
        mark of its own."""
        self._region = None
        self._conn.execute("SAVEPOINT member")
        self._scope = _MEMBER

    def _exit_member(self, failure: BaseException | None) -> None:
        conn = self._conn
        if failure is None:
            try:
                conn.execute("RELEASE member")
            except sqlite3.Error as exc:
                self._abandon(exc)
                raise
            return
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK TO member")
                conn.execute("RELEASE member")
                return
            except sqlite3.Error as undo_failed:
                failure = undo_failed
        self._abandon(failure)

    def _abandon(self, failure: BaseException) -> None:
        """The open group is lost: fail its calls and roll back what is left of it (its calls
        first: a failing ROLLBACK must not leave them waiting)."""
        group, self._group = self._group, None
        if group is not None:
            self._settle(group, failure)
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    def _commit_open(self) -> None:
        """COMMIT the open group, if any; a failure rolls it back, fails its calls and is
        raised here too."""
        group, self._group = self._group, None
        if group is None:
            return
        try:
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._settle(group, exc)
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._settle(group, None)

    def _settle_open(self) -> None:
        """COMMIT the open group, if any, for what runs without it: a failure reaches the
        group's calls (raised in each of them), not the caller."""
        if self._group is not None:
            with contextlib.suppress(Exception):
                self._commit_open()

    def _check_later(self, group: _Group) -> None:
        """`_commit_when_quiet` once the requests that arrive meanwhile have joined `group`.
        On asyncio's own loop a timer due now runs after the next poll for I/O, and the callback
        it schedules after the first steps of the requests that poll started; on uvloop (which
        `ffleet master` runs) `call_later(0)` is a `call_soon`, and the second hop lets one
        more poll's requests run first."""
        loop = self._loop
        assert loop is not None
        loop.call_later(0, loop.call_soon, self._commit_when_quiet, group)

    def _commit_when_quiet(self, group: _Group) -> None:
        """COMMIT `group` (unless something alone committed it first) once no call joined it
        since the last check, or it has waited, grown or aged enough; a failure reaches the
        calls waiting on it, not the loop."""
        with self._mutex:
            if self._group is not group:
                return
            calls = len(group.waiters)
            assert self._loop is not None
            if (
                calls > group.seen
                and calls < GROUP_MAX_CALLS
                and group.waits < GROUP_MAX_WAITS
                and self._loop.time() - group.opened < GROUP_MAX_AGE_S
            ):
                group.seen = calls
                group.waits += 1
                self._check_later(group)
                return
            self._settle_open()

    def _settle(self, group: _Group, failure: BaseException | None) -> None:
        group.failure = failure
        group.settled = True  # after its failure: a call that reads it unlocked sees both
        if threading.get_ident() == self._loop_thread:
            _wake(group)
        elif self._loop is not None:
            # Always: a call on the loop may be adding its waiter right now.
            with contextlib.suppress(RuntimeError):  # a loop that has closed has no waiters
                self._loop.call_soon_threadsafe(_wake, group)


def _wake(group: _Group) -> None:
    for waiter in group.waiters:
        if not waiter.done():
            waiter.set_result(None)


class _Settled:
    """The connection's mutex with no group open under it: what the checkpointer's RESTART
    holds (it would wait for the group's writer, which waits for the mutex)."""

    def __init__(self, owner: GroupCommit) -> None:
        self._owner = owner

    def __enter__(self) -> None:
        owner = self._owner
        owner._mutex.acquire()
        try:
            owner._settle_open()
        except BaseException:
            owner._mutex.release()
            raise

    def __exit__(self, *_exc: object) -> None:
        self._owner._mutex.release()
