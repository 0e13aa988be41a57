"""The master's rolling measured efficiency per node and scenario family (rules in
ffleet.efficiency): kept up to date from results, read for `GET /nodes/{id}` and placement."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from ffleet import efficiency, scheduling
from ffleet.models import Efficiency
from ffleet.scenarios import JobSpec, ScenarioError, build_job_spec
from ffleet.store.db import Row, Tx
from ffleet.store.rows import efficiency_from_row, loads, requirements


def _figures(row: Row) -> efficiency.Figures:
    return efficiency.Figures(row["fps"], row["cpu_seconds_per_frame"], row["joules_per_frame"])


def record(tx: Tx, job: Row, node_id: str, metrics: Mapping[str, object], now: float) -> None:
    """Fold a completed result into its node's figures for its family (if it measured any)."""
    encoder = metrics.get("encoder")
    if not isinstance(encoder, str):
        return  # no family to file it under (a v1.0 agent's result)
    found = efficiency.figures_of(metrics)
    if found is None:
        return
    spec = _spec(job["scenario"], job["parameters"])
    if spec is None:
        return  # stored by a version whose grammar differs: no family to file it under
    figures = {
        "node": node_id,
        "family": efficiency.family(spec, encoder),
        "now": now,
        "fps": found.fps,
        "cpu_seconds_per_frame": found.cpu_seconds_per_frame,
        "joules_per_frame": found.joules_per_frame,
        "weight": efficiency.EFFICIENCY_WEIGHT,
    }
    tx.run("efficiency_record", figures)  # blended into the old figures in SQL, one statement


@functools.lru_cache(maxsize=1024)
def _spec(scenario: str, parameters: str) -> JobSpec | None:
    """A stored job's spec, validated once per distinct scenario and parameters (every result
    of a matrix's jobs asks again); None for one this version's grammar refuses."""
    try:
        return build_job_spec(scenario, loads(parameters))
    except ScenarioError:
        return None


def of_node(tx: Tx, node_id: str) -> list[Efficiency]:
    return [efficiency_from_row(row) for row in tx.all("efficiency_of_node", {"node": node_id})]


def better_measured(
    tx: Tx, job: Row, claimer: scheduling.NodeTraits, idle: Iterable[scheduling.NodeTraits]
) -> str | None:
    """The id of an idle node that can run `job` and has a better measured figure for its
    family than `claimer`, or None. None while `claimer` has no figure: unmeasured nodes keep
    the default order (and so get measured)."""
    spec = _spec(job["scenario"], job["parameters"])
    if spec is None:
        return None
    by_node: dict[str, list[efficiency.Figures]] = {}
    for name in efficiency.families(spec):
        for row in tx.all("efficiency_of_family", {"family": name}):
            by_node.setdefault(row["node_id"], []).append(_figures(row))
    placement = job["placement"]
    mine = efficiency.score(placement, by_node.get(claimer.node_id, []))
    if mine is None:
        return None
    req = requirements(job["requirements"])
    avoided = set(loads(job["avoid_nodes"]))
    for other in idle:
        if other.node_id == claimer.node_id or other.node_id in avoided:
            continue
        theirs = efficiency.score(placement, by_node.get(other.node_id, []))
        if theirs is not None and theirs > mine and not scheduling.unmet(req, other):
            return other.node_id
    return None
