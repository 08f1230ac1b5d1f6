"""
Draws docs/grafana-dashboard.png: the Grafana dashboard of
docs/grafana-dashboard.json, rendered from a real run, without Grafana.

It starts a real C{amp-dispatch serve} on free loopback ports, drives a
bounded load for L{DURATION} seconds (a scheduler updating three pools of
workers, front ends calling C{NextWorker}, calls that wait with timeouts, a
burst past C{--max-waiting}, a scheduler that leaves, workers whose ttl runs
out, stale and duplicate updates, bad inputs, a burst of connections past the
cap), scrapes C{/metrics} every second as Prometheus would (parsed by
C{prometheus_client.parser}, with the C{job} and C{instance} labels a scrape
adds), then draws each panel of the JSON at its C{gridPos}, under its title,
by evaluating its expressions on the scraped series.

The evaluator knows exactly the PromQL the dashboard uses: selectors with
C{=}, C{!=}, C{=~}, C{!~} matchers, C{rate(selector[range])}, C{sum}, C{max},
C{min}, C{avg} with or without C{by (labels)}, C{histogram_quantile} and
arithmetic between vectors with the same labels or numbers.  Its C{rate} is
the increase (counter resets included) between the first and last samples
of the range over their time apart (Prometheus also extrapolates to the
range's edges).  Variables: C{job} the scrape's, C{instance} and C{pool}
all, C{$__rate_interval} L{RATE_INTERVAL} (1 s scrapes).

    .venv/bin/python scripts/dashboard_picture.py [--duration S] [--out FILE]

Needs the bench extra (matplotlib).  Takes about DURATION + 10 seconds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import operator
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import structlog
from amp_dispatch_commands import NextWorker
from attrs import define, field
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import LoopingCall, deferLater, react
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody

from amp_dispatch.client import FrontendClient, SchedulerClient

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
PICTURE = ROOT / "docs" / "grafana-dashboard.png"

#: Seconds of load (and of scrapes).
DURATION = 60.0
#: What C{$__rate_interval} stands for (Grafana: at least 4 scrape intervals).
RATE_INTERVAL = "10s"
#: The scrape's labels, as a Prometheus job would add them.
JOB = "amp-dispatch"
LOOPBACK = "127.0.0.1"
ANY_PORT = f"tcp:0:interface={LOOPBACK}"

# -- the scraped series --------------------------------------------------------

#: A series' labels, sorted, without its name.
Labels = Tuple[Tuple[str, str], ...]
#: An instant vector: a value per label set.
Vector = Dict[Labels, float]
Value = Union[float, Vector]


@define
class History:
    """
    Every scrape: when (seconds since the first), and each metric's series.
    """

    times: List[float] = field(factory=list)
    scrapes: List[Dict[str, Vector]] = field(factory=list)

    def add(self, at: float, text: str, target: Dict[str, str]) -> None:
        scrape: Dict[str, Vector] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted({**sample.labels, **target}.items()))
                scrape.setdefault(sample.name, {})[labels] = sample.value
        self.times.append(at)
        self.scrapes.append(scrape)


# -- the PromQL the dashboard uses ---------------------------------------------

_TOKENS = re.compile(
    r'\s*(?:(?P<number>\d+(?:\.\d+)?)|(?P<string>"(?:[^"\\]|\\.)*")'
    r"|(?P<range>\[\d+[smh]\])|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r"|(?P<op>=~|!~|!=|[-+*/(){},=]))"
)
_SECONDS = {"s": 1, "m": 60, "h": 3600}
_MATCH: Dict[str, Callable[[str, str], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "=~": lambda value, pattern: re.fullmatch(pattern, value) is not None,
    "!~": lambda value, pattern: re.fullmatch(pattern, value) is None,
}
_AGGREGATE: Dict[str, Callable[[List[float]], float]] = {
    "sum": sum,
    "max": max,
    "min": min,
    "avg": lambda values: sum(values) / len(values),
}
_ARITHMETIC: Dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": lambda a, b: a / b if b else (math.nan if a == 0 or math.isnan(a) else math.inf),
}

#: An expression, parsed: its value at a scrape of a history.
Query = Callable[[History, int], Value]


class _Parser:
    """
    A recursive-descent parser of the dashboard's PromQL into L{Query}s.
    """

    def __init__(self, text: str) -> None:
        self._tokens: List[Tuple[str, str]] = []
        at = 0
        text = text.strip()
        while at < len(text):
            found = _TOKENS.match(text, at)
            if found is None or found.lastgroup is None:
                raise ValueError(f"cannot read {text[at:]!r}")
            self._tokens.append((found.lastgroup, found.group(found.lastgroup)))
            at = found.end()
        self._at = 0

    def parse(self) -> Query:
        query = self._sum()
        if self._at != len(self._tokens):
            raise ValueError(f"unexpected {self._tokens[self._at][1]!r}")
        return query

    def _peek(self) -> str:
        return self._tokens[self._at][1] if self._at < len(self._tokens) else ""

    def _take(self, expected: Optional[str] = None) -> Tuple[str, str]:
        kind, text = self._tokens[self._at]
        if expected is not None and text != expected:
            raise ValueError(f"expected {expected!r}, found {text!r}")
        self._at += 1
        return kind, text

    def _sum(self) -> Query:
        return self._binary(("+", "-"), self._product)

    def _product(self) -> Query:
        return self._binary(("*", "/"), self._term)

    def _binary(self, operators: Sequence[str], operand: Callable[[], Query]) -> Query:
        left = operand()
        while self._peek() in operators:
            apply = _ARITHMETIC[self._take()[1]]
            left = _arithmetic(apply, left, operand())
        return left

    def _term(self) -> Query:
        kind, text = self._take()
        if kind == "number":
            number = float(text)
            return lambda history, at: number
        if text == "(":
            inner = self._sum()
            self._take(")")
            return inner
        if text in _AGGREGATE:
            by = self._labels() if self._peek() == "by" else None
            self._take("(")
            inner = self._sum()
            self._take(")")
            if by is None and self._peek() == "by":
                by = self._labels()
            return _aggregate(_AGGREGATE[text], by or (), inner)
        if text == "rate":
            self._take("(")
            name, matchers = self._selector(self._take()[1])
            window = self._take()[1]
            self._take(")")
            return _rate(name, matchers, float(window[1:-2]) * _SECONDS[window[-2]])
        if text == "histogram_quantile":
            self._take("(")
            quantile = float(self._take()[1])
            self._take(",")
            inner = self._sum()
            self._take(")")
            return _histogram_quantile(quantile, inner)
        name, matchers = self._selector(text)
        return lambda history, at: _select(history.scrapes[at], name, matchers)

    def _labels(self) -> Tuple[str, ...]:
        self._take("by")
        self._take("(")
        names = [self._take()[1]]
        while self._peek() == ",":
            self._take(",")
            names.append(self._take()[1])
        self._take(")")
        return tuple(names)

    def _selector(self, name: str) -> Tuple[str, List[Tuple[str, str, str]]]:
        matchers: List[Tuple[str, str, str]] = []
        if self._peek() == "{":
            self._take("{")
            while self._peek() != "}":
                label = self._take()[1]
                match = self._take()[1]
                value = json.loads(self._take()[1])
                matchers.append((label, match, value))
                if self._peek() == ",":
                    self._take(",")
            self._take("}")
        return name, matchers


def parse(expression: str, variables: Dict[str, str]) -> Query:
    """
    C{expression} with Grafana's C{$variables} replaced, parsed.
    """
    return _Parser(re.sub(r"\$(\w+)", lambda found: variables[found.group(1)], expression)).parse()


def _select(scrape: Dict[str, Vector], name: str, matchers: List[Tuple[str, str, str]]) -> Vector:
    selected: Vector = {}
    for labels, value in scrape.get(name, {}).items():
        found = dict(labels)
        if all(_MATCH[match](found.get(label, ""), want) for label, match, want in matchers):
            selected[labels] = value
    return selected


def _rate(name: str, matchers: List[Tuple[str, str, str]], window: float) -> Query:
    def rate(history: History, at: int) -> Vector:
        points: Dict[Labels, List[Tuple[float, float]]] = {}
        for index in range(at, -1, -1):
            when = history.times[index]
            if when <= history.times[at] - window:
                break
            for labels, value in _select(history.scrapes[index], name, matchers).items():
                points.setdefault(labels, []).insert(0, (when, value))
        rates: Vector = {}
        for labels, series in points.items():
            if len(series) < 2:
                continue
            increase = sum(
                after - before if after >= before else after
                for (_, before), (_, after) in zip(series, series[1:])
            )
            rates[labels] = increase / (series[-1][0] - series[0][0])
        return rates

    return rate


def _vector(value: Value) -> Vector:
    if isinstance(value, dict):
        return value
    raise ValueError("a vector is needed here")


def _aggregate(
    apply: Callable[[List[float]], float], by: Tuple[str, ...], inner: Query
) -> Query:
    def aggregate(history: History, at: int) -> Vector:
        groups: Dict[Labels, List[float]] = {}
        for labels, value in _vector(inner(history, at)).items():
            key = tuple((label, value) for label, value in labels if label in by)
            groups.setdefault(key, []).append(value)
        return {key: apply(values) for key, values in groups.items()}

    return aggregate


def _arithmetic(apply: Callable[[float, float], float], left: Query, right: Query) -> Query:
    def arithmetic(history: History, at: int) -> Value:
        a, b = left(history, at), right(history, at)
        if isinstance(a, float) and isinstance(b, float):
            return apply(a, b)
        if isinstance(a, float):
            return {labels: apply(a, value) for labels, value in _vector(b).items()}
        if isinstance(b, float):
            return {labels: apply(value, b) for labels, value in a.items()}
        return {labels: apply(value, b[labels]) for labels, value in a.items() if labels in b}

    return arithmetic


def _histogram_quantile(quantile: float, inner: Query) -> Query:
    def histogram_quantile(history: History, at: int) -> Vector:
        histograms: Dict[Labels, List[Tuple[float, float]]] = {}
        for labels, count in _vector(inner(history, at)).items():
            rest = tuple((label, value) for label, value in labels if label != "le")
            histograms.setdefault(rest, []).append((float(dict(labels)["le"]), count))
        return {
            labels: _quantile(quantile, sorted(buckets)) for labels, buckets in histograms.items()
        }

    return histogram_quantile


def _quantile(quantile: float, buckets: List[Tuple[float, float]]) -> float:
    """
    Prometheus's C{histogram_quantile} of cumulative C{(le, count)} buckets:
    linear within the bucket the rank falls in.
    """
    total = buckets[-1][1]
    if len(buckets) < 2 or total <= 0 or not math.isinf(buckets[-1][0]):
        return math.nan
    rank = quantile * total
    start, below = 0.0, 0.0
    for index, (bound, count) in enumerate(buckets):
        if count >= rank:
            if math.isinf(bound):
                return buckets[index - 1][0]
            if count == below:
                return bound
            return start + (bound - start) * (rank - below) / (count - below)
        start, below = bound, count
    return math.nan


# -- the run: a real dispatcher under load --------------------------------------


class _Dispatcher(ProcessProtocol):
    """
    C{amp-dispatch serve}: learns its ports from its C{listening} events.
    """

    def __init__(self) -> None:
        self.ports: Dict[str, int] = {}
        self.listening: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self._partial = b""

    def outReceived(self, data: bytes) -> None:
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                self.ports[event["role"]] = int(event["port"])
                if len(self.ports) == 3 and not self.listening.called:
                    self.listening.callback(None)

    def processEnded(self, reason: Failure) -> None:
        if not self.listening.called:
            self.listening.errback(reason)
        self.ended.callback(None)


class _BadNext(amp.Command):
    """
    A C{NextWorker} whose timeout is any text (the schema would refuse to send it).
    """

    commandName = b"NextWorker"
    arguments = [(b"timeout", amp.Unicode())]
    response = [(b"worker_id", amp.Unicode())]


#: The pools: workers, their capacity, the front ends' calls a second, and
#: how long those calls may wait for a slot.
POOLS = {
    "default": (6, 4, 30, None),
    "gpu": (2, 2, 6, 0.5),
    "batch": (4, 3, 10, 2.0),
}


@define
class _Load:
    """
    The bounded load: every step is scheduled by the second it happens at.
    """

    reactor: Any
    ports: Dict[str, int]
    started: float
    scheduler: SchedulerClient = field(init=False)
    leaving: Optional[SchedulerClient] = None
    numbered: SchedulerClient = field(init=False)
    frontends: List[FrontendClient] = field(init=False)
    raw: List[amp.AMP] = field(factory=list)
    last_second: int = -1
    seq: int = 0

    def __attrs_post_init__(self) -> None:
        scheduler = f"tcp:{LOOPBACK}:{self.ports['scheduler']}"
        frontend = f"tcp:{LOOPBACK}:{self.ports['frontend']}"
        self.scheduler = SchedulerClient(self.reactor, scheduler)
        self.numbered = SchedulerClient(self.reactor, scheduler, number_updates=False)
        self.frontends = [FrontendClient(self.reactor, frontend) for _ in range(3)]
        for client in (self.scheduler, self.numbered, *self.frontends):
            client.start()

    def clients(self) -> List[Any]:
        leaving = [] if self.leaving is None else [self.leaving]
        return [self.scheduler, self.numbered, *self.frontends, *leaving]

    def tick(self) -> None:
        """
        Every tenth of a second: the front ends' calls; once a second, the
        scheduler's updates and that second's events.
        """
        now = self.reactor.seconds() - self.started
        second = int(now)
        for number, (pool, (_, _, per_second, timeout)) in enumerate(POOLS.items()):
            demand = per_second * (1.6 if 20 <= now < 40 else 1.0) / 10
            calls = int(demand) + (1 if (now * 10) % 1 < demand % 1 else 0)
            for _ in range(calls):
                client = self.frontends[number % len(self.frontends)]
                _quiet(client.next_worker(pool=pool, timeout=timeout))
        if second != self.last_second:
            self.last_second = second
            self.second(second)

    def second(self, second: int) -> None:
        for pool, (workers, capacity, _, _) in POOLS.items():
            for number in range(workers):
                free = capacity if pool != "batch" else 1 + (second + number) % capacity
                _quiet(self.scheduler.update(f"{pool}-{number}", "10.0.0.1", 9000 + number,
                                             free, pool=pool))
        if second < 25 or 32 <= second < 42:  # spot workers: updated, then left to their ttl
            for number in range(2):
                _quiet(self.scheduler.update(f"spot-{number}", "10.0.0.2", 9000 + number, 2,
                                             ttl=3.0))
        if second in (1, 22):  # a scheduler that comes, registers workers and leaves
            self.leaving = SchedulerClient(self.reactor, self.scheduler.endpoint)
            self.leaving.start()
            for number in range(3):
                _quiet(self.leaving.update(f"leaving-{number}", "10.0.0.3", 9000, 2, pool="batch"))
        if second in (15, 36) and self.leaving is not None:  # gone: the lease grace runs
            _quiet(self.leaving.stop())
            self.leaving = None
        if second % 3 == 0:  # a scheduler sending one update three times, then an older one
            self.seq += 2
            for seq in (self.seq, self.seq, self.seq - 1):
                _quiet(self.numbered.update("numbered", "10.0.0.4", 9000, 1, seq=seq))
        if second in (10, 45):
            _quiet(self.scheduler.gone("default-0"))
        if second % 5 == 2:
            ensureDeferred(self.bad_inputs())
        if second == 30:  # a burst of waiting calls past --max-waiting
            for _ in range(40):
                _quiet(self.frontends[0].next_worker(pool="gpu", timeout=1.0))
        if second == 35:
            ensureDeferred(self.connections(12))
        if second == 50:
            for connection in self.raw[1:]:
                _close(connection)
            del self.raw[1:]

    async def bad_inputs(self) -> None:
        """
        A bad C{NextWorker} on the front end; C{NextWorker} on the scheduler listener.
        """
        if not self.raw:
            await self.connections(1)
        await _quietly(self.raw[0].callRemote(_BadNext, timeout="soon"))
        scheduler = await self._connect(self.ports["scheduler"])
        await _quietly(scheduler.callRemote(NextWorker))
        _close(scheduler)

    async def connections(self, count: int) -> None:
        for _ in range(count):
            try:
                self.raw.append(await self._connect(self.ports["frontend"]))
            except Exception:  # refused at the cap: what the panel shows
                continue

    async def _connect(self, port: int) -> amp.AMP:
        endpoint = TCP4ClientEndpoint(self.reactor, LOOPBACK, port)
        connected: amp.AMP = await connectProtocol(endpoint, amp.AMP())
        return connected

    async def stop(self) -> None:
        for connection in self.raw:
            _close(connection)
        for client in self.clients():
            await client.stop()


def _close(connection: amp.AMP) -> None:
    if connection.transport is not None:
        connection.transport.loseConnection()


def _quiet(answered: Deferred[Any]) -> None:
    answered.addErrback(lambda _: None)


async def _quietly(answered: Deferred[Any]) -> None:
    _quiet(answered)
    await answered


async def run(reactor: Any, duration: float) -> Tuple[History, float]:
    """
    Start a dispatcher, load it and scrape it for C{duration} seconds: the
    scrapes, and when they began (wall clock).
    """
    dispatcher = _Dispatcher()
    arguments = [sys.executable, "-m", "amp_dispatch", "serve", "--log-format", "json",
                 "--frontend", ANY_PORT, "--scheduler", ANY_PORT, "--admin", ANY_PORT,
                 "--lease-grace", "5", "--max-waiting", "30",
                 "--max-frontend-connections", "12"]
    process = reactor.spawnProcess(dispatcher, sys.executable, arguments, env=None)
    try:
        await dispatcher.listening
        history = History()
        began = time.time()
        load = _Load(reactor, dispatcher.ports, reactor.seconds())
        ticking = LoopingCall(load.tick)
        ticking.clock = reactor
        ticking.start(0.1)
        url = f"http://{LOOPBACK}:{dispatcher.ports['admin']}/metrics".encode("ascii")
        target = {"job": JOB, "instance": f"{LOOPBACK}:{dispatcher.ports['admin']}"}
        for second in range(int(duration) + 1):
            await deferLater(reactor, max(0.0, load.started + second - reactor.seconds()))
            response = await Agent(reactor).request(b"GET", url)
            body = (await readBody(response)).decode("utf-8")
            history.add(reactor.seconds() - load.started, body, target)
        ticking.stop()
        await load.stop()
    finally:
        if not dispatcher.ended.called:
            process.signalProcess("TERM")
        await dispatcher.ended
    return history, began


# -- the picture ----------------------------------------------------------------

_PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9",
            "#705DA0", "#37872D", "#FADE2A"]
_COLORS = {"red": "#F2495C", "green": "#73BF69", "blue": "#5794F2", "orange": "#FF9830"}
_BACKGROUND, _PANEL, _TEXT, _GRID = "#111217", "#181B1F", "#CCCCDC", "#2C3235"
#: Pixels of one grid column and one grid row (Grafana: 24 columns, 30 px rows).
_COLUMN, _ROW, _GAP, _HEADER = 80, 32, 8, 90


def _format(unit: str) -> Callable[[float], str]:
    def short(value: float) -> str:
        if math.isnan(value):
            return "-"
        if unit == "percentunit":
            return f"{value * 100:.3g}%"
        if unit == "bytes":
            return f"{value / 2**20:.0f} MiB"
        if unit == "s":
            return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
        text = f"{value:.3g}" if value < 1000 else f"{value:,.0f}"
        return text + (" /s" if unit == "ops" else "")

    return short


def _legend(template: str, labels: Labels) -> str:
    found = dict(labels)
    if not template:
        return "{" + ", ".join(f'{key}="{value}"' for key, value in labels) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda name: found.get(name.group(1), ""), template)


def _series(
    panel: Dict[str, Any], history: History, variables: Dict[str, str]
) -> List[Tuple[str, List[float]]]:
    """
    Each of the panel's series, by legend: its value at every scrape.
    """
    series: Dict[str, List[float]] = {}
    for target in panel["targets"]:
        query = parse(target["expr"], variables)
        for at in range(len(history.times)):
            value = query(history, at)
            vector = value if isinstance(value, dict) else {(): value}
            for labels, number in vector.items():
                name = _legend(target.get("legendFormat", ""), labels)
                series.setdefault(name, [math.nan] * len(history.times))[at] = number
    return sorted(series.items())


def draw(model: Dict[str, Any], history: History, began: float, out: Path) -> None:
    """
    Draw every panel of C{model} at its place, from C{history}.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    variables = {"job": JOB, "instance": ".*", "pool": ".*",
                 "__rate_interval": RATE_INTERVAL}
    bottom = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in model["panels"])
    width, height = 24 * _COLUMN + _GAP, _HEADER + bottom * _ROW + _GAP
    figure = plt.figure(figsize=(width / 100, height / 100), dpi=100, facecolor=_BACKGROUND)
    figure.text(_GAP / width, 1 - 24 / height, model["title"], color=_TEXT, fontsize=18,
                va="center", weight="bold")
    figure.text(
        _GAP / width, 1 - 60 / height,
        f"Rendered by scripts/dashboard_picture.py from a real run ({len(history.times)} scrapes "
        f"of /metrics, one a second, of amp-dispatch serve under a {history.times[-1]:.0f} s load),"
        "\nfrom docs/grafana-dashboard.json's panels and expressions: not a Grafana screenshot.  "
        f"job={JOB}, instance=All, pool=All, $__rate_interval={RATE_INTERVAL}.",
        color="#8E8E8E", fontsize=10.5, va="center",
    )
    clock = FuncFormatter(lambda x, _: time.strftime("%H:%M:%S", time.localtime(began + x)))
    for panel in model["panels"]:
        grid = panel["gridPos"]
        left, top = _GAP + grid["x"] * _COLUMN, _HEADER + grid["y"] * _ROW
        box_width, box_height = grid["w"] * _COLUMN - _GAP, grid["h"] * _ROW - _GAP
        frame = figure.add_axes(
            (left / width, 1 - (top + box_height) / height, box_width / width,
             box_height / height)
        )
        frame.set_xticks([])
        frame.set_yticks([])
        frame.set_facecolor(_PANEL)
        for spine in frame.spines.values():
            spine.set_color(_GRID)
        frame.text(10 / box_width, 1 - 14 / box_height, panel["title"], color=_TEXT,
                   fontsize=10.5, weight="bold", va="center", transform=frame.transAxes)
        series = _series(panel, history, variables)
        defaults = panel["fieldConfig"]["defaults"]
        show = _format(defaults.get("unit", "short"))
        if panel["type"] == "stat":
            _stat(figure, frame, defaults, series, show, history)
            continue
        plot = figure.add_axes(
            ((left + 62) / width, 1 - (top + box_height - 44) / height,
             (box_width - 78) / width, (box_height - 78) / height)
        )
        plot.set_facecolor(_PANEL)
        for number, (name, values) in enumerate(series):
            color = _PALETTE[number % len(_PALETTE)]
            plot.plot(history.times, values, color=color, linewidth=1.2, label=name)
            plot.fill_between(history.times, values, color=color, alpha=0.1)
        plot.set_xlim(history.times[0], history.times[-1])
        plot.set_ylim(bottom=0)
        if "max" in defaults:
            plot.set_ylim(top=defaults["max"])
        plot.set_xticks([tick for tick in range(10, int(history.times[-1]) - 3, 10)])
        plot.xaxis.set_major_formatter(clock)
        plot.yaxis.set_major_formatter(FuncFormatter(lambda y, _, show=show: show(y)))
        plot.tick_params(colors="#8E8E8E", labelsize=8, length=0)
        plot.grid(color=_GRID, linewidth=0.6)
        for spine in plot.spines.values():
            spine.set_visible(False)
        if series:
            columns = min(len(series), max(2, grid["w"] // 2))
            plot.legend(loc="upper left", bbox_to_anchor=(0, -0.14), ncol=columns,
                        frameon=False, fontsize=8, labelcolor=_TEXT, handlelength=1.2,
                        borderaxespad=0, columnspacing=1.2)
        else:
            plot.text(0.5, 0.5, "No data", color="#8E8E8E", ha="center",
                      transform=plot.transAxes)
    figure.savefig(out, facecolor=_BACKGROUND)
    plt.close(figure)


def _stat(
    figure: Any,
    frame: Any,
    defaults: Dict[str, Any],
    series: List[Tuple[str, List[float]]],
    show: Callable[[float], str],
    history: History,
) -> None:
    """
    A stat panel: the last value, coloured by its thresholds or mapped to
    text, over its sparkline.
    """
    values = series[0][1] if series else []
    last = next((value for value in reversed(values) if not math.isnan(value)), math.nan)
    color = _COLORS["blue"]
    for step in defaults.get("thresholds", {}).get("steps", []):
        if step["value"] is None or (not math.isnan(last) and last >= step["value"]):
            color = _COLORS.get(step["color"], step["color"])
    text = show(last)
    for mapping in defaults.get("mappings", []):
        if not math.isnan(last):
            text = mapping["options"].get(str(int(last)), {}).get("text", text)
    frame.set_facecolor(color)
    frame.text(0.5, 0.42, text, color="white", fontsize=22, weight="bold", ha="center",
               va="center", transform=frame.transAxes)
    if values:
        spark = frame.inset_axes((0, 0, 1, 0.35))
        spark.axis("off")
        spark.fill_between(history.times, [0 if math.isnan(v) else v for v in values],
                           color="white", alpha=0.18, linewidth=0)
        spark.set_xlim(history.times[0], history.times[-1])
        spark.set_ylim(bottom=0)


def main(reactor: Any, *argv: str) -> Deferred[None]:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--duration", type=float, default=DURATION,
                         help="seconds of load and scrapes (default %(default)s)")
    options.add_argument("--out", type=Path, default=PICTURE, help="the picture (PNG)")
    arguments = options.parse_args(argv)
    # Twisted's readBody warns about the HTTP client's own transport.
    warnings.filterwarnings("ignore", "Using readBody", DeprecationWarning)
    # The clients' connection and call events are not this script's output.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def picture() -> None:
        model = json.loads(DASHBOARD.read_text(encoding="utf-8"))
        history, began = await run(reactor, arguments.duration)
        draw(model, history, began, arguments.out)
        print(f"{arguments.out}: {len(history.times)} scrapes")

    return ensureDeferred(picture())


if __name__ == "__main__":
    react(main, sys.argv[1:])
