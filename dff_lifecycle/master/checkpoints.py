"""
The master's copies of the layers' checkpoints, pulled over ROS.

Each layer checkpoints to its own server's disk (weights, optimiser state and the
batches it trained lately). A layer that must move off a lost device finds no
file on its new server, so the master keeps the newest checkpoint of every
layer: a background thread asks each server's `get_checkpoints` service for the
checkpoints newer than the ones it holds, every `period_s`. Only changed files
travel, so a quiet model costs one small request per server and period.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
import threading
import time
from typing import Callable, Iterable, Optional

from dff_lifecycle.common.duty_cycle import DutyCycle
from dff_lifecycle.core.run.weights import save_bytes_atomic

Log = Callable[[str], None]


@dataclass(frozen=True)
class Checkpoint:
    node: str            # fully qualified layer node name
    batches_seen: int
    data: bytes


# (server, model, {node: batches held}) -> [Checkpoint, ...]; raises when unreachable
Fetch = Callable[[str, str, dict[str, int]], list[Checkpoint]]


class CheckpointKeeper:
    """Newest checkpoint of each layer of one model; thread-safe."""

    def __init__(self, model: str, fetch: Fetch, servers: Callable[[], Iterable[str]],
                 period_s: float, log: Log = print,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.model = model
        self._fetch = fetch
        self._servers = servers        # the servers to ask now (lost ones left out)
        self.period_s = period_s
        self.log = log
        self._held: dict[str, Checkpoint] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.pulls = 0                 # checkpoints received, for reports and tests
        self._silent: set[str] = set()
        self.clock = clock
        self._cycles: dict[str, DutyCycle] = {}  # per server: how often it may be asked

    def get(self, node: str) -> Optional[Checkpoint]:
        with self._lock:
            return self._held.get(node)

    def held(self) -> dict[str, int]:
        """{node: batches} of the checkpoints held."""
        with self._lock:
            return {n: c.batches_seen for n, c in self._held.items()}

    def offer(self, checkpoint: Checkpoint) -> None:
        """Keep `checkpoint` if it is newer than the one held for its layer."""
        with self._lock:
            held = self._held.get(checkpoint.node)
            if held is None or checkpoint.batches_seen > held.batches_seen:
                self._held[checkpoint.node] = checkpoint
                self.pulls += 1
        if held is None:  # once per layer: from now on it can move without starting over
            self.log(f'checkpoints: first copy of {checkpoint.node} held '
                     f'({checkpoint.batches_seen} batches)')

    def save(self, folder: Path) -> list[Path]:
        """
        Write every copy held under `folder`; return the files.

        They are laid out as a server's weight_dir holds them (`<model>/layer_<i>.pt`),
        so a server started on that folder loads them.
        """
        with self._lock:
            held = list(self._held.values())
        files = []
        for checkpoint in held:
            path = folder / self.model / (checkpoint.node.rsplit('/', 1)[-1] + '.pt')
            save_bytes_atomic(path, checkpoint.data)
            files.append(path)
        return files

    def interval_s(self, server: str) -> float:
        """Seconds between two pulls from `server` now (longer when its pulls are costly)."""
        cycle = self._cycles.get(server)
        return cycle.interval_s if cycle is not None else self.period_s

    def pull(self, force: bool = False) -> None:
        """
        Ask every server whose duty cycle allows it (all of them with `force`).

        An unreachable one is skipped (the supervisor judges it).
        """
        for server in list(self._servers()):
            cycle = self._cycles.setdefault(server, DutyCycle(0.0, clock=self.clock))
            if not (force or cycle.affordable()):
                continue
            try:
                received = cycle.run(lambda s=server: self._fetch(s, self.model, self.held()))
            except Exception as exc:  # noqa: BLE001 - a lost server must not stop the others
                if server not in self._silent:  # once until it answers again
                    self._silent.add(server)
                    self.log(f'checkpoints: {server} did not answer ({exc})')
                continue
            self._silent.discard(server)
            for checkpoint in received:
                self.offer(checkpoint)

    def start(self) -> None:
        if self.period_s <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name='checkpoint_keeper',
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            # A pull in progress may wait for its timeout; the copies are not needed any more.
            self._thread.join(timeout=1.0)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.pull()
