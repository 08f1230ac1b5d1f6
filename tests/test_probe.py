"""
Tests of C{amp-dispatch probe} (L{amp_dispatch.cli._probe}): its argument parsing
and output formatting as pure functions, L{run_probe} in-process against a
real dispatcher listening on loopback, and the real command run as a
subprocess for its exit codes.
"""

from __future__ import annotations

import json
import socket
from typing import Any, AsyncIterator, Callable, Coroutine, List, TypeVar, cast

import pytest
import pytest_twisted
import structlog
from amp_dispatch_commands import NoWorkerAvailable, Stats
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.python import usage

from amp_dispatch.cli._probe import (
    ProbeFailed,
    ProbeOptions,
    describe_error,
    render_gone,
    render_stats,
    render_update,
    render_worker,
    render_workers,
    run_probe,
)
from amp_dispatch.cli._probe import probe as make_probe
from amp_dispatch.client import (
    CallTimedOut,
    DispatcherStats,
    DispatcherUnavailable,
    RegisteredWorker,
    Worker,
    WorkerPage,
)
from amp_dispatch.client._defaults import (
    CLIENT_CALL_TIMEOUT,
    CONNECT_FRONTEND,
    CONNECT_SCHEDULER,
)
from amp_dispatch.client._errors import wrong_listener
from amp_dispatch.server._service import DispatcherService
from amp_dispatch.store._interface import UpdateOutcome, WorkerReport
from amp_dispatch.store._memory import MemoryStore
from tests._deferreds import failure_of
from tests._memory import registered
from tests.integration._process import probe_process

T = TypeVar("T")

ANY_PORT = "tcp:0:interface=127.0.0.1"

#: Seconds a subprocess or a wait may take before the test fails (liveness only).
LIVENESS_TIMEOUT = 30.0

STATS = {"workers": 2, "free_slots": 5, "waiting": 0, "dispatched": 7, "protocol": 1}


def parse(*argv: str) -> ProbeOptions:
    """
    The probe's options parsed from C{argv} (the words after C{probe}).
    """
    options = ProbeOptions()
    options.parseOptions(list(argv))
    return options


def row(
    worker_id: str,
    pool: str = "default",
    host: str = "10.0.0.1",
    port: int = 9000,
    capacity: int = 2,
    free: int = 2,
    expires_in: float = -1.0,
) -> RegisteredWorker:
    """
    One C{ListWorkers} row.
    """
    return RegisteredWorker(worker_id, host, port, pool, capacity, free, expires_in)


def free_port() -> int:
    """
    A loopback port nothing listens on (bound, then closed).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def dead_endpoint() -> str:
    return f"tcp:127.0.0.1:{free_port()}"


# -- argument parsing ----------------------------------------------------------


def test_defaults() -> None:
    """
    Without options the probe talks to the default listeners of a local
    dispatcher, with a 5 s call timeout and human output.
    """
    options = parse("stats")
    assert (options["frontend"], options["scheduler"], options["timeout"]) == (
        "tcp:127.0.0.1:8750",
        "tcp:127.0.0.1:8751",
        5.0,
    )
    assert (
        options["frontend"],
        options["scheduler"],
        options["timeout"],
    ) == (CONNECT_FRONTEND, CONNECT_SCHEDULER, CLIENT_CALL_TIMEOUT)
    assert not options.as_json


def test_update_positional_arguments() -> None:
    """
    C{update WORKER_ID HOST PORT CAPACITY} takes the worker's id and host,
    and its port and capacity as integers.
    """
    update = parse("update", "w1", "10.0.0.1", "9000", "2").subOptions
    names = ("worker_id", "host", "port", "capacity")
    assert [update[name] for name in names] == ["w1", "10.0.0.1", 9000, 2]
    assert (type(update["port"]), type(update["capacity"])) == (int, int)


def test_options_after_positional_arguments() -> None:
    """
    A subcommand's options may follow its positional arguments.
    """
    options = parse("update", "w1", "h", "9000", "2", "--pool", "gpu", "--ttl", "30")
    assert (options.subOptions["pool"], options.subOptions["ttl"]) == ("gpu", 30.0)


def test_double_dash_ends_options() -> None:
    """
    After C{--} a worker id may start with a dash.
    """
    options = parse("gone", "--", "-w1")
    assert options.subOptions["worker_id"] == "-w1"


def test_negative_number_is_positional_value() -> None:
    """
    A negative number is a positional value, not an option.
    """
    update = parse("update", "w1", "h", "-9000", "-1").subOptions
    assert (update["port"], update["capacity"]) == (-9000, -1)


def test_negative_number_is_option_value() -> None:
    """
    A negative number after an option that takes a value is its value,
    however the option is written.
    """
    options = parse("update", "w1", "h", "9000", "-1", "--seq", "-5", "--ttl=-1")
    assert [options.subOptions[name] for name in ("capacity", "seq", "ttl")] == [-1, -5, -1.0]


def test_unknown_option_still_refused() -> None:
    """
    A word that starts with a dash but is no number is still an option.
    """
    with pytest.raises(usage.UsageError, match="option -x not recognized"):
        parse("update", "w1", "h", "9000", "1", "-x")


def test_negative_capacity_refused_by_schema() -> None:
    """
    A negative capacity gets the schema's message, naming the field, before
    anything connects.
    """
    options = parse("update", "w1", "h", "9000", "-1")
    failed = failure_of(
        Deferred.fromCoroutine(make_probe(MemoryReactorClock(), options)), ProbeFailed
    )
    assert str(failed.value) == "INVALID_ARGUMENT: capacity: must be within 0..1000000000"


def test_non_integer_port_is_usage_error() -> None:
    """
    A PORT that is not an integer is a usage error naming it.
    """
    with pytest.raises(usage.UsageError, match="PORT must be an integer, not 'abc'"):
        parse("update", "w1", "h", "abc", "2")


def test_wrong_number_of_arguments_is_usage_error() -> None:
    """
    C{update} needs exactly four positional arguments.
    """
    with pytest.raises(usage.UsageError, match="Wrong number of arguments"):
        parse("update", "w1", "h", "9000")


def test_non_integer_limit_is_usage_error() -> None:
    """
    C{--limit} must be an integer.
    """
    with pytest.raises(usage.UsageError, match="--limit must be an integer"):
        parse("list", "--limit", "many")


def test_timeout_must_be_positive() -> None:
    """
    C{--timeout 0} is a usage error: every call needs some time.
    """
    with pytest.raises(usage.UsageError, match="--timeout must be a finite number > 0"):
        parse("--timeout", "0", "stats")


def test_command_required() -> None:
    """
    The probe without a command is a usage error listing the commands.
    """
    with pytest.raises(usage.UsageError, match="next, update, gone, stats or list"):
        parse()


def test_json_after_command() -> None:
    """
    C{--json} counts after the command too (C{probe stats --json}).
    """
    assert parse("stats", "--json").as_json


@pytest.mark.parametrize(
    ("argv", "listener"),
    [
        (["next"], "frontend"),
        (["stats"], "frontend"),
        (["stats", "--scheduler"], "scheduler"),
        (["update", "w1", "h", "1", "1"], "scheduler"),
        (["gone", "w1"], "scheduler"),
        (["list"], "scheduler"),
    ],
)
def test_listener_of_each_command(argv: List[str], listener: str) -> None:
    """
    C{next} and C{stats} ask the front end, C{stats --scheduler} and the
    worker commands the scheduler listener.
    """
    assert parse(*argv).subOptions.listener() == listener


# -- output --------------------------------------------------------------------


def test_render_worker() -> None:
    """
    A NextWorker answer reads C{worker_id host:port}.
    """
    worker = Worker("w1", "10.0.0.1", 9000)
    assert render_worker(worker, as_json=False) == "w1 10.0.0.1:9000"


def test_render_worker_ipv6() -> None:
    """
    An IPv6 host is shown in brackets.
    """
    worker = Worker("w1", "::1", 9000)
    assert render_worker(worker, as_json=False) == "w1 [::1]:9000"


def test_render_worker_json() -> None:
    """
    As JSON, a NextWorker answer is one object with its three fields, in
    the schema's order.
    """
    worker = Worker("w1", "10.0.0.1", 9000)
    assert render_worker(worker, as_json=True) == (
        '{"worker_id": "w1", "host": "10.0.0.1", "port": 9000}'
    )


@pytest.mark.parametrize(
    ("accepted", "text"),
    [(True, "accepted"), (False, "not accepted (stale or duplicate seq)")],
)
def test_render_update(accepted: bool, text: str) -> None:
    """
    A WorkerUpdate answer says whether the update was accepted.
    """
    assert render_update(accepted, as_json=False) == text


def test_render_update_json() -> None:
    """
    As JSON: C{{"accepted": ...}}.
    """
    assert render_update(False, as_json=True) == '{"accepted": false}'


@pytest.mark.parametrize(("known", "text"), [(True, "removed"), (False, "not registered")])
def test_render_gone(known: bool, text: str) -> None:
    """
    A WorkerGone answer says whether the worker was registered.
    """
    assert render_gone(known, as_json=False) == text


def test_render_gone_json() -> None:
    """
    As JSON: C{{"known": ...}}.
    """
    assert render_gone(True, as_json=True) == '{"known": true}'


def test_render_stats() -> None:
    """
    Stats are C{name: value} lines.
    """
    assert render_stats(DispatcherStats(**STATS), as_json=False) == (
        "workers: 2\nfree_slots: 5\nwaiting: 0\ndispatched: 7\nprotocol: 1"
    )


def test_render_stats_in_schema_order() -> None:
    """
    The stats lines come in the order of the schema's C{Stats} answer.
    """
    rendered = render_stats(DispatcherStats(**STATS), as_json=False)
    names = [line.split(":")[0] for line in rendered.split("\n")]
    assert names == [name.decode("ascii") for name, _ in Stats.response]


def test_render_stats_json() -> None:
    """
    As JSON, stats are one object of the counters, in the schema's order.
    """
    rendered = render_stats(DispatcherStats(**STATS), as_json=True)
    assert rendered == json.dumps(STATS)


def test_render_workers_table() -> None:
    """
    Workers are an aligned table, numbers right-aligned, C{-} when no
    removal is pending.
    """
    rows = [
        row("w1", expires_in=12.345),
        row("worker-22", pool="gpu", host="::1", port=80, capacity=10, free=3),
    ]
    assert render_workers(WorkerPage(rows, None), as_json=False).split("\n") == [
        "worker_id  pool     address        capacity  free  expires_in",
        "w1         default  10.0.0.1:9000         2     2       12.3s",
        "worker-22  gpu      [::1]:80             10     3           -",
    ]


def test_render_workers_next_line() -> None:
    """
    When more workers follow, a last line says how to ask for them.
    """
    rendered = render_workers(WorkerPage([row("w1")], "w1"), as_json=False)
    assert rendered.split("\n")[-1] == "next: --after w1"


def test_render_no_workers() -> None:
    """
    An empty page reads C{no workers}.
    """
    assert render_workers(WorkerPage([], None), as_json=False) == "no workers"


def test_render_workers_json() -> None:
    """
    As JSON: C{{"workers": [...], "next_after": ...}} with the rows as sent,
    their fields in the schema's order.
    """
    rendered = render_workers(WorkerPage([row("w1")], "w1"), as_json=True)
    assert rendered == (
        '{"workers": [{"worker_id": "w1", "host": "10.0.0.1", "port": 9000,'
        ' "pool": "default", "capacity": 2, "free": 2, "expires_in": -1.0}],'
        ' "next_after": "w1"}'
    )


def test_describe_dispatch_error() -> None:
    """
    A dispatcher error reads C{CODE: message}.
    """
    error = NoWorkerAvailable("no worker of pool 'default' has a free slot")
    assert describe_error(error, CONNECT_FRONTEND, "frontend") == (
        "NO_WORKER_AVAILABLE: no worker of pool 'default' has a free slot"
    )


def test_describe_connection_refused() -> None:
    """
    A refused connection reads C{cannot connect to EP: Connection refused}.
    """
    error = DispatcherUnavailable("cannot connect to ...: Connection was refused by other side")
    error.__cause__ = ConnectionRefusedError(111, "Connection refused")
    assert describe_error(error, CONNECT_FRONTEND, "frontend") == (
        "cannot connect to tcp:127.0.0.1:8750: Connection refused"
    )


def test_describe_unhandled_command() -> None:
    """
    A command the listener does not serve reads C{UNHANDLED: ...}, asking
    whether the endpoint is the right listener.
    """
    error = wrong_listener("NextWorker", "Unhandled Command: b'NextWorker'")
    assert describe_error(error, CONNECT_SCHEDULER, "frontend") == (
        "UNHANDLED: Unhandled Command: b'NextWorker' (is tcp:127.0.0.1:8751 the frontend listener?)"
    )


def test_describe_client_error() -> None:
    """
    The client's own errors read as their message.
    """
    error = CallTimedOut("no answer to Stats from tcp:127.0.0.1:8750 within 5.0 s")
    assert describe_error(error, CONNECT_FRONTEND, "frontend") == str(error)


def test_describe_other_error() -> None:
    """
    Any other error (a TLS failure, say) names the endpoint and the error's
    type.
    """
    error = ValueError("certificate verify failed")
    assert describe_error(error, "tls:example.com:8750", "frontend") == (
        "call to tls:example.com:8750 failed: builtins.ValueError: certificate verify failed"
    )


def test_describe_error_one_line() -> None:
    """
    A message with line breaks becomes one line.
    """
    error = amp.RemoteAmpError(b"UNKNOWN", "first\nsecond")
    assert describe_error(error, CONNECT_FRONTEND, "frontend") == "UNKNOWN: first second"


# -- in-process runs against a real dispatcher ---------------------------------


def twisted_test(
    test: Callable[..., Coroutine[Any, Any, None]],
) -> Callable[..., Deferred[None]]:
    """
    C{pytest_twisted.ensureDeferred}, typed.
    """
    return cast(Callable[..., "Deferred[None]"], pytest_twisted.ensureDeferred(test))


def async_fixture(fixture: Callable[..., AsyncIterator[T]]) -> Callable[..., AsyncIterator[T]]:
    """
    C{pytest_twisted.async_yield_fixture}, typed.
    """
    return cast(Callable[..., AsyncIterator[T]], pytest_twisted.async_yield_fixture(fixture))


async def stop(service: DispatcherService) -> None:
    stopping = service.stopService()
    if stopping is not None:
        await stopping


async def start_service(reactor: Any, lease_grace: float) -> DispatcherService:
    service = DispatcherService(
        reactor, frontend=ANY_PORT, scheduler=ANY_PORT, lease_grace=lease_grace
    )
    await service.listen()
    return service


@async_fixture
async def service(reactor: Any) -> AsyncIterator[DispatcherService]:
    """
    A dispatcher on free loopback ports whose workers outlive the probe's
    connection (lease grace 30 s).
    """
    service = await start_service(reactor, lease_grace=30.0)
    try:
        yield service
    finally:
        await stop(service)


def memory(service: DispatcherService) -> MemoryStore:
    """
    The service's store (in memory, as the tests start it).
    """
    assert isinstance(service.store, MemoryStore)
    return service.store


def endpoints(service: DispatcherService) -> List[str]:
    """
    The probe options that point at C{service}'s listeners.
    """
    ports = {address.role: address.port for address in service.addresses}
    return [
        "--frontend",
        f"tcp:127.0.0.1:{ports['frontend']}",
        "--scheduler",
        f"tcp:127.0.0.1:{ports['scheduler']}",
    ]


async def probe(reactor: Any, *argv: str) -> int:
    """
    Run the probe in-process with C{argv}; its exit status.
    """
    try:
        await run_probe(reactor, parse(*argv))
    except SystemExit as e:
        assert isinstance(e.code, int)
        return e.code
    return 0


def register(service: DispatcherService, worker_id: str, capacity: int = 2, **extra: Any) -> None:
    """
    Register a worker straight in the queue (held by no connection).
    """
    service.store.update(WorkerReport(worker_id, "10.0.0.1", 9000, capacity, **extra))


def registered_ids(service: DispatcherService) -> List[str]:
    return [worker.worker_id for worker in registered(memory(service))]


@twisted_test
async def test_next_prints_worker(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{next} prints the worker that takes the job and exits 0.
    """
    register(service, "w1")
    assert await probe(reactor, *endpoints(service), "next") == 0
    assert capsys.readouterr() == ("w1 10.0.0.1:9000\n", "")


@twisted_test
async def test_next_json(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{--json next} prints the answer as one JSON object.
    """
    register(service, "w1")
    assert await probe(reactor, *endpoints(service), "--json", "next") == 0
    out = capsys.readouterr().out
    assert json.loads(out) == {"worker_id": "w1", "host": "10.0.0.1", "port": 9000}


@twisted_test
async def test_next_pool(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{next --pool P} asks for a worker of that pool.
    """
    register(service, "w1")
    register(service, "g1", pool="gpu")
    assert await probe(reactor, *endpoints(service), "next", "--pool", "gpu") == 0
    assert capsys.readouterr().out == "g1 10.0.0.1:9000\n"


@twisted_test
async def test_no_worker_available(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    With no free slot, C{next} exits 1 with one line on stderr naming the
    error, and prints nothing on stdout.
    """
    assert await probe(reactor, *endpoints(service), "next") == 1
    assert capsys.readouterr() == (
        "",
        "amp-dispatch probe: NO_WORKER_AVAILABLE: no worker of pool 'default' has a free slot\n",
    )


@twisted_test
async def test_next_wait_answered_by_update(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{next --wait S} waits for a slot and prints the worker an update frees.
    """
    reactor.callLater(0.1, register, service, "late")
    assert await probe(reactor, *endpoints(service), "next", "--wait", "10") == 0
    assert capsys.readouterr().out == "late 10.0.0.1:9000\n"


@twisted_test
async def test_update_registers(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{update} registers the worker and prints C{accepted}.
    """
    argv = ["update", "w1", "10.0.0.9", "9001", "3", "--pool", "gpu"]
    assert await probe(reactor, *endpoints(service), *argv) == 0
    assert capsys.readouterr().out == "accepted\n"
    [worker] = registered(memory(service))
    assert (worker.worker_id, worker.host, worker.port, worker.capacity, worker.pool) == (
        "w1",
        "10.0.0.9",
        9001,
        3,
        "gpu",
    )


@twisted_test
async def test_update_leaves_no_seq(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    After a probe update without C{--seq}, an update with the lowest seq is
    still accepted: the probe left no seq behind.
    """
    assert await probe(reactor, *endpoints(service), "update", "w1", "h", "1", "1") == 0
    assert memory(service).update(WorkerReport("w1", "h", 1, 1, seq=0)).accepted


@twisted_test
async def test_update_sends_given_seq(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{update --seq N} sends seq N: the same seq again is a duplicate.
    """
    argv = ["update", "w1", "h", "1", "1", "--seq", "7"]
    assert await probe(reactor, *endpoints(service), *argv) == 0
    assert service.store.update(WorkerReport("w1", "h", 1, 1, seq=7)) is UpdateOutcome.DUPLICATE


@twisted_test
async def test_update_duplicate_seq(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    An update whose seq is a duplicate prints C{not accepted ...} and exits
    0 (the dispatcher answered).
    """
    register(service, "w1", seq=5)
    argv = ["update", "w1", "h", "1", "1", "--seq", "5"]
    assert await probe(reactor, *endpoints(service), *argv) == 0
    assert capsys.readouterr().out == "not accepted (stale or duplicate seq)\n"


@twisted_test
async def test_update_json(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{update --json} prints C{{"accepted": true}}.
    """
    assert await probe(reactor, *endpoints(service), "update", "w1", "h", "1", "1", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"accepted": True}


@twisted_test
async def test_invalid_argument_checked_before_connecting(
    reactor: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A value the schema refuses (port 70000) fails with C{INVALID_ARGUMENT}
    naming the field, without connecting (here nothing listens).
    """
    argv = ["--scheduler", dead_endpoint(), "update", "w1", "h", "70000", "1"]
    assert await probe(reactor, *argv) == 1
    assert capsys.readouterr() == (
        "",
        "amp-dispatch probe: INVALID_ARGUMENT: port: must be within 1..65535\n",
    )


def test_invalid_argument_makes_no_connection() -> None:
    """
    A value the schema refuses fails the probe at once: the connection
    attempt the client's start began is stopped before it connects.
    """
    reactor = MemoryReactorClock()
    options = parse("update", "w1", "h", "70000", "1")
    failed = failure_of(Deferred.fromCoroutine(make_probe(reactor, options)), ProbeFailed)
    assert str(failed.value) == "INVALID_ARGUMENT: port: must be within 1..65535"
    assert [connector.stoppedConnecting for connector in reactor.connectors] == [True]


@twisted_test
async def test_invalid_argument_changes_nothing(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    An update refused as invalid (a NaN ttl) registers nothing.
    """
    argv = ["update", "w1", "h", "1", "1", "--ttl", "nan"]
    assert await probe(reactor, *endpoints(service), *argv) == 1
    assert "INVALID_ARGUMENT: ttl:" in capsys.readouterr().err
    assert registered_ids(service) == []


@twisted_test
async def test_gone_removes(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{gone} removes the worker and prints C{removed}.
    """
    register(service, "w1")
    assert await probe(reactor, *endpoints(service), "gone", "w1") == 0
    assert capsys.readouterr().out == "removed\n"
    assert registered_ids(service) == []


@twisted_test
async def test_gone_unknown(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{gone} of an unknown worker prints C{not registered} and exits 0.
    """
    assert await probe(reactor, *endpoints(service), "gone", "nobody") == 0
    assert capsys.readouterr().out == "not registered\n"


@twisted_test
async def test_stats(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{stats} prints the dispatcher's counters.
    """
    register(service, "w1", capacity=3)
    assert await probe(reactor, *endpoints(service), "stats") == 0
    assert capsys.readouterr().out == (
        "workers: 1\nfree_slots: 3\nwaiting: 0\ndispatched: 0\nprotocol: 1\n"
    )


@twisted_test
async def test_stats_scheduler_listener(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{stats --scheduler} asks the scheduler listener (here the front-end
    endpoint leads nowhere).
    """
    argv = [*endpoints(service), "--frontend", dead_endpoint(), "stats", "--scheduler", "--json"]
    assert await probe(reactor, *argv) == 0
    assert json.loads(capsys.readouterr().out)["protocol"] == 1


@twisted_test
async def test_list_table(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{list} prints the workers as a table in worker_id order.
    """
    register(service, "w2", capacity=3)
    register(service, "w1")
    assert await probe(reactor, *endpoints(service), "list") == 0
    assert capsys.readouterr().out.split("\n") == [
        "worker_id  pool     address        capacity  free  expires_in",
        "w1         default  10.0.0.1:9000         2     2           -",
        "w2         default  10.0.0.1:9000         3     3           -",
        "",
    ]


@twisted_test
async def test_list_page(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{list --limit N} prints one page and how to ask for the next.
    """
    for worker_id in ("w1", "w2", "w3"):
        register(service, worker_id)
    assert await probe(reactor, *endpoints(service), "list", "--limit", "2") == 0
    lines = capsys.readouterr().out.split("\n")
    assert [line.split()[0] for line in lines[1:3]] == ["w1", "w2"]
    assert lines[3:] == ["next: --after w2", ""]


@twisted_test
async def test_list_after(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{list --after ID} starts after that worker id.
    """
    for worker_id in ("w1", "w2", "w3"):
        register(service, worker_id)
    assert await probe(reactor, *endpoints(service), "list", "--after", "w1", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [worker["worker_id"] for worker in listed["workers"]] == ["w2", "w3"]


@twisted_test
async def test_list_all(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{list --all} follows the pages to the last.
    """
    for worker_id in ("w1", "w2", "w3"):
        register(service, worker_id)
    argv = ["list", "--all", "--limit", "1", "--json"]
    assert await probe(reactor, *endpoints(service), *argv) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [worker["worker_id"] for worker in listed["workers"]] == ["w1", "w2", "w3"]
    assert listed["next_after"] is None


@twisted_test
async def test_list_json(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{list --json} prints the rows as sent and C{next_after}.
    """
    register(service, "w1", ttl=60.0)
    register(service, "w2")
    assert await probe(reactor, *endpoints(service), "list", "--limit", "1", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    [worker] = listed["workers"]
    assert 0 < worker.pop("expires_in") <= 60
    assert worker == {
        "worker_id": "w1",
        "host": "10.0.0.1",
        "port": 9000,
        "pool": "default",
        "capacity": 2,
        "free": 2,
    }
    assert listed["next_after"] == "w1"


@twisted_test
async def test_connection_refused(reactor: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """
    When nothing listens, the probe fails at once: exit 1 and one line.
    """
    endpoint = dead_endpoint()
    assert await probe(reactor, "--frontend", endpoint, "stats") == 1
    assert capsys.readouterr() == (
        "",
        f"amp-dispatch probe: cannot connect to {endpoint}: Connection refused\n",
    )


@twisted_test
async def test_wrong_listener(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    C{next} sent to the scheduler listener fails with C{UNHANDLED}.
    """
    scheduler = endpoints(service)[3]
    with structlog.testing.capture_logs():  # the dispatcher's "input rejected"
        assert await probe(reactor, "--frontend", scheduler, "next") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("amp-dispatch probe: UNHANDLED: ")
    assert err.count("\n") == 1


@twisted_test
async def test_json_error_on_stderr(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    With C{--json} an error still goes to stderr as one line; stdout stays
    empty.
    """
    assert await probe(reactor, *endpoints(service), "--json", "next") == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "amp-dispatch probe: NO_WORKER_AVAILABLE: no worker of pool 'default' has a free slot\n"
    )


@twisted_test
async def test_bad_endpoint(reactor: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """
    An endpoint string Twisted cannot parse is a usage error: exit 2 and
    one line.
    """
    assert await probe(reactor, "--frontend", "nonsense:1", "stats") == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("amp-dispatch probe: bad frontend endpoint 'nonsense:1': ")
    assert err.count("\n") == 1


@twisted_test
async def test_call_timeout(reactor: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """
    A listener that never answers makes the call fail after C{--timeout}.
    """
    port = await serverFromString(reactor, ANY_PORT).listen(Factory.forProtocol(Protocol))
    try:
        endpoint = f"tcp:127.0.0.1:{port.getHost().port}"
        assert await probe(reactor, "--frontend", endpoint, "--timeout", "0.2", "stats") == 1
    finally:
        stopping = port.stopListening()
        if stopping is not None:
            await stopping
    assert capsys.readouterr().err == (
        f"amp-dispatch probe: no answer to Stats from {endpoint} within 0.2 s\n"
    )


@twisted_test
async def test_probe_closes_connection(reactor: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """
    The probe closes its connection before it exits: with no lease grace,
    the worker it registered goes as soon as the dispatcher sees it close.
    """
    service = await start_service(reactor, lease_grace=0)
    try:
        argv = [*endpoints(service), "update", "w1", "h", "1", "1"]
        assert await probe(reactor, *argv) == 0
        for _ in range(int(LIVENESS_TIMEOUT / 0.01)):
            if not registered_ids(service):
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert registered_ids(service) == []
    finally:
        await stop(service)


# -- the real command ----------------------------------------------------------


@twisted_test
async def test_command_answer_only(reactor: Any, service: DispatcherService) -> None:
    """
    The command prints the answer and nothing else: no log lines.
    """
    register(service, "w1")
    assert await probe_process(reactor, *endpoints(service), "next") == (
        "w1 10.0.0.1:9000\n",
        "",
        0,
    )


@twisted_test
async def test_command_connection_refused(reactor: Any) -> None:
    """
    The command exits 1 with one line on stderr when nothing listens.
    """
    endpoint = dead_endpoint()
    assert await probe_process(reactor, "--frontend", endpoint, "next") == (
        "",
        f"amp-dispatch probe: cannot connect to {endpoint}: Connection refused\n",
        1,
    )


@twisted_test
async def test_command_no_worker_available(reactor: Any, service: DispatcherService) -> None:
    """
    The command exits 1 with one line on stderr on C{NO_WORKER_AVAILABLE}.
    """
    assert await probe_process(reactor, *endpoints(service), "next", "--pool", "gpu") == (
        "",
        "amp-dispatch probe: NO_WORKER_AVAILABLE: no worker of pool 'gpu' has a free slot\n",
        1,
    )


@twisted_test
async def test_command_invalid_argument(reactor: Any) -> None:
    """
    The command exits 1 with one line on stderr on C{INVALID_ARGUMENT}.
    """
    argv = ["--scheduler", dead_endpoint(), "update", "w1", "h", "1", "1", "--ttl", "-5"]
    assert await probe_process(reactor, *argv) == (
        "",
        "amp-dispatch probe: INVALID_ARGUMENT: ttl: must not be negative\n",
        1,
    )


@twisted_test
async def test_command_usage_error(reactor: Any) -> None:
    """
    A bad argument is a usage error: exit 2, the reason and where to find
    help on stderr.
    """
    out, err, code = await probe_process(reactor, "update", "w1", "h", "abc", "1")
    assert (out, code) == ("", 2)
    assert err.splitlines() == [
        "amp-dispatch: PORT must be an integer, not 'abc'",
        "Run 'amp-dispatch probe update --help' for help.",
    ]


@twisted_test
async def test_several_endpoints_tried_in_turn(
    reactor: Any, service: DispatcherService, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    Endpoints separated by commas (replicas of a shared store) are tried in
    turn: one that refuses costs a reconnect, not the call.
    """
    register(service, "w1", 1)
    frontend = endpoints(service)[1]
    argv = ["--frontend", f"{dead_endpoint()},{frontend}", "next"]
    assert await probe(reactor, *argv) == 0
    assert capsys.readouterr().out == "w1 10.0.0.1:9000\n"


@twisted_test
async def test_several_endpoints_all_refused(
    reactor: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    When every endpoint refuses, the call fails once each was tried, naming
    each.
    """
    first, second = dead_endpoint(), dead_endpoint()
    assert await probe(reactor, "--frontend", f"{first},{second}", "next") == 1
    error = capsys.readouterr().err
    assert first in error and second in error
