"""Summaries of latency samples (milliseconds) and the targets they are held to.

Percentiles use the nearest-rank method: the p-th percentile of n sorted samples is the one at rank
ceil(p / 100 * n) (1-based), so it is always one of the measured values, never an interpolation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

PERCENTILE_METHOD = "nearest-rank: the p-th percentile is sorted(samples)[ceil(p/100*n) - 1]"

# metric key -> the label printed in the table, in table order
METRICS: dict[str, str] = {
    "create_to_first_exec": "create→first exec (networking on, allowlist policy)",
    "create": "create (until create() returns)",
    "first_exec": "first exec (after create)",
    "delete": "delete",
    "exec_rtt": "exec round trip (API)",
    "exec_server": "exec, server-side durationMs",
}

# (metric, tier) -> the p50 it must not exceed, in ms
TARGETS_P50_MS: dict[tuple[str, str], float] = {
    ("create_to_first_exec", "container"): 100.0,
    ("create_to_first_exec", "gvisor"): 300.0,
    ("exec_rtt", "container"): 10.0,
    ("exec_rtt", "gvisor"): 10.0,
}


def percentile(samples: list[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of a non-empty list."""
    if not samples:
        raise ValueError("percentile of no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile out of range: {p}")
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    metric: str
    tier: str
    n: int
    p50: float | None
    p95: float | None
    p99: float | None
    mean: float | None
    min: float | None
    max: float | None
    target_p50: float | None
    met: bool | None  # None: no target, or no samples

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize(metric: str, tier: str, samples: list[float]) -> Summary:
    target = TARGETS_P50_MS.get((metric, tier))
    if not samples:
        return Summary(metric, tier, 0, None, None, None, None, None, None, target, None)
    p50 = percentile(samples, 50)
    return Summary(
        metric=metric,
        tier=tier,
        n=len(samples),
        p50=p50,
        p95=percentile(samples, 95),
        p99=percentile(samples, 99),
        mean=sum(samples) / len(samples),
        min=min(samples),
        max=max(samples),
        target_p50=target,
        met=None if target is None else p50 <= target,
    )


def drift(samples: list[float]) -> tuple[float, float] | None:
    """p50 of the first and of the last third of the samples, in run order: shows a trend over the run."""
    k = len(samples) // 3
    if k < 2:
        return None
    return percentile(samples[:k], 50), percentile(samples[-k:], 50)


DOWNLOAD_MIB = 64  # the body of one throughput run
THROUGHPUT_LABEL = f"throughput through an allowed connection (HTTP download, {DOWNLOAD_MIB} MiB)"
BASELINE_LABEL = "  baseline: the same download by curl on the host, no sandbox"
THROUGHPUT_LEGEND = (
    "MB/s = 10^6 bytes of body per second, curl's size_download / time_total (connect and request included);"
    " p95 = the rate of the p95 download time: 95 % of the runs were at least this fast"
)


@dataclass(frozen=True)
class RateSummary:
    """Throughput of downloads of ``nbytes`` each, from their durations in seconds; rates in MB/s."""

    label: str
    tier: str
    n: int
    p50: float | None
    p95: float | None  # the rate of the p95 (slow end) duration
    max: float | None
    p50_s: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def summarize_rate(label: str, tier: str, nbytes: int, seconds: list[float]) -> RateSummary:
    if not seconds:
        return RateSummary(label, tier, 0, None, None, None, None)
    p50_s = percentile(seconds, 50)
    return RateSummary(
        label=label,
        tier=tier,
        n=len(seconds),
        p50=nbytes / p50_s / 1e6,
        p95=nbytes / percentile(seconds, 95) / 1e6,
        max=nbytes / min(seconds) / 1e6,
        p50_s=p50_s,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def format_table(rows: list[Summary]) -> str:
    """A plain-text table: metric, tier, n, p50, p95, p99, mean, target (p50), met?"""
    header = ["metric", "tier", "n", "p50 ms", "p95 ms", "p99 ms", "mean ms", "target p50", "met?"]
    lines = [header]
    for r in rows:
        met = "-" if r.target_p50 is None else ("n/a" if r.met is None else ("yes" if r.met else "NO"))
        target = "-" if r.target_p50 is None else f"≤ {r.target_p50:g} ms"
        lines.append(
            [METRICS.get(r.metric, r.metric), r.tier, str(r.n), _ms(r.p50), _ms(r.p95), _ms(r.p99)]
            + [_ms(r.mean), target, met]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {2, 3, 4, 5, 6}
    out = []
    for k, line in enumerate(lines):
        cells = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
