"""
Helpers of the client tests that need more than
L{amp_dispatch.testing.MemoryDispatcher}: a scripted dispatcher stand-in, and
an in-memory network on a L{MemoryReactorClock} whose connections the test
completes, refuses and drops by hand.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple, Type

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, ServerFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter, IOPump

FRONTEND_PORT = 8750
SCHEDULER_PORT = 8751
FRONTEND = f"tcp:127.0.0.1:{FRONTEND_PORT}"
SCHEDULER = f"tcp:127.0.0.1:{SCHEDULER_PORT}"

#: Reconnect after exactly one second: no jitter, so tests know when.
RETRY_DELAY = 1.0


def fixed_retry(attempt: int) -> float:
    """
    A retry policy without backoff or jitter.
    """
    return RETRY_DELAY


class ScriptedServer(amp.AMP):
    """
    A dispatcher stand-in: records each command box it receives and answers
    only when the test fires the answer's Deferred (see L{Script}).
    """

    def __init__(self, script: Script) -> None:
        super().__init__()
        self._script = script

    def ampBoxReceived(self, box: amp.AmpBox) -> None:
        if amp.COMMAND in box:
            self._script.received.append(box)
        super().ampBoxReceived(box)

    def locateResponder(self, name: bytes) -> Any:
        command = self._script.commands.get(name)
        if command is None:
            return None
        return lambda box: self._script.respond(command, box)


class Script:
    """
    What a L{ScriptedServer} received, and the answers it holds.

    @ivar received: every command box, in order of arrival.
    @ivar pending: one Deferred per received command, not yet answered;
        fire it with the answer dict (or an error) to answer.
    @ivar auto: answers to give at once, by command name, if any.
    """

    def __init__(self, commands: Tuple[Type[amp.Command], ...]) -> None:
        self.commands = {command.commandName: command for command in commands}
        self.received: List[amp.AmpBox] = []
        self.pending: List[Deferred[Dict[str, Any]]] = []
        self.auto: Dict[bytes, Dict[str, Any]] = {}

    def respond(self, command: Type[amp.Command], box: amp.AmpBox) -> Deferred[amp.AmpBox]:
        answer: Deferred[Dict[str, Any]] = Deferred()
        if command.commandName in self.auto:
            answer.callback(self.auto[command.commandName])
        else:
            self.pending.append(answer)
        errors: Dict[Type[Exception], bytes] = command.allErrors  # type: ignore[attr-defined]

        def declared(failure: Failure) -> Failure:
            error = failure.trap(*errors)
            return Failure(amp.RemoteAmpError(errors[error], str(failure.value)))

        return answer.addCallback(command.makeResponse, None).addErrback(declared)

    def sent(self, name: bytes) -> List[Dict[str, bytes]]:
        """
        The raw arguments of every received C{name} command, in order.
        """
        return [
            {key.decode(): value for key, value in box.items() if not key.startswith(b"_")}
            for box in self.received
            if box[amp.COMMAND] == name
        ]

    def factory(self) -> ServerFactory:
        """
        A server factory of L{ScriptedServer}s on this script.
        """
        script = self

        class _Factory(ServerFactory):
            def buildProtocol(self, addr: Optional[IAddress]) -> ScriptedServer:
                return ScriptedServer(script)

        return _Factory()


class Network:
    """
    An in-memory network on a L{MemoryReactorClock}: listeners by port, and
    the client connections the test lets through.
    """

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self._completer = ConnectionCompleter(self.reactor)
        self.pumps: List[IOPump] = []

    def listen(self, port: int, factory: Factory) -> None:
        """
        Listen on C{port} with C{factory}, instead of whatever listened there.
        """
        self.reactor.tcpServers[:] = [s for s in self.reactor.tcpServers if s[0] != port]
        self.reactor.listenTCP(port, factory)

    def attempts(self) -> int:
        """
        Connection attempts waiting to be completed or refused.
        """
        return len(self.reactor.tcpClients)

    def complete(self) -> IOPump:
        """
        Complete the oldest connection attempt and flush its greeting.
        """
        pump = self._completer.succeedOnce()
        assert pump is not None, "no connection attempt to complete"
        self.pumps.append(pump)
        return pump

    def refuse(self) -> None:
        """
        Refuse the oldest connection attempt.
        """
        self._completer.failOnce(Failure(ConnectionRefusedError("Connection refused")))

    def flush(self) -> None:
        """
        Move all bytes (and disconnections) along every connection.
        """
        while any([pump.flush() for pump in self.pumps]):
            pass

    def drop(self, pump: IOPump) -> None:
        """
        Drop a connection from the server's side, as a dispatcher restart would.
        """
        pump.serverIO.loseConnection()
        pump.flush()
