"""Objects named by a unique start of their id, as a user copies it from a table column."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

from ffleet.store import InvalidRequest, NotFound, Store

T = TypeVar("T")


def by_id(store: Store, kind: Literal["job", "node"], given: str, action: Callable[[str], T]) -> T:
    """`action` on the object `given` names: its full id, or a unique start of it (what a
    user copies from an 8-character table column). Exact ids cost nothing more."""
    try:
        return action(given)
    except NotFound:
        found = store.ids_with_prefix(kind, given, 2)
        if len(found) != 1:
            if found:
                raise InvalidRequest(
                    f"{given!r} starts the ids of several {kind}s; give more of it"
                ) from None
            raise
        return action(found[0])
