"""A clock the test moves by hand: pass it where code takes `clock=` (and `sleep=`)."""


class FakeClock:
    """Call it for the time; set `now` or `sleep()` to move it."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
