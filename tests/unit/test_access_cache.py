"""A cached token is known on the event loop; only a cache miss needs the store."""

from __future__ import annotations

import time

import pytest

from ffleet.master.access import ANONYMOUS, Access
from ffleet.master.http import ApiError
from ffleet.store import open_store
from tests.unit.test_clock import bearer


def test_only_a_token_the_cache_holds_is_identified_without_the_store() -> None:
    store = open_store("memory")
    _, token = store.create_credential("reader", "r", time.time())
    access = Access(store, enforced=True, now=time.time)
    assert access.identify_cached(bearer(token)) is None  # a miss: the store must be read
    assert access.identify(bearer(token)).role == "reader"
    assert access.identify_cached(bearer(token)) == access.identify(bearer(token))
    with pytest.raises(ApiError, match="invalid token"):
        access.identify_cached(bearer("not-a-token"))
    assert Access(store, enforced=False, now=time.time).identify_cached(bearer("x")) is ANONYMOUS
    store.close()


def test_a_cached_token_that_expired_is_refused_without_the_store() -> None:
    store = open_store("memory")
    now = time.time()
    _, token = store.create_credential("reader", "r", now, expires_at=now + 5)
    clock = [now]
    access = Access(store, enforced=True, now=lambda: clock[0])
    access.identify(bearer(token))
    clock[0] = now + 6  # still cached (CACHE_S), no longer usable
    with pytest.raises(ApiError, match="revoked or expired"):
        access.identify_cached(bearer(token))
    store.close()
