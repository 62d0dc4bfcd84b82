"""The timed loops, driven through the synchronous SDK. Every loop has a fixed count and stops early once
the global time budget is spent; a tier's phase is abandoned after a few failures in a row."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.stats import METRICS
from sandburg import Sandbox, Sandburg

IMAGE = "debian-12"
MAX_CONSECUTIVE_FAILURES = 3


def now() -> float:
    return time.perf_counter()


def ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class Budget:
    """A global wall-clock budget; ``expired()`` remembers that it ran out."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.deadline = time.monotonic() + seconds
        self.exhausted = False

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def expired(self) -> bool:
        if self.remaining() <= 0:
            self.exhausted = True
        return self.exhausted

    def call_timeout(self, cap: float) -> float:
        """A client-side timeout for one long call: at most ``cap``, at least 10 s."""
        return max(10.0, min(cap, self.remaining()))


@dataclass
class TierResult:
    tier: str
    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in METRICS})
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class BenchError(Exception):
    pass


@dataclass
class Bench:
    sb: Sandburg
    budget: Budget
    labels: dict[str, str]
    log: Callable[[str], None]

    def _create(self, tier: str) -> Sandbox:
        return self.sb.create(
            isolation=tier, image=IMAGE, labels=self.labels, timeout=self.budget.call_timeout(300)
        )

    def _exec_true(self, box: Sandbox) -> float:
        r = box.process.exec("true")
        if r.exit_code != 0:
            raise BenchError(f"`true` exited {r.exit_code}: {r.result[:200]!r}")
        return r.duration_ms

    def _delete(self, box: Sandbox) -> float:
        t0 = now()
        box.delete()
        return now() - t0

    def create_once(self, tier: str) -> dict[str, float]:
        """One create→first exec measurement; the box is deleted afterwards, outside the timed region."""
        t0 = now()
        box = self._create(tier)
        t1 = now()
        try:
            self._exec_true(box)
            t2 = now()
        finally:
            delete = self._delete(box)  # timed on its own, never part of create→first exec
        return {
            "create_to_first_exec": ms(t2 - t0),
            "create": ms(t1 - t0),
            "first_exec": ms(t2 - t1),
            "delete": ms(delete),
        }

    def _loop(self, res: TierResult, phase: str, count: int, step: Callable[[int], None]) -> None:
        failures = 0
        for i in range(count):
            if self.budget.expired():
                res.notes.append(f"{phase}: time budget spent after {i} of {count}")
                return
            try:
                step(i)
                failures = 0
            except Exception as exc:  # a benchmark reports failures, it does not stop at the first
                failures += 1
                res.errors.append(f"{phase} #{i}: {type(exc).__name__}: {exc}")
                self.log(f"  ! {phase} #{i}: {type(exc).__name__}: {exc}")
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    res.notes.append(f"{phase}: abandoned after {failures} failures in a row")
                    return

    def create_phase(self, res: TierResult, warmup: int, runs: int) -> None:
        tier = res.tier
        self.log(f"[{tier}] create→first exec: {warmup} warm-up + {runs} recorded")

        def warm(_i: int) -> None:
            self.create_once(tier)

        self._loop(res, "create warm-up", warmup, warm)

        def record(_i: int) -> None:
            for k, v in self.create_once(tier).items():
                res.samples[k].append(v)

        self._loop(res, "create", runs, record)
        done = res.samples["create_to_first_exec"]
        if done:
            self.log(f"[{tier}]   {len(done)} runs, first {done[0]:.1f} ms, last {done[-1]:.1f} ms")

    def exec_phase(self, res: TierResult, warmup: int, runs: int) -> None:
        tier = res.tier
        self.log(f"[{tier}] exec round trip: {warmup} warm-up + {runs} recorded, one sandbox")
        if self.budget.expired():
            res.notes.append("exec: time budget spent before it started")
            return
        try:
            box = self._create(tier)
        except Exception as exc:
            res.errors.append(f"exec sandbox create: {type(exc).__name__}: {exc}")
            self.log(f"  ! exec sandbox create: {type(exc).__name__}: {exc}")
            return
        try:

            def warm(_i: int) -> None:
                self._exec_true(box)

            self._loop(res, "exec warm-up", warmup, warm)

            def record(_i: int) -> None:
                t0 = now()
                server_ms = self._exec_true(box)
                t1 = now()
                res.samples["exec_rtt"].append(ms(t1 - t0))
                res.samples["exec_server"].append(round(server_ms, 3))

            self._loop(res, "exec", runs, record)
        finally:
            try:
                box.delete()
            except Exception as exc:
                res.errors.append(f"exec sandbox delete: {type(exc).__name__}: {exc}")

    def sweep(self) -> list[str]:
        """Delete any sandbox of this run still listed (e.g. after a client-side timeout); their ids."""
        left = self.sb.list(labels=self.labels)
        for box in left:
            try:
                box.delete()
            except Exception as exc:
                self.log(f"  ! sweep: delete {box.id}: {type(exc).__name__}: {exc}")
        return [box.id for box in left]
