"""gateway/polling.py: the loop of the policy watcher, the policy follower and the retention sweeper."""

from __future__ import annotations

import logging
import threading

import pytest

from gateway.polling import Poller

HANG_GUARD = 60.0


class Flaky(Poller):
    thread_name = "flaky"

    def __init__(self, *, tracebacks: bool) -> None:
        super().__init__(interval=0.01)
        self.log_tracebacks = tracebacks
        self.calls = 0
        self.second = threading.Event()

    def check(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("payload text that must not be logged")
        self.second.set()


@pytest.mark.parametrize("tracebacks", [True, False])
def test_a_failing_poll_is_logged_and_the_next_one_runs(
    tracebacks: bool, caplog: pytest.LogCaptureFixture
) -> None:
    poller = Flaky(tracebacks=tracebacks)
    with caplog.at_level(logging.ERROR, logger="gateway"):
        poller.start()
        poller.start()  # a second start does nothing
        assert poller.second.wait(HANG_GUARD)
        poller.stop()
    assert poller.calls >= 2
    [record] = [r for r in caplog.records if r.getMessage().startswith("flaky poll failed")]
    assert record.getMessage() == "flaky poll failed: RuntimeError"
    assert bool(record.exc_info) is tracebacks
    calls = poller.calls
    assert poller._thread is None and poller.calls == calls  # stopped: no poll after stop


def test_the_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        Flaky.__mro__[1](interval=0)
