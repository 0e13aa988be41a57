"""A batch's job ids: version-4 UUIDs as `str(uuid.uuid4())` writes them."""

from __future__ import annotations

import uuid

from ffleet.store.submission import uuid4_texts


def test_batch_ids_are_random_version_4_uuids_in_their_usual_text() -> None:
    ids = uuid4_texts(2_000)
    assert len(ids) == len(set(ids)) == 2_000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_an_empty_batch_has_no_ids() -> None:
    assert uuid4_texts(0) == []
