"""
The Grafana dashboard, C{docs/grafana-dashboard.json}: valid JSON, every
panel queries something, and every metric its panels and template variables
name is one the dispatcher exports (read from a real L{Metrics} registry).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Set

import pytest
from twisted.internet.task import Clock

from amp_dispatch.admin import ListenerCounts, Metrics
from amp_dispatch.protocol._hooks import ConnectionInfo
from amp_dispatch.server._config import DispatcherConfig
from amp_dispatch.server._stores import open_memory_store
from amp_dispatch.store._interface import WorkerReport

DASHBOARD = Path(__file__).parent.parent / "docs" / "grafana-dashboard.json"

#: The sample names each metric type exposes, from its family's name.
_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}

#: PromQL's label lists after an aggregation or a vector match: labels, not metrics.
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")

#: C{label_values(SELECTOR, LABEL)}: a template variable's query.
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*\w+\s*\)\s*$")


def dashboard() -> Dict[str, Any]:
    loaded: Dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels() -> List[Dict[str, Any]]:
    return list(dashboard()["panels"])


def exported() -> Set[str]:
    """
    The sample names a dispatcher's C{/metrics} shows, from a real registry
    over a memory store with a worker in it.
    """
    clock = Clock()
    store = open_memory_store(clock, DispatcherConfig())
    metrics = Metrics(clock, store, lambda: [ListenerCounts("frontend", 1, 0, 0)])
    store.update(WorkerReport("w1", "h", 9000, 1))
    metrics(b"NextWorker", "answered", ConnectionInfo("frontend"), 1)
    metrics.refresh()
    names: Set[str] = set()
    for family in metrics.registry.collect():
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
    return names


def metric_names(expression: str) -> Set[str]:
    """
    The metric names a PromQL expression (or a C{label_values} query)
    selects: its identifiers outside strings, label matchers, ranges and
    label lists that are not functions or aggregations.
    """
    query = _LABEL_VALUES.match(expression)
    text = query.group("selector") if query else expression
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = _LABEL_LISTS.sub(" ", text)
    return {
        found.group()
        for found in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text)
        if not text[found.end() :].lstrip().startswith("(")
    }


def expressions(panel: Dict[str, Any]) -> List[str]:
    return [target["expr"] for target in panel["targets"]]


def variable_queries() -> List[str]:
    queries = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def test_valid_json() -> None:
    """
    The dashboard is a JSON object in Grafana's dashboard model, with panels.
    """
    model = dashboard()
    assert model["schemaVersion"] >= 36
    assert model["panels"]


@pytest.mark.parametrize("panel", panels(), ids=lambda panel: panel["title"])
def test_every_panel_queries(panel: Dict[str, Any]) -> None:
    """
    Every panel has at least one target with an expression.
    """
    assert expressions(panel)
    assert all(expression.strip() for expression in expressions(panel))


@pytest.mark.parametrize("panel", panels(), ids=lambda panel: panel["title"])
def test_panels_name_exported_metrics(panel: Dict[str, Any]) -> None:
    """
    Every metric a panel's expressions select is one the dispatcher exports.
    """
    names = set().union(*(metric_names(expression) for expression in expressions(panel)))
    assert names
    assert names <= exported(), names - exported()


def test_variables_name_exported_metrics() -> None:
    """
    The template variables' queries select metrics the dispatcher exports.
    """
    queries = variable_queries()
    assert queries
    for query in queries:
        assert metric_names(query)
        assert metric_names(query) <= exported(), query


def test_metric_names() -> None:
    """
    The names checked are the selected metrics, not functions, labels,
    label values or variables.
    """
    expression = (
        'histogram_quantile(0.99, sum by (le) (rate(up{job=~"$job", x="a_b"}[$__rate_interval])))'
        " / ignoring(pool) process_open_fds"
    )
    assert metric_names(expression) == {"up", "process_open_fds"}
    assert metric_names('label_values(amp_dispatch_info{job=~"$job"}, instance)') == {
        "amp_dispatch_info"
    }


def test_panels_do_not_overlap() -> None:
    """
    Panels fit Grafana's 24 columns and no two share a cell.
    """
    taken: Set[Any] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        taken |= cells
