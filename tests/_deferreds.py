"""
The results of Deferreds that have fired (or must not have), for tests that
run no reactor: one set of helpers for every test module.
"""

from __future__ import annotations

from typing import Any, List, Type, TypeVar, Union

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

T = TypeVar("T")


def _outcome(d: Deferred[T]) -> List[Union[T, Failure]]:
    """
    Take the result of C{d} (consumed: an error is not left unhandled).
    """
    outcome: List[Union[T, Failure]] = []
    d.addBoth(outcome.append)
    return outcome


def outcome_of(d: Deferred[T]) -> Union[T, Failure]:
    """
    What C{d} already came to, a result or a failure (consumed).
    """
    outcome = _outcome(d)
    assert outcome, "the Deferred has not fired"
    return outcome[0]


def result_of(d: Deferred[T]) -> T:
    """
    The result C{d} already has, which must not be a failure.
    """
    result = outcome_of(d)
    if isinstance(result, Failure):
        result.raiseException()
    return result


def failure_of(d: Deferred[Any], *expected: Type[BaseException]) -> Failure:
    """
    The failure C{d} already has, of one of C{expected}.
    """
    result = outcome_of(d)
    assert isinstance(result, Failure), f"the Deferred succeeded with {result!r}"
    assert result.check(*expected), f"unexpected failure {result.value!r}"
    return result


def fired(d: Deferred[Any]) -> bool:
    """
    Whether C{d} has a result yet (left for whoever reads it next).
    """
    seen: List[object] = []

    def look(result: object) -> object:
        seen.append(result)
        return result

    d.addBoth(look)
    return bool(seen)


def assert_no_result(d: Deferred[Any]) -> None:
    """
    C{d} has no result yet.
    """
    assert not fired(d), "the Deferred has fired"
