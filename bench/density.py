"""Density, per tier: N concurrent creates and deletes, and the idle memory of N sandboxes.

One pass per tier: warm up (create, `true`, delete one sandbox, so the image and runtime files are in the page
cache), read MemAvailable, create N sandboxes at once from N threads (each with its own sync SDK client), run
`true` in each (the agent and its warm shell are up), leave them idle, read MemAvailable and every sandbox's
host-side PSS and memory cgroup, delete them all at once, read MemAvailable again. Every sandbox made is deleted
on the way out, also after an error or Ctrl-C (which waits until the deletes are done).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from bench.hostcheck import other_servers
from bench.hostmem import mem_available, mib, others_anon, process_pss, sandbox_memory, settle, summarize
from bench.measure import IMAGE, NETWORK, Budget, ms, now
from sandburg import Sandbox, Sandburg

T = TypeVar("T")
TARGET_MIB: dict[str, float] = {"container": 15.0, "gvisor": 30.0}  # idle memory per sandbox, agent included
RELEASE_WAIT_S = 3.0  # after the deletes, before reading MemAvailable: processes reaped, memory freed
MEMINFO_KEYS = "AnonPages Shmem SUnreclaim SReclaimable KernelStack PageTables Cached MemFree".split()


@dataclass
class DensityTarget:
    """What the density pass needs to know about the server it benches."""

    make_client: Callable[[], Sandburg]
    cgroup_parent: str | None  # None: the sandboxes' cgroups are not on this host / unknown
    server_pid: int | None  # the server's own growth is reported apart (own server only)


@dataclass
class DensityResult:
    tier: str
    count: int
    create_wall_ms: float | None = None
    create_ms: list[float] = field(default_factory=list)
    delete_wall_ms: float | None = None
    delete_ms: list[float] = field(default_factory=list)
    idle_s: float = 0.0
    memory: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold Ctrl-C off until the block is done (cleanup must finish), then raise it."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, lambda signum, _frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt


class Density:
    def __init__(
        self, target: DensityTarget, budget: Budget, labels: dict[str, str], log: Callable[[str], None]
    ):
        self.target, self.budget, self.labels, self.log = target, budget, labels, log
        self.live: list[Sandbox] = []  # every sandbox made and not yet deleted, whatever thread made it
        self.lock = threading.Lock()

    def _all(
        self, pool: ThreadPoolExecutor, fn: Callable[[int], T], n: int
    ) -> list[tuple[T | BaseException, float, float]]:
        """fn(0..n-1) in n threads released together; each (result or exception, start, end)."""
        gate = threading.Barrier(n, timeout=30)

        def one(i: int) -> tuple[T | BaseException, float, float]:
            gate.wait()
            t0 = now()
            try:
                return fn(i), t0, now()
            except Exception as exc:
                return exc, t0, now()

        return [f.result() for f in [pool.submit(one, i) for i in range(n)]]

    def _create(self, client: Sandburg, tier: str) -> Sandbox:
        box = client.create(
            isolation=tier,
            image=IMAGE,
            labels=self.labels,
            network=NETWORK,
            timeout=self.budget.call_timeout(300),
        )
        with self.lock:
            self.live.append(box)
        return box

    def _delete(self, box: Sandbox) -> None:
        box.delete()
        with self.lock:
            self.live.remove(box)

    @staticmethod
    def _true(box: Sandbox) -> None:
        r = box.process.exec("true")
        if r.exit_code != 0:
            raise RuntimeError(f"`true` exited {r.exit_code}: {r.result[:200]!r}")

    def run(self, res: DensityResult, idle_s: float) -> None:
        tier, count = res.tier, res.count
        if self.budget.remaining() < idle_s + 60:
            res.notes.append(f"density: skipped, {self.budget.remaining():.0f} s of the time budget left")
            return
        clients = [self.target.make_client() for _ in range(count)]
        pool = ThreadPoolExecutor(max_workers=count, thread_name_prefix=f"density-{tier}")
        try:
            self._measure(res, clients, pool, idle_s)
        except Exception as exc:
            res.errors.append(f"density: {type(exc).__name__}: {exc}")
            self.log(f"  ! density [{tier}]: {type(exc).__name__}: {exc}")
        finally:
            with deferred_sigint():
                # creates in flight finish and land in self.live
                pool.shutdown(wait=True, cancel_futures=True)
                if self.live:
                    res.notes.append(
                        f"cleanup: deleting {len(self.live)} sandboxes left by an interrupted pass"
                    )
                    self.log(f"[{tier}]   {res.notes[-1]}")
                for box in list(self.live):
                    try:
                        self._delete(box)
                    except Exception as exc:
                        res.errors.append(f"cleanup: delete {box.id}: {type(exc).__name__}: {exc}")
                for client in clients:
                    client.close()

    def _measure(
        self, res: DensityResult, clients: list[Sandburg], pool: ThreadPoolExecutor, idle_s: float
    ) -> None:
        tier, n = res.tier, len(clients)
        self.log(f"[{tier}] density: warm-up, {n} concurrent creates, `true` in each, {idle_s:g} s idle")
        warm = self._create(clients[0], tier)
        self._true(warm)
        self._delete(warm)
        self._settle(res, "before the creates")
        mem = res.memory
        before, spread = mem_available()
        own = {"server": self.target.server_pid, "bench": os.getpid()}
        own_before = {k: process_pss(p) for k, p in own.items() if p is not None}
        own_pids = {p for p in own.values() if p is not None}
        others_before = others_anon(own_pids)
        neighbours = other_servers({os.getpid(), self.target.server_pid or -1})

        self.log(f"[{tier}]   MemAvailable {mib(before['MemAvailable']):.0f} MiB; creating {n} at once")
        created = self._all(pool, lambda i: self._create(clients[i], tier), n)
        boxes = [r for r, _, _ in created if isinstance(r, Sandbox)]
        self._timings(res, "create", created)
        if not boxes:
            return
        for r, _, _ in self._all(pool, lambda i: self._true(boxes[i]), len(boxes)):
            if isinstance(r, BaseException):
                res.errors.append(f"`true`: {type(r).__name__}: {r}")

        t_idle = time.monotonic()
        while time.monotonic() - t_idle < idle_s and not self.budget.expired():
            time.sleep(max(0.0, min(1.0, idle_s - (time.monotonic() - t_idle))))
        res.idle_s = round(time.monotonic() - t_idle, 1)
        if res.idle_s < idle_s:
            res.notes.append(f"idle cut to {res.idle_s:g} s of {idle_s:g} by the time budget")
        after, spread_after = mem_available()
        per_box = (
            [sandbox_memory(self.target.cgroup_parent, b.id) for b in boxes]
            if self.target.cgroup_parent
            else []
        )
        if per_box and not any(m.processes for m in per_box):
            res.notes.append(
                f"no processes in the cgroups {self.target.cgroup_parent}/<id>: no PSS / cgroup rows"
            )
            per_box = []
        own_after = {k: process_pss(p) for k, p in own.items() if p is not None}
        others_after = others_anon(own_pids | {p for m in per_box for p in m.pids}) if per_box else None
        neighbours += other_servers({os.getpid(), self.target.server_pid or -1})

        deleted = self._all(pool, lambda i: self._delete(boxes[i]), len(boxes))
        self._timings(res, "delete", deleted)
        time.sleep(RELEASE_WAIT_S)  # a short, fixed window: the host's own drift has little time to add up
        released, _ = mem_available()

        k = len(boxes)
        mem.update(
            sandboxes=k,
            mem_available_mib={"before": mib(before["MemAvailable"]), "idle": mib(after["MemAvailable"])}
            | {"after_delete": mib(released["MemAvailable"])},
            mem_available_spread_kib=max(spread, spread_after),
            per_sandbox_mem_available_mib=mib((before["MemAvailable"] - after["MemAvailable"]) / k),
            per_sandbox_released_mib=mib((released["MemAvailable"] - after["MemAvailable"]) / k),
            per_sandbox_meminfo_delta_mib={key: mib((after[key] - before[key]) / k) for key in MEMINFO_KEYS},
            per_sandbox_others_anon_change_mib=None
            if others_after is None
            else mib((others_after - others_before) / k),
            own_process_pss_growth_mib={
                key: mib((own_after[key] or 0) - (own_before[key] or 0))
                for key in own_before
                if own_before[key] is not None and own_after.get(key) is not None
            },
        )
        drop, back = mem["per_sandbox_mem_available_mib"], mem["per_sandbox_released_mib"]
        others = mem["per_sandbox_others_anon_change_mib"] or 0.0
        mem["per_sandbox_mem_available_less_others_mib"] = round(drop - others, 2)
        mem["mem_available_noisy"] = abs(drop - back) > max(2.0, 0.25 * abs(drop)) or abs(others) > 1.0
        mem["mem_available_less_others_noisy"] = abs(drop - others - back) > max(
            2.0, 0.25 * abs(drop - others)
        )
        if mem["mem_available_noisy"]:
            res.notes.append(
                f"MemAvailable is noisy: it fell {drop:g} MiB/sandbox over the creates and idle, rose {back:g}"
                f" MiB/sandbox after the deletes, and the other processes' anon+shmem changed by {others:+g}"
                " MiB/sandbox meanwhile (other activity on the host); trust the PSS row more"
            )
        if neighbours:
            res.notes.append(
                f"other sandburg servers / test runs active, MemAvailable may be skewed: {sorted(set(neighbours))}"
            )
        if per_box:
            mem.update(summarize(per_box))
            if not all(m.kcmp_ok for m in per_box):
                res.notes.append(
                    "kcmp failed: processes sharing an address space may be counted twice in PSS"
                )
        elif self.target.cgroup_parent is None:
            res.notes.append("cgroup parent unknown: no PSS / cgroup readings")

    def _settle(self, res: DensityResult, when: str) -> None:
        waited, stable = settle()
        res.memory[f"settle_s_{when.replace(' ', '_')}"] = waited
        if not stable:
            res.notes.append(f"MemAvailable still moving {when} after {waited:g} s")

    def _timings(self, res: DensityResult, what: str, runs: list[tuple[Any, float, float]]) -> None:
        ok = [(t0, t1) for r, t0, t1 in runs if not isinstance(r, BaseException)]
        for r, _, _ in runs:
            if isinstance(r, BaseException):
                res.errors.append(f"concurrent {what}: {type(r).__name__}: {r}")
        if not ok:
            return
        wall = ms(max(t1 for _, _, t1 in runs) - min(t0 for _, t0, _ in runs))
        samples = [ms(t1 - t0) for t0, t1 in ok]
        if what == "create":
            res.create_wall_ms, res.create_ms = wall, samples
        else:
            res.delete_wall_ms, res.delete_ms = wall, samples
        self.log(f"[{res.tier}]   {len(ok)}/{len(runs)} concurrent {what}s in {wall:.0f} ms")
