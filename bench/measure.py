"""The timed loops, driven through the synchronous SDK. Every loop has a fixed count and stops early once
the global time budget is spent; a tier's phase is abandoned after a few failures in a row."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.stats import DOWNLOAD_MIB, METRICS
from sandburg import Sandbox, Sandburg

IMAGE = "debian-12"
MAX_CONSECUTIVE_FAILURES = 3


def run_loop(
    budget: Budget, log: Callable[[str], None], errors: list[str], notes: list[str], phase: str, count: int,
    step: Callable[[int], None],
) -> None:  # fmt: skip
    """Call `step(i)` for i < count while the time budget lasts; a failure is recorded and the loop goes on,
    until MAX_CONSECUTIVE_FAILURES in a row abandon the phase (every phase of the bench loops this way)."""
    failures = 0
    for i in range(count):
        if budget.expired():
            notes.append(f"{phase}: time budget spent after {i} of {count}")
            return
        try:
            step(i)
            failures = 0
        except Exception as exc:  # a benchmark reports failures, it does not stop at the first
            failures += 1
            errors.append(f"{phase} #{i}: {type(exc).__name__}: {exc}")
            log(f"  ! {phase} #{i}: {type(exc).__name__}: {exc}")
            if failures >= MAX_CONSECUTIVE_FAILURES:
                notes.append(f"{phase}: abandoned after {failures} failures in a row")
                return


# every sandbox of the bench has networking on, with a realistic allowlist policy: one name of the fake
# internet (tests/_support/fakenet.py), which the server resolves through it (SANDBURG_DNS_UPSTREAM)
ALLOWED_HOST = "allowed.test"
NETWORK: dict[str, Any] = {"allow": [ALLOWED_HOST]}
DOWNLOAD_BYTES = DOWNLOAD_MIB << 20
CURL_FORMAT = r"%{http_code} %{size_download} %{time_total}\n"  # curl expands the \n
CURL_MAX_S = 120


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
    download_s: list[float] = field(default_factory=list)  # throughput runs: seconds per DOWNLOAD_BYTES


class BenchError(Exception):
    pass


def download_url(host: str) -> str:
    return f"http://{host}/bytes/{DOWNLOAD_BYTES}"


def curl_command(url: str) -> str:
    """The shell command of one timed download: the body to /dev/null, curl's own timing on stdout."""
    return f"curl -sS --noproxy '*' -m {CURL_MAX_S} -o /dev/null -w '{CURL_FORMAT}' {url}"


def parse_download(out: str, expected: int) -> float:
    """curl's `-w CURL_FORMAT` output -> the download's seconds; a BenchError unless it got `expected` bytes."""
    parts = out.split()
    try:
        code, size, seconds = int(parts[0]), int(parts[1]), float(parts[2].replace(",", "."))
    except (IndexError, ValueError):
        raise BenchError(f"unexpected curl output: {out[:200]!r}") from None
    if code != 200 or size != expected:
        raise BenchError(f"download got HTTP {code} and {size} bytes, expected 200 and {expected} bytes")
    if seconds <= 0:
        raise BenchError(f"curl reported a download time of {seconds} s")
    return seconds


def host_download(url: str) -> float:
    """One timed download by curl on the host itself (the baseline: no sandbox in the path)."""
    argv = ["curl", "-sS", "--noproxy", "*", "-m", str(CURL_MAX_S), "-o", "/dev/null", "-w", CURL_FORMAT, url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=CURL_MAX_S + 10, check=False)
    if r.returncode != 0:
        raise BenchError(f"curl on the host exited {r.returncode}: {r.stderr.strip()[:200]!r}")
    return parse_download(r.stdout, DOWNLOAD_BYTES)


@dataclass
class Bench:
    sb: Sandburg
    budget: Budget
    labels: dict[str, str]
    log: Callable[[str], None]

    def _create(self, tier: str) -> Sandbox:
        return self.sb.create(
            isolation=tier,
            image=IMAGE,
            labels=self.labels,
            network=NETWORK,
            timeout=self.budget.call_timeout(300),
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
        run_loop(self.budget, self.log, res.errors, res.notes, phase, count, step)

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
        self.log(f"[{res.tier}] exec round trip: {warmup} warm-up + {runs} recorded, one sandbox")

        def record(box: Sandbox) -> None:
            t0 = now()
            server_ms = self._exec_true(box)
            t1 = now()
            res.samples["exec_rtt"].append(ms(t1 - t0))
            res.samples["exec_server"].append(round(server_ms, 3))

        self._on_one_sandbox(res, "exec", warmup, runs, self._exec_true, record)

    def _on_one_sandbox(
        self, res: TierResult, what: str, warmup: int, runs: int, warm: Callable[[Sandbox], object],
        record: Callable[[Sandbox], None],
    ) -> None:  # fmt: skip
        """`warmup` calls of `warm`, then `runs` of `record`, on one sandbox of the tier, deleted afterwards."""
        if self.budget.expired():
            res.notes.append(f"{what}: time budget spent before it started")
            return
        try:
            box = self._create(res.tier)
        except Exception as exc:
            res.errors.append(f"{what} sandbox create: {type(exc).__name__}: {exc}")
            self.log(f"  ! {what} sandbox create: {type(exc).__name__}: {exc}")
            return
        try:

            def warm_step(_i: int) -> None:
                warm(box)

            self._loop(res, f"{what} warm-up", warmup, warm_step)
            self._loop(res, what, runs, lambda _i: record(box))
        finally:
            try:
                box.delete()
            except Exception as exc:
                res.errors.append(f"{what} sandbox delete: {type(exc).__name__}: {exc}")

    def _download(self, box: Sandbox) -> float:
        cmd = curl_command(download_url(ALLOWED_HOST))
        r = box.process.exec(cmd, timeout=self.budget.call_timeout(CURL_MAX_S + 10))
        if r.exit_code != 0:  # the output: curl's -w line, then its error message
            detail = (r.result.strip().splitlines() or [""])[-1]
            raise BenchError(f"curl in the sandbox exited {r.exit_code}: {detail[:200]!r}")
        return parse_download(r.result, DOWNLOAD_BYTES)

    def throughput_phase(self, res: TierResult, warmup: int, runs: int) -> None:
        """Downloads of DOWNLOAD_BYTES from the fake internet's allowed name, by curl in one sandbox whose
        policy allows that name: DNS through the node's resolver, then the veth, bridge and nftables path."""
        tier = res.tier
        self.log(
            f"[{tier}] throughput: {warmup} warm-up + {runs} downloads of {DOWNLOAD_MIB} MiB, one sandbox"
        )
        self._on_one_sandbox(
            res,
            "throughput",
            warmup,
            runs,
            self._download,
            lambda box: res.download_s.append(self._download(box)),
        )
        if res.download_s:
            rates = ", ".join(f"{DOWNLOAD_BYTES / s / 1e6:.0f}" for s in res.download_s)
            self.log(f"[{tier}]   MB/s: {rates}")

    def baseline_phase(self, res: TierResult, url: str, warmup: int, runs: int) -> None:
        """The same downloads by curl on the host, to the fake internet's address: what the path costs
        without a sandbox (no sandbox netns, bridge or policy; the same HTTP server)."""
        self.log(
            f"[host] throughput baseline: {warmup} warm-up + {runs} downloads of {url} by curl on the host"
        )

        def warm(_i: int) -> None:
            host_download(url)

        self._loop(res, "baseline warm-up", warmup, warm)

        def record(_i: int) -> None:
            res.download_s.append(host_download(url))

        self._loop(res, "baseline", runs, record)

    def sweep(self) -> list[str]:
        """Delete any sandbox of this run still listed (e.g. after a client-side timeout); their ids."""
        left = self.sb.list(labels=self.labels)
        for box in left:
            try:
                box.delete()
            except Exception as exc:
                self.log(f"  ! sweep: delete {box.id}: {type(exc).__name__}: {exc}")
        return [box.id for box in left]
