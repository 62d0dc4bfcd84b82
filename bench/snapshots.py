"""State snapshots: snapshot, restore→first exec, fork of one child→first exec and fork of 10 children→every
child's first exec, per tier, with 20 MB and 200 MB of changed files in the sandbox's writable layer
(bench/make_state.sh). The issue's promise is that these times do not grow with that size.

Every sandbox and snapshot the phase makes is recorded before it is made, and a fork's children are deleted as
soon as they are measured; on the way out (also after an error or Ctrl-C, which is held until the removal is
done) the children of every snapshot of the run are found by the label the server gives them
(`sandburg.io/forked-from`) and deleted, then the sandboxes, then the snapshots.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.density import deferred_sigint
from bench.measure import IMAGE, NETWORK, Budget, ms, now, run_loop
from bench.stats import percentile
from sandburg import APIError, ImageNotFoundError, Sandbox, SandboxNotFoundError, Sandburg

SIZES_MB = (20, 200)
SCRIPT = Path(__file__).resolve().parent / "make_state.sh"
SCRIPT_IN_BOX = "/tmp/make_state.sh"
STATE_DIR = "/workspace/bench-state"  # in the root: what a snapshot captures
FILL_TIMEOUT_S = 600
FORK_MANY = 10
FORK_WAIT_S = 60  # the cleanup waits at most this long for the children of a fork the client gave up on
FORKED_FROM = "sandburg.io/forked-from"  # the label the server puts on a fork's children (value ≤ 63 chars)
FILL_RE = re.compile(r"^files (\d+) bytes (\d+) kib (\d+)$", re.M)

# metric key -> the label printed in the table, in table order
SNAPSHOT_METRICS: dict[str, str] = {
    "snapshot_after_fill": "first snapshot after the fill (writes not yet flushed)",
    "snapshot": "snapshot",
    "snapshot_capture": "  snapshot, server-side captureMs",
    "restore_to_first_exec": "restore→first exec",
    "fork1_to_first_exec": "fork 1→first exec",
    "fork10_to_all_first_exec": f"fork {FORK_MANY}→all first exec",
    "mem_snapshot": "memory snapshot, idle Python running",
    "mem_restore_to_first_exec": "memory restore→first exec",
    "mem_fork1_to_first_exec": "memory fork 1→first exec",
}
MEMORY_LABEL = "memory snapshot (processes too)"
# the idle process a memory snapshot captures, started in a session (its memory is part of every checkpoint)
IDLE_PYTHON = "exec python3 -c 'import time; x = list(range(10**5)); time.sleep(10**9)'"
# (metric, tier) -> the p50 it must not exceed, in ms
SNAPSHOT_TARGETS_P50_MS: dict[tuple[str, str], float] = {
    **{("snapshot", t): 200.0 for t in ("container", "gvisor")},
    **{("restore_to_first_exec", t): 500.0 for t in ("container", "gvisor")},
    ("fork1_to_first_exec", "container"): 300.0,
    ("fork1_to_first_exec", "gvisor"): 500.0,
    ("mem_snapshot", "gvisor"): 500.0,
    ("mem_restore_to_first_exec", "gvisor"): 500.0,
    ("mem_fork1_to_first_exec", "gvisor"): 500.0,
    **{("fork10_to_all_first_exec", t): 2000.0 for t in ("container", "gvisor")},
}


def expected_state(size_mb: int) -> tuple[int, int]:
    """(files, bytes) that `make_state.sh size_mb` writes: size × 10 files of 50 KiB and one of size / 2 MiB."""
    return size_mb * 10 + 1, size_mb * 10 * 51200 + size_mb // 2 * 1048576


@dataclass
class SnapshotsResult:
    samples: dict[str, dict[str, dict[str, list[float]]]] = field(default_factory=dict)  # metric/tier/MB: ms
    # tier -> MB -> what make_state.sh wrote, in how long, and the server's captureMs of the first snapshot
    fill: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    memory: dict[str, str] = field(default_factory=dict)  # tier -> the server's answer to memory=True
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, tier: str, size_mb: int, value_ms: float) -> None:
        self.samples.setdefault(metric, {}).setdefault(tier, {}).setdefault(str(size_mb), []).append(value_ms)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class SnapshotBenchError(Exception):
    pass


class SnapshotsBench:
    def __init__(
        self, sb: Sandburg, budget: Budget, labels: dict[str, str], log: Callable[[str], None], run_id: str
    ) -> None:
        self.sb, self.budget, self.labels, self.log, self.run_id = sb, budget, labels, log, run_id
        self.boxes: list[Sandbox] = []  # made, not yet deleted
        self.snapshots: list[str] = []  # made or being made, not yet deleted
        self.forked: set[str] = set()  # snapshots forked from: their children are found by label
        self.inflight: dict[str, int] = {}  # snapshot -> children of a fork call that did not return

    def run(
        self, res: SnapshotsResult, runs: int, tiers: list[str], sizes: tuple[int, ...] = SIZES_MB
    ) -> None:
        """Per tier and size: one sandbox filled with ``size`` MB, ``runs`` snapshots, restores and forks of one
        child, one fork of FORK_MANY children; everything removed before the next size."""
        pool = ThreadPoolExecutor(max_workers=FORK_MANY, thread_name_prefix="snapshots")
        try:
            for tier in tiers:
                for size in sizes:
                    if self.budget.expired():
                        res.notes.append(f"[{tier} {size} MB]: time budget spent before it started")
                        continue
                    try:
                        self.size_phase(res, tier, size, runs, pool, probe_memory=tier not in res.memory)
                    except Exception as exc:  # one size failing leaves the others to run
                        res.errors.append(f"[{tier} {size} MB]: {type(exc).__name__}: {exc}")
                        self.log(f"  ! snapshots [{tier} {size} MB]: {type(exc).__name__}: {exc}")
                    finally:
                        with deferred_sigint():  # 200 MB sandboxes and snapshots do not wait for the end
                            self.cleanup(res)
        finally:
            with deferred_sigint():
                pool.shutdown(wait=True, cancel_futures=True)  # execs in flight end before the deletes
                self.cleanup(res)
                self.check_left(res)

    def _loop(self, res: SnapshotsResult, phase: str, count: int, step: Callable[[int], None]) -> None:
        run_loop(self.budget, self.log, res.errors, res.notes, phase, count, step)

    def _name(self, tier: str, size: int, what: str) -> str:
        return f"bench-{self.run_id}/{tier}-{size}mb-{what}"

    # -- one tier and size ------------------------------------------------------------------------------------
    def size_phase(
        self,
        res: SnapshotsResult,
        tier: str,
        size: int,
        runs: int,
        pool: ThreadPoolExecutor,
        probe_memory: bool,
    ) -> None:
        self.log(
            f"[snapshots] [{tier} {size} MB] fill, {runs} snapshots, restores, forks of 1; a fork of {FORK_MANY}"
        )
        box = self.sb.create(
            isolation=tier, image=IMAGE, labels=self.labels, network=NETWORK,
            timeout=self.budget.call_timeout(300),
        )  # fmt: skip
        self.boxes.append(box)
        self._fill(res, box, tier, size)
        if probe_memory:
            self._probe_memory(res, box, tier)
        base = self._name(tier, size, "base")
        self.snapshots.append(base)
        t0 = now()
        snap = box.snapshot(base)  # the data just written is still dirty: btrfs writes it back first
        res.add("snapshot_after_fill", tier, size, ms(now() - t0))
        res.fill[tier][str(size)]["first_capture_ms"] = snap.capture_ms or 0.0
        where = f"[{tier} {size} MB]"

        def snapshot(i: int) -> None:
            name = self._name(tier, size, f"s{i}")
            self.snapshots.append(name)
            t0 = now()
            snap = box.snapshot(name)
            elapsed = now() - t0
            self._delete_snapshot(name)
            res.add("snapshot", tier, size, ms(elapsed))
            if snap.capture_ms is not None:
                res.add("snapshot_capture", tier, size, snap.capture_ms)

        def restore(i: int) -> None:
            t0 = now()
            box.restore(base)
            self._exec_true(box)
            elapsed = now() - t0
            if i == 0:
                self._check_state(box, size)  # untimed: the restored root holds the data
            res.add("restore_to_first_exec", tier, size, ms(elapsed))

        def fork_one(_i: int) -> None:
            res.add("fork1_to_first_exec", tier, size, self._fork(base, 1, pool, None))

        def fork_many(_i: int) -> None:
            res.add("fork10_to_all_first_exec", tier, size, self._fork(base, FORK_MANY, pool, size))

        self._loop(res, f"snapshot {where}", runs, snapshot)
        self._loop(res, f"restore {where}", runs, restore)
        self._loop(res, f"fork 1 {where}", runs, fork_one)
        self._loop(res, f"fork {FORK_MANY} {where}", 1, fork_many)
        if tier == "gvisor":
            self._memory_phase(res, box, tier, size, runs, pool)
        got = {k: v[tier][str(size)] for k, v in res.samples.items() if v.get(tier, {}).get(str(size))}
        self.log(
            f"[snapshots] {where} p50 ms: "
            + ", ".join(f"{k} {percentile(v, 50):.0f}" for k, v in got.items())
        )

    def _fill(self, res: SnapshotsResult, box: Sandbox, tier: str, size: int) -> None:
        box.fs.upload_file(SCRIPT.read_bytes(), SCRIPT_IN_BOX)
        t0 = now()
        r = box.process.exec(
            f"sh {SCRIPT_IN_BOX} {size} {STATE_DIR}", timeout=self.budget.call_timeout(FILL_TIMEOUT_S)
        )
        elapsed = now() - t0
        m = FILL_RE.search(r.result)
        if r.exit_code != 0 or m is None:
            raise SnapshotBenchError(f"make_state.sh exited {r.exit_code}: {r.result[-300:]!r}")
        files, nbytes, kib = (int(g) for g in m.groups())
        if (files, nbytes) != expected_state(size):
            raise SnapshotBenchError(
                f"make_state.sh wrote {files} files, {nbytes} bytes; expected {expected_state(size)}"
            )
        res.fill.setdefault(tier, {})[str(size)] = {
            "files": files,
            "bytes": nbytes,
            "du_kib": kib,
            "seconds": round(elapsed, 2),
        }
        self.log(
            f"[snapshots] [{tier} {size} MB] filled: {files} files, {nbytes / 1e6:.1f} MB in {elapsed:.1f} s"
        )

    def _check_state(self, box: Sandbox, size: int) -> None:
        """The data is all there (file count and total size), untimed."""
        r = box.process.exec(f"ls {STATE_DIR}/small | wc -l; cat {STATE_DIR}/small/* {STATE_DIR}/big | wc -c")
        got = tuple(int(x) for x in r.stdout.split()) if r.exit_code == 0 else ()
        files, nbytes = expected_state(size)
        if got != (files - 1, nbytes):
            raise SnapshotBenchError(
                f"{box.name}: expected {files - 1} small files and {nbytes} bytes, got {r.result[-200:]!r}"
            )

    def _probe_memory(self, res: SnapshotsResult, box: Sandbox, tier: str) -> None:
        """What the server answers to a memory snapshot on a tier that is not measured: a note row."""
        if tier == "gvisor":
            return  # measured by _memory_phase
        name = f"bench-{self.run_id}/{tier}-memory"
        self.snapshots.append(name)
        try:
            box.snapshot(name, memory=True)
        except APIError as exc:
            what = "not implemented on the server yet" if exc.status_code == 501 else "refused"
            res.memory[tier] = f"{what} ({exc.status_code} {exc.code}: {exc.message})"
            return
        res.memory[tier] = "made by the server, but not measured by this bench"
        self._delete_snapshot(name)

    def _memory_phase(
        self, res: SnapshotsResult, box: Sandbox, tier: str, size: int, runs: int, pool: ThreadPoolExecutor
    ) -> None:
        """gvisor: memory snapshots of the filled sandbox with an idle Python process running, restores of one
        in place, forks of one child; each to the first exec."""
        where = f"[{tier} {size} MB]"
        box.process.create_session("bench-idle").exec(IDLE_PYTHON, background=True)
        base = self._name(tier, size, "mem")
        self.snapshots.append(base)
        box.snapshot(base, memory=True)  # untimed: the restores' and forks' source

        def snapshot(i: int) -> None:
            name = self._name(tier, size, f"m{i}")
            self.snapshots.append(name)
            t0 = now()
            box.snapshot(name, memory=True)
            elapsed = now() - t0
            self._delete_snapshot(name)
            res.add("mem_snapshot", tier, size, ms(elapsed))

        def restore(i: int) -> None:
            t0 = now()
            box.restore(base)
            self._exec_true(box)
            elapsed = now() - t0
            if i == 0 and "python3 -c" not in box.process.exec("ps -eo args").stdout:  # untimed check
                raise SnapshotBenchError(f"{box.name}: the idle Python process did not come back")
            res.add("mem_restore_to_first_exec", tier, size, ms(elapsed))

        def fork_one(_i: int) -> None:
            res.add("mem_fork1_to_first_exec", tier, size, self._fork(base, 1, pool, None))

        self._loop(res, f"memory snapshot {where}", runs, snapshot)
        self._loop(res, f"memory restore {where}", runs, restore)
        self._loop(res, f"memory fork 1 {where}", runs, fork_one)

    def _exec_true(self, box: Sandbox) -> None:
        r = box.process.exec("true")
        if r.exit_code != 0:
            raise SnapshotBenchError(f"{box.name}: `true` exited {r.exit_code}: {r.result[:200]!r}")

    def _fork(self, snapshot: str, count: int, pool: ThreadPoolExecutor, check_size: int | None) -> float:
        """fork(snapshot, count) until every child answered exec("true"), in ms; the children are deleted
        afterwards, untimed (one of them first checked to hold the data of ``check_size`` MB)."""
        self.forked.add(snapshot)
        children: list[Sandbox] = []
        try:
            self.inflight[snapshot] = count
            t0 = now()
            try:
                children = self.sb.fork(snapshot, count)
            except APIError:  # the server answered: a fork is all or nothing, no child was left
                self.inflight.pop(snapshot)
                raise
            self.inflight.pop(snapshot)
            list(pool.map(self._exec_true, children))  # concurrently: each child is an independent sandbox
            elapsed = now() - t0
            if len(children) != count:
                raise SnapshotBenchError(f"fork of {count} made {len(children)} sandboxes")
            if check_size is not None:
                self._check_state(children[0], check_size)
        finally:
            self._delete_boxes(children)
        return ms(elapsed)

    # -- cleanup ------------------------------------------------------------------------------------------------
    def _delete_boxes(self, boxes: list[Sandbox]) -> None:
        """Delete each sandbox (gone already is fine); the first error is raised after trying them all."""
        errors: list[Exception] = []
        for box in boxes:
            try:
                box.delete()
            except SandboxNotFoundError:
                pass
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def _delete_snapshot(self, name: str) -> None:
        try:
            self.sb.snapshots.delete(name)
        except ImageNotFoundError:  # never made (the request failed), or already gone
            pass
        self.snapshots.remove(name)

    def cleanup(self, res: SnapshotsResult) -> None:
        """Every fork child of a snapshot of this run, every sandbox, then every snapshot."""
        for snapshot in sorted(self.forked):
            try:
                self._delete_children(snapshot, self.inflight.pop(snapshot, 0))
                self.forked.discard(snapshot)
            except Exception as exc:
                res.errors.append(f"cleanup: children of {snapshot}: {type(exc).__name__}: {exc}")
        for box in list(self.boxes):
            try:
                self._delete_boxes([box])
                self.boxes.remove(box)
            except Exception as exc:
                res.errors.append(f"cleanup: delete sandbox {box.id}: {type(exc).__name__}: {exc}")
        for name in list(self.snapshots):
            try:
                self._delete_snapshot(name)
            except Exception as exc:
                res.errors.append(f"cleanup: delete snapshot {name}: {type(exc).__name__}: {exc}")

    def _delete_children(self, snapshot: str, expected: int) -> None:
        """Delete the sandboxes forked from ``snapshot``. A fork the client gave up on (Ctrl-C, a timeout) goes
        on in the server, whose children are listed only once created: wait for ``expected`` of them."""
        deadline = time.monotonic() + FORK_WAIT_S
        deleted = 0
        while True:
            children = self.sb.list(labels={FORKED_FROM: snapshot[:63]})
            self._delete_boxes(children)
            deleted += len(children)
            if deleted >= expected:
                return
            if time.monotonic() > deadline:
                raise SnapshotBenchError(
                    f"{deleted} of the {expected} children of an interrupted fork listed"
                )
            time.sleep(0.5)

    def check_left(self, res: SnapshotsResult) -> None:
        try:
            left = [s.name for s in self.sb.snapshots.list() if s.name.startswith(f"bench-{self.run_id}/")]
            if left:
                res.errors.append(f"cleanup: snapshots still listed after the run: {left}")
        except Exception as exc:
            res.errors.append(f"cleanup: listing snapshots: {type(exc).__name__}: {exc}")
