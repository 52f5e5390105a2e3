"""A clock whose sleeps return at once but still advance time, for retry tests."""

from __future__ import annotations

import time


class FakeClock:
    """`sleep` records the delay and moves `now` forward by it instead of waiting."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return time.monotonic() + self.offset

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.offset += seconds
