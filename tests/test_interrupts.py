"""Signals held back while a run's files are written arrive when the block ends."""

import os
import signal

import pytest

from metaplastic.interrupts import deferred


@pytest.fixture(autouse=True)
def python_sigint_handler():
    """Python's own Ctrl-C handler, whatever the test runner inherited: a process started
    in the background by a non-interactive shell begins with SIGINT ignored."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_inside_the_block_arrives_after_it():
    done = []
    with pytest.raises(KeyboardInterrupt):
        with deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("first")  # not cut short
            done.append("second")
    assert done == ["first", "second"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sigterm_goes_to_the_handler_installed_before():
    seen = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, old)


def test_no_signal_no_change():
    with deferred():
        pass
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_stop_inside_nested_stop_signals_keeps_later_presses_ignored():
    """The command line nests stop_signals() (the command, and training within it). A
    Ctrl-C caught by the inner one used to let the outer one restore Python's default
    handler on the way out: a later press then killed the exiting process by SIGINT
    (exit -2 instead of 130 in the three-presses test)."""
    import signal

    from metaplastic.cli.console import stop_signals

    before = signal.getsignal(signal.SIGINT)
    try:
        with stop_signals():
            try:
                with stop_signals():
                    signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)  # ignored: no KeyboardInterrupt
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
