"""
The errors a client raises itself, and how a call's failure becomes one of
them, its message naming the endpoint.

They never cross the wire: the dispatcher's own errors are the schema's
L{amp_dispatch_commands.DispatchError}s.
"""

from __future__ import annotations

from typing import Optional

from attrs import frozen
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionClosed
from twisted.protocols import amp
from twisted.python.failure import Failure

from .._log import get_logger

_log = get_logger("amp_dispatch.client")


class ClientError(Exception):
    """
    Base class of the errors a client raises itself (they never cross the
    wire; the dispatcher's own errors are the schema's L{DispatchError}s).
    """


class DispatcherUnavailable(ClientError):
    """
    The call could not reach the dispatcher: connecting failed (until the
    client has connected once, the first failed attempt fails the calls;
    after, with C{fail_after_failures}), no connection came within the
    call's timeout, the connection was lost before the answer came, or the
    client was not started or was stopped.  The dispatcher may or may not
    have acted on a call that was sent.

    @ivar connection_error: the connection error behind it, when there was
        one: the failed attempt's (C{ConnectionRefusedError}, a DNS or TLS
        error, several joined for several endpoints), the latest attempt's
        when the timeout ran out, or the loss of the connection; else
        C{None}.  The message includes its text.
    """

    def __init__(self, message: str, connection_error: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.connection_error = connection_error


class WrongListener(DispatcherUnavailable, amp.UnhandledCommand):
    """
    The listener called does not serve the command (AMP's C{UNHANDLED}): a
    front-end client given the scheduler listener's endpoint, or the
    reverse.  Nothing was done.

    @ivar description: the dispatcher's own words.
    """

    description = ""


def wrong_listener(command: str, description: str) -> WrongListener:
    """
    The error of a C{command} the listener called does not serve.
    """
    error = WrongListener(
        f"the listener does not serve {command}: is the endpoint the right listener "
        f"(front ends call the front-end one, schedulers the scheduler one)? ({description})"
    )
    error.description = description
    return error


class CallTimedOut(ClientError):
    """
    The call was sent but no answer came within its timeout.  The dispatcher
    may or may not have acted on it; its late answer is ignored.
    """


@frozen
class CallErrors:
    """
    The client errors of the calls to one listener, by what went wrong; each
    failure made is logged (debug, C{dispatcher call failed}).

    @ivar role: C{"frontend"} or C{"scheduler"}, for logs.
    @ivar endpoint: the listener's printable description, for messages.
    """

    role: str
    endpoint: str

    def deadline(
        self, name: str, timeout: float, *, sent: bool, last_error: Optional[Failure] = None
    ) -> ClientError:
        """
        The error of a call to command C{name} whose deadline ran out (after
        C{timeout} seconds): L{CallTimedOut} if it was sent, else
        L{DispatcherUnavailable}, naming C{last_error}, the latest connection
        error, if any.
        """
        if sent:
            return CallTimedOut(f"no answer to {name} from {self.endpoint} within {timeout} s")
        message = f"no connection to {self.endpoint} within {timeout} s"
        if last_error is None:
            return DispatcherUnavailable(message)
        return DispatcherUnavailable(
            f"{message} (last error: {last_error.getErrorMessage()})", last_error.value
        )

    def not_started(self) -> DispatcherUnavailable:
        """
        The error of a call made before the client was started.
        """
        return DispatcherUnavailable(f"client of {self.endpoint} not started: call start() first")

    def stopped(self, name: str) -> DispatcherUnavailable:
        """
        The error of a call cancelled, made after the client stopped, or
        still waiting when it stopped.
        """
        return DispatcherUnavailable(f"client of {self.endpoint} stopped before {name}")

    def lost(self, name: str, reason: Failure) -> DispatcherUnavailable:
        """
        The error of a sent call whose connection was lost with C{reason}.
        """
        return DispatcherUnavailable(
            f"connection to {self.endpoint} lost before {name} was answered:"
            f" {reason.getErrorMessage()}",
            reason.value,
        )

    def cannot_connect(self, reason: Failure) -> DispatcherUnavailable:
        """
        The error of a call that gave up on connecting because of C{reason}.
        """
        return DispatcherUnavailable(
            f"cannot connect to {self.endpoint}: {reason.getErrorMessage()}", reason.value
        )

    def cancelled(self, name: str) -> Failure:
        """
        The failure of a sent call that was cancelled.
        """
        return self.failure(name, self.stopped(name), CancelledError())

    def lost_before_answer(self, name: str, reason: Failure) -> Failure:
        """
        The failure of a sent call whose connection was lost with C{reason}
        before the answer came (C{reason} itself when it is no loss).
        """
        if not isinstance(reason.value, ConnectionClosed):
            return reason
        return self.failure(name, self.lost(name, reason), reason.value)

    def failure(self, name: str, error: ClientError, cause: Optional[BaseException]) -> Failure:
        """
        A failure of the call to C{name} with C{error}, caused by C{cause};
        logged.
        """
        _log.debug("dispatcher call failed", role=self.role, command=name, error=str(error))
        error.__cause__ = cause
        return Failure(error)


__all__ = ["CallErrors", "CallTimedOut", "ClientError", "DispatcherUnavailable", "WrongListener"]
