"""How a foreground run's command takes SIGINT, SIGTERM and SIGHUP (no cluster needed)."""

import os
import signal

import pytest

from clusterkit.cli import _StopSignals


@pytest.fixture(autouse=True)
def _restore_handlers():
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_a_signal_while_the_run_is_made_waits_then_raises_once_armed():
    stop = _StopSignals()
    os.kill(os.getpid(), signal.SIGTERM)  # noted, not raised: the run does not exist yet
    assert stop.stopped and stop.why == "SIGTERM"
    with pytest.raises(KeyboardInterrupt):
        stop.arm()
    stop.disarm()
    os.kill(os.getpid(), signal.SIGHUP)  # absorbed: the cancel is under way
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.why == "SIGTERM"
    stop.restore()


def test_a_second_signal_while_the_run_is_made_gives_up_on_it():
    stop = _StopSignals()
    os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)
    assert stop.why == "Ctrl-C"
    stop.restore()


def test_once_armed_the_first_signal_raises_with_its_name():
    stop = _StopSignals()
    stop.arm()
    with pytest.raises(KeyboardInterrupt, match="SIGHUP"):
        os.kill(os.getpid(), signal.SIGHUP)
    assert stop.why == "SIGHUP"
    stop.restore()


def test_a_signal_set_to_be_ignored_stays_ignored():
    """`nohup clusterkit run ...`: logging out does not cancel the run."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop = _StopSignals()
    stop.arm()
    os.kill(os.getpid(), signal.SIGHUP)
    assert not stop.stopped
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    stop.restore()
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
