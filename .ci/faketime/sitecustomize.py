"""Loaded (PYTHONPATH) by the clock-sensitive tests that .ci/run runs under libfaketime.

There the clock is shifted and the monotonic clock left alone (FAKETIME_DONT_FAKE_MONOTONIC=1: a
shifted one makes every timed lock wait hang), but libfaketime then breaks clock_nanosleep on the
monotonic clock (EINVAL), which time.sleep uses: sleep with select's relative timeout instead.
"""

import select
import time


def _sleep(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
