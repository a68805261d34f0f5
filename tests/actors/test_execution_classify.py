"""Exceptions of step functions map to the error kinds retry policies match."""

from __future__ import annotations

import errno
import socket
import ssl

import pytest

from actors.execution.classify import classify_exception, describe_exception
from engine.rules.errors import ErrorKind


class WrapperError(Exception):
    pass


def chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__context__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionResetError(), ErrorKind.NETWORK),
        (BrokenPipeError(), ErrorKind.NETWORK),
        (TimeoutError("read"), ErrorKind.NETWORK),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), ErrorKind.NETWORK),
        (ssl.SSLError("handshake"), ErrorKind.NETWORK),
        (chained(WrapperError("GET failed"), ConnectionRefusedError()), ErrorKind.NETWORK),
        (MemoryError(), ErrorKind.RESOURCE),
        (OSError(errno.EMFILE, "Too many open files"), ErrorKind.RESOURCE),
        (OSError(errno.ENOENT, "No such file"), ErrorKind.USER),
        (KeyError("x"), ErrorKind.USER),
        (KeyboardInterrupt(), ErrorKind.USER),
    ],
)
def test_exception_kinds(exc: BaseException, kind: ErrorKind) -> None:
    assert classify_exception(exc) == kind


def test_a_cycle_in_the_cause_chain_ends_the_search() -> None:
    a, b = WrapperError("a"), WrapperError("b")
    a.__context__, b.__context__ = b, a
    assert classify_exception(a) == ErrorKind.USER


def test_descriptions_name_the_type_as_a_traceback_does() -> None:
    assert describe_exception(ValueError("bad")) == "ValueError: bad"
    assert describe_exception(ValueError()) == "ValueError"
    assert describe_exception(WrapperError("x")).endswith("test_execution_classify.WrapperError: x")
