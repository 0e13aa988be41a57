"""The master decodes POST /results as ReceivedResult, whose ids and figure names are checked
in one pass (its __post_init__): it must accept and refuse exactly what ResultSubmission does,
with the same messages, and state the same schema."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ffleet.models import ID_PATTERN, NAME_PATTERN, ReceivedResult, ResultSubmission

IDS = ["a", "A9", "x" * 64, "0a1b-2c.d:e_f", "9-9", "a/b", "..", ".a", "-a", "x" * 65, "ok\n"]
IDS += ["\nok", "é", "a b", "a\x00", "", "٣", "a\t"]
NAMES = ["fps", "x" * 256, "x" * 257, "ünï code", "", "a\x01", "\x7f", "tab\there", "end\n", "\x00"]


def outcome(model: type[ResultSubmission], **fields: Any) -> object:
    """The decoded result's fields, or the refusal's message."""
    body = {"job_id": "job-1", "node_id": "node.2:a", "status": "completed", **fields}
    try:
        decoded = msgspec.json.decode(msgspec.json.encode(body), type=model)
    except msgspec.ValidationError as exc:
        return str(exc)
    return msgspec.structs.asdict(decoded)


def same(**fields: Any) -> object:
    received = outcome(ReceivedResult, **fields)
    assert received == outcome(ResultSubmission, **fields)
    return received


@pytest.mark.parametrize("value", IDS)
@pytest.mark.parametrize("where", ["job_id", "node_id"])
def test_ids_are_judged_as_resultsubmission_judges_them(where: str, value: str) -> None:
    judged = same(**{where: value})
    if isinstance(judged, str):
        assert judged == f"Expected `str` matching regex {ID_PATTERN!r} - at `$.{where}`"


def test_both_ids_bad_names_the_first() -> None:
    assert same(job_id="a/b", node_id="c/d") == same(job_id="a/b")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("where", ["metrics", "analyzer_output"])
def test_figure_names_are_judged_as_resultsubmission_judges_them(where: str, name: str) -> None:
    judged = same(**{where: {"fps": 1.0, name: 2.0}})
    if isinstance(judged, str) and "regex" in judged:
        assert judged.endswith(f"- at `key` in `$.{where}`")


def test_a_good_result_decodes_to_the_same_fields() -> None:
    figures = {"fps": 93.4, "encoder": "libx264"}
    judged = same(metrics=figures, analyzer_output={"vmaf": 95.1}, attempt=2, claim_next=True)
    assert isinstance(judged, dict)
    assert judged["metrics"] == figures


def test_both_models_state_the_same_schema() -> None:
    def fields(model: type) -> dict[str, Any]:
        schema = msgspec.json.schema(model)
        return dict(schema["$defs"][model.__name__]["properties"])

    assert fields(ReceivedResult) == fields(ResultSubmission)
    assert fields(ReceivedResult)["metrics"]["propertyNames"]["pattern"] == NAME_PATTERN
