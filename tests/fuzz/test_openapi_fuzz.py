"""Schema-driven fuzzing of the whole API from its own /openapi.json, on SQLite and PostgreSQL.

Every generated request (schemathesis: valid and invalid bodies, path and query parameters,
then stateful sequences along the schema's links) must get a reply the schema declares, never
a server error, and a refused request must leave the fleet exactly as it was.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from ffleet.master.app import create_app
from ffleet.master.settings import MasterSettings
from ffleet.store import SchedulingPolicy, Store, open_store
from tests.conftest import store_url

# Cases per operation: 28 operations x 60 (fewer where fewer exist) > 1,000 per backend.
# FFLEET_FUZZ_EXAMPLES and FFLEET_FUZZ_RUNS raise them for a longer run.
EXAMPLES = int(os.environ.get("FFLEET_FUZZ_EXAMPLES", "60"))
SELF = ("/openapi.json", "/docs")  # the schema and its page do not describe themselves
STATEFUL_RUNS = int(os.environ.get("FFLEET_FUZZ_RUNS", "15"))  # sequences of up to 10 calls


@pytest.fixture(params=["sqlite", "postgres"], scope="module")
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    where = tmp_path_factory.mktemp("fuzz")
    url = store_url(request.param, where)
    # No reaper pass during the run (it starts one node timeout in): aging and expiry would
    # change state between a refused request's two snapshots.
    policy = SchedulingPolicy(node_timeout_s=3600)
    store = open_store(url, policy)
    settings = MasterSettings(
        store_url=url, max_wait_s=0.2, policy=policy, blob_dir=where / "blobs"
    )  # uploads land there, not in the working directory
    app = create_app(settings, store)
    yield app, store
    store.close()


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a request could change, as comparable builtins."""
    jobs, total = store.list_jobs(None, None, 0)
    nodes = store.list_nodes()
    results = store.list_results(None, None, 0)
    return (total, repr(jobs), repr(nodes), repr(results))


# A request that fits the schema may still be refused for what JSON Schema cannot say (a
# scenario's grammar, a preset that does not suit the codec): 400, never 422, which means
# "does not fit the schema" and so would prove the schema wrong.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {
                "expected-statuses": ["2XX", 400, 404, 409, 413, 429],
            }
        }
    }
)


def check_case(case: Any, store: Store, seen: list[str]) -> None:
    seen.append(case.operation.label)
    before = snapshot(store)
    response = case.call_and_validate()
    assert response.status_code < 500
    if 400 <= response.status_code < 500:
        assert snapshot(store) == before, f"a refused {case.method} {case.path} changed state"


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


def test_every_operation_answers_as_its_schema_says(fuzzed: Any) -> None:
    app, store = fuzzed
    api = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    operations = [result.ok() for result in api.get_all_operations()]
    served = app.state.master.endpoints()
    documented = sum(len(methods) for path, methods in served.items() if path not in SELF)
    assert len(operations) == documented  # every route and method, none missing from the schema
    seen: list[str] = []
    for operation in operations:

        @FUZZ_SETTINGS
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            check_case(case, store, seen)

        fuzz()
    assert len(seen) >= 1000 and len(set(seen)) == documented


def test_stateful_sequences_along_the_links(fuzzed: Any) -> None:
    """Register, submit, claim, report, cancel... chained through the schema's links."""
    app, store = fuzzed
    api = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    answered: list[tuple[str, int]] = []
    states: list[tuple[Any, ...]] = []

    class Fleet(api.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            states.append(snapshot(store))

        def after_call(self, response: Any, case: Any) -> None:
            answered.append((case.operation.label, response.status_code))
            assert response.status_code < 500
            if 400 <= response.status_code < 500:
                assert snapshot(store) == states[-1], f"refused {case.operation.label} changed"

    Fleet.run(
        settings=settings(
            max_examples=STATEFUL_RUNS,
            stateful_step_count=10,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
    )
    assert answered  # which links a run follows is chance: the test below follows each one


def test_every_link_addresses_what_the_earlier_reply_made(fuzzed: Any) -> None:
    """Each link of the schema, followed once with the id of a real reply, reaches an
    operation that finds that node or job (never a 404 nor a 5xx)."""
    app, _ = fuzzed
    api = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)
    operations = {
        operation["operationId"]: (path, method.upper())
        for path, methods in app.state.master.openapi["paths"].items()
        for method, operation in methods.items()
    }
    made = {
        ("/nodes/register", "201"): api["/nodes/register"]["POST"]
        .Case(body={"cpu_threads": 1}, media_type="application/json")
        .call(),
        ("/jobs", "201"): api["/jobs"]["POST"]
        .Case(body={"scenario": "360p-h264"}, media_type="application/json")
        .call(),
    }
    for (path, status), reply in made.items():
        assert str(reply.status_code) == status, reply.text
        made_id = reply.json()["id"]
        links = app.state.master.openapi["paths"][path]["post"]["responses"][status]["links"]
        for link in links.values():
            target_path, method = operations[link["operationId"]]
            given: dict[str, dict[str, Any]] = {"path": {}, "query": {}}
            for where, expression in link["parameters"].items():
                place, name = where.split(".")
                assert expression == "$response.body#/id"
                given[place][name] = made_id
            case = api[target_path][method].Case(
                path_parameters=given["path"], query=given["query"]
            )
            answer = case.call()
            assert answer.status_code < 500 and answer.status_code != 404, (link, answer.text)
