"""The run's output: the latency, network, images, snapshots and density tables on stdout, and the JSON
results files."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.density import TARGET_MIB, DensityResult
from bench.images import IMAGE_METRICS, IMAGE_TARGETS_P50_MS, ImagesResult
from bench.measure import DOWNLOAD_BYTES, TierResult
from bench.snapshots import MEMORY_LABEL, SNAPSHOT_METRICS, SNAPSHOT_TARGETS_P50_MS, SnapshotsResult
from bench.stats import (
    BASELINE_LABEL,
    METRICS,
    PERCENTILE_METHOD,
    THROUGHPUT_LABEL,
    THROUGHPUT_LEGEND,
    RateSummary,
    Summary,
    drift,
    format_table,
    percentile,
    summarize,
    summarize_rate,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DENSITY_LEGEND = (
    "MemAvailable drop = (MemAvailable before the creates − after the idle) / sandboxes: what the host can no"
    " longer hand out (sandbox processes' anon and shmem memory, kernel memory, the server's and the bench's"
    ' growth), not page cache; "less other processes\' growth" subtracts the change of the anon+shmem PSS of'
    " every process outside the sandboxes, server and bench (neighbours' activity). PSS = Σ Pss of the processes in the sandbox's cgroups, one address space counted"
    " once, shared file pages (runsc, the runtime layer) split among their users. cgroup usage ="
    " memory.usage_in_bytes: page cache first touched by the sandbox and kernel memory included."
)


def summaries(report: dict[str, Any]) -> list[Summary]:
    rows: list[Summary] = []
    for metric in METRICS:
        for tier, res in report["tiers"].items():
            rows.append(summarize(metric, tier, res.samples[metric]))
    return rows


def throughput_summaries(report: dict[str, Any]) -> list[RateSummary]:
    """One row per tier that ran the throughput phase, then the host baseline."""
    base: TierResult | None = report.get("host_baseline")  # None: no fake internet, the phase did not run
    rows = [
        summarize_rate(THROUGHPUT_LABEL, tier, DOWNLOAD_BYTES, res.download_s)
        for tier, res in report["tiers"].items()
        if base is not None or res.download_s
    ]
    if base is not None:
        rows.append(summarize_rate(BASELINE_LABEL, base.tier, DOWNLOAD_BYTES, base.download_s))
    return rows


def print_throughput(report: dict[str, Any], rows: list[RateSummary]) -> None:
    header = ["network", "tier", "n", "p50 MB/s", "p95 MB/s", "max MB/s", "p50 s"]
    lines = [
        [
            r.label,
            r.tier,
            str(r.n),
            _num(r.p50),
            _num(r.p95),
            _num(r.max),
            "-" if r.p50_s is None else f"{r.p50_s:.3f}",
        ]
        for r in rows
    ]
    print("\n" + format_rows(header, lines, {2, 3, 4, 5, 6}))
    print(textwrap.fill(THROUGHPUT_LEGEND, 110))
    base = next((r for r in rows if r.label == BASELINE_LABEL and r.p50), None)
    for r in rows:
        if base is not None and r is not base and r.p50 is not None and base.p50 is not None:
            print(f"[{r.tier}] p50 throughput = {r.p50 / base.p50 * 100:.0f} % of the host baseline's")
    res: TierResult | None = report.get("host_baseline")
    if res is not None:
        for note in res.notes:
            print(f"note [host baseline]: {note}")
        if res.errors:
            print(f"errors [host baseline]: {len(res.errors)}, first: {res.errors[0]}")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _dist(samples: list[float]) -> list[str]:
    if not samples:
        return ["0", "-", "-", "-"]
    return [
        str(len(samples)),
        _num(percentile(samples, 50)),
        _num(percentile(samples, 95)),
        _num(max(samples)),
    ]


def _judge(value: float | None, target: float, noisy: object = False) -> list[str]:
    met = "n/a" if value is None else ("yes" if value <= target else "NO")
    return [f"≤ {target:g} MiB", met + (" (noisy)" if noisy and value is not None else "")]


def density_rows(results: dict[str, DensityResult]) -> list[list[str]]:
    """Rows of the density table: metric, tier, n, p50, p95, max, value, target, met?"""
    rows: list[list[str]] = []
    for key, label in (
        ("create_wall", "{n} concurrent creates: wall ms"),
        ("create", "  one create of them, ms"),
        ("delete_wall", "{n} concurrent deletes: wall ms"),
        ("delete", "  one delete of them, ms"),
        ("available", "idle MiB/sandbox: MemAvailable drop"),
        ("less_others", "  less other processes' growth"),
        ("pss", "idle MiB/sandbox: PSS, host processes"),
        ("cgroup", "idle MiB/sandbox: memory cgroup usage"),
        ("released", "MiB/sandbox back after the deletes"),
    ):
        for tier, r in results.items():
            mem, target, name = r.memory, TARGET_MIB.get(tier, 0.0), label.format(n=r.count)
            k, no_dist, no_target = str(mem.get("sandboxes", 0)), ["-", "-", "-"], ["-", "-"]
            if key in ("create_wall", "delete_wall"):
                wall = r.create_wall_ms if key == "create_wall" else r.delete_wall_ms
                n = len(r.create_ms if key == "create_wall" else r.delete_ms)
                rows.append([name, tier, str(n), *no_dist, _num(wall), *no_target])
            elif key in ("create", "delete"):
                rows.append(
                    [name, tier, *_dist(r.create_ms if key == "create" else r.delete_ms), "-", *no_target]
                )
            elif key in ("available", "less_others"):
                suffix = "" if key == "available" else "_less_others"
                v = mem.get(f"per_sandbox_mem_available{suffix}_mib")
                judged = _judge(v, target, mem.get(f"mem_available{suffix}_noisy"))
                rows.append([name, tier, k, *no_dist, _num(v), *judged])
            elif key == "pss":
                pss = mem.get("pss_mib", [])
                p50 = percentile(pss, 50) if pss else None
                rows.append([name, tier, *_dist(pss), "-", *_judge(p50, target)])
            elif key == "cgroup":
                rows.append([name, tier, *_dist(mem.get("cgroup_usage_mib", [])), "-", *no_target])
            else:
                rows.append([name, tier, k, *no_dist, _num(mem.get("per_sandbox_released_mib")), *no_target])
    return rows


def format_rows(header: list[str], rows: list[list[str]], numeric: set[int]) -> str:
    lines = [header, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
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


def print_density(results: dict[str, DensityResult]) -> None:
    header = ["density", "tier", "n", "p50", "p95", "max", "value", "target", "met?"]
    print("\n" + format_rows(header, density_rows(results), {2, 3, 4, 5, 6}))
    print(textwrap.fill(DENSITY_LEGEND, 110))
    for tier, r in results.items():
        mem = r.memory
        if "pss_by_kind_mean_mib" in mem:
            by_kind = sorted(mem["pss_by_kind_mean_mib"].items(), key=lambda kv: -kv[1]["pss"])
            parts = "; ".join(
                f"{k} {v['pss']:.1f} (anon {v['pss_anon']:.1f}, file {v['pss_file']:.1f}, shmem {v['pss_shmem']:.1f})"
                for k, v in by_kind
            )
            print(f"PSS by process [{tier}], MiB/sandbox (mean): {parts}")
        if "per_sandbox_meminfo_delta_mib" in mem:
            parts = ", ".join(f"{k} {v:+.1f}" for k, v in mem["per_sandbox_meminfo_delta_mib"].items())
            print(f"/proc/meminfo change per sandbox [{tier}], MiB: {parts}")
        if mem.get("per_sandbox_others_anon_change_mib") is not None:
            v = mem["per_sandbox_others_anon_change_mib"]
            print(f"anon+shmem PSS change of every other host process [{tier}], per sandbox: {v:+.2f} MiB")
        if mem.get("own_process_pss_growth_mib"):
            parts = ", ".join(f"{k} {v:+.1f}" for k, v in mem["own_process_pss_growth_mib"].items())
            print(
                f"PSS growth of the server / bench process [{tier}] (total, in the MemAvailable drop), MiB: {parts}"
            )
        if "cgroup_stat_mean_mib" in mem:
            parts = ", ".join(f"{k} {v:.1f}" for k, v in mem["cgroup_stat_mean_mib"].items())
            print(f"memory.stat per sandbox [{tier}] (mean), MiB: {parts}")
        for note in r.notes:
            print(f"note [{tier}] density: {note}")
        if r.errors:
            print(f"errors [{tier}] density: {len(r.errors)}, first: {r.errors[0]}")


def image_summaries(report: dict[str, Any]) -> list[Summary]:
    """One row per image metric and tier measured, in IMAGE_METRICS order; the target is on the p50."""
    res: ImagesResult | None = report.get("images")
    if res is None:
        return []
    rows = []
    for metric in IMAGE_METRICS:
        for tier, samples in res.samples.get(metric, {}).items():
            row = summarize(metric, tier, samples)
            target = IMAGE_TARGETS_P50_MS.get(metric)
            if target is not None and row.p50 is not None:
                row = replace(row, target_p50=target, met=row.p50 < target)
            rows.append(row)
    return rows


def print_images(report: dict[str, Any], rows: list[Summary]) -> None:
    header = ["images", "tier", "n", "p50 ms", "p95 ms", "max ms", "target p50", "met?"]
    lines = [
        [IMAGE_METRICS[r.metric], r.tier, str(r.n), _num(r.p50), _num(r.p95), _num(r.max)]
        + (["-", "-"] if r.target_p50 is None else [f"< {r.target_p50:g} ms", "yes" if r.met else "NO"])
        for r in rows
    ]
    print("\n" + format_rows(header, lines, {2, 3, 4, 5}))
    res: ImagesResult = report["images"]
    steps: dict[str, list[float]] = {}
    for build in res.build_steps_s:
        for step, seconds in build.items():
            steps.setdefault(step, []).append(seconds)
    if steps:  # the build log's "#i DONE 0.1s": to 0.1 s, the step's commands and its snapshot
        parts = ", ".join(f"{k} p50 {percentile(v, 50):.1f} s" for k, v in steps.items())
        print(f"cold build, per layer step (build log, #1 is the cache-busting env): {parts}")
    for note in res.notes:
        print(f"note [images]: {note}")
    if res.errors:
        print(f"errors [images]: {len(res.errors)}, first: {res.errors[0]}")


def snapshot_summaries(report: dict[str, Any]) -> list[tuple[int, Summary]]:
    """(state size in MB, row) per snapshot metric, tier and size measured, in SNAPSHOT_METRICS order, then
    tier, then size (so the sizes of one tier are next to each other); the target is on the p50."""
    res: SnapshotsResult | None = report.get("snapshots")
    if res is None:
        return []
    rows = []
    for metric in SNAPSHOT_METRICS:
        for tier, by_size in res.samples.get(metric, {}).items():
            for size, samples in sorted(by_size.items(), key=lambda kv: int(kv[0])):
                row = summarize(metric, tier, samples)
                target = SNAPSHOT_TARGETS_P50_MS.get((metric, tier))
                if target is not None and row.p50 is not None:
                    row = replace(row, target_p50=target, met=row.p50 <= target)
                rows.append((int(size), row))
    return rows


def print_snapshots(report: dict[str, Any], rows: list[tuple[int, Summary]]) -> None:
    header = ["snapshots", "tier", "state", "n", "p50 ms", "p95 ms", "max ms", "target p50", "met?"]
    lines = [
        [SNAPSHOT_METRICS[r.metric], r.tier, f"{size} MB", str(r.n), _num(r.p50), _num(r.p95), _num(r.max)]
        + (["-", "-"] if r.target_p50 is None else [f"≤ {r.target_p50:g} ms", "yes" if r.met else "NO"])
        for size, r in rows
    ]
    res: SnapshotsResult = report["snapshots"]
    for tier, answer in res.memory.items():  # no number: a tier whose memory snapshots are refused
        met = "not implemented (501)" if "(501 " in answer else "refused" if "refused" in answer else "n/a"
        lines.append([MEMORY_LABEL, tier, "-", "0", "-", "-", "-", "-", met])
    print("\n" + format_rows(header, lines, {3, 4, 5, 6}))
    print(
        "state = changed files in the sandbox's writable layer (bench/make_state.sh): size × 10 files of 50 KiB"
        " and one of size / 2 MiB, random data"
    )
    p50 = {(r.metric, r.tier, size): r.p50 for size, r in rows if r.p50 is not None}
    sizes = sorted({size for size, _ in rows})
    if len(sizes) > 1:  # the promise: flat in the size of the state
        lo, hi = sizes[0], sizes[-1]
        for tier in dict.fromkeys(r.tier for _, r in rows):
            parts = [
                f"{SNAPSHOT_METRICS[m].strip()} ×{p50[(m, tier, hi)] / p50[(m, tier, lo)]:.2f}"
                for m in SNAPSHOT_METRICS
                if p50.get((m, tier, hi)) and p50.get((m, tier, lo))
            ]
            if parts:
                print(f"p50 at {hi} MB / at {lo} MB [{tier}]: " + ", ".join(parts))
    for tier, by_size in res.fill.items():
        for size, f in by_size.items():
            print(
                f"fill [{tier} {size} MB]: {f['files']:g} files, {f['bytes'] / 1e6:.1f} MB"
                f" (du {f['du_kib']:g} KiB) in {f['seconds']:.1f} s; server-side captureMs of the first"
                f" snapshot after it {f.get('first_capture_ms', 0):.1f}"
            )
    for tier, answer in res.memory.items():
        print(f"memory snapshot [{tier}]: {answer}")
    for note in res.notes:
        print(f"note [snapshots]: {note}")
    if res.errors:
        print(f"errors [snapshots]: {len(res.errors)}, first: {res.errors[0]}")


def print_latency(report: dict[str, Any], rows: list[Summary]) -> None:
    print(format_table(rows))
    print(f"\npercentiles: {PERCENTILE_METHOD}; times in ms on the client (sync SDK)")
    for tier, res in report["tiers"].items():
        for metric in ("create", "delete"):
            d = drift(res.samples[metric])
            if d is not None:
                third = len(res.samples[metric]) // 3
                print(
                    f"drift [{tier}] {metric}: p50 of the first {third} runs {d[0]:.1f} ms, of the last {third} {d[1]:.1f} ms"
                )
        for note in res.notes:
            print(f"note [{tier}]: {note}")
        if res.errors:
            print(f"errors [{tier}]: {len(res.errors)}, first: {res.errors[0]}")


def write_results(
    report: dict[str, Any],
    rows: list[Summary],
    net_rows: list[RateSummary],
    image_rows: list[Summary],
    snapshot_rows: list[tuple[int, Summary]],
) -> list[Path]:
    out = dict(report)
    out["tiers"] = {
        tier: {
            "samples_ms": res.samples,
            "download_s": res.download_s,  # throughput runs: seconds per download of download_bytes
            "errors": res.errors,
            "notes": res.notes,
        }
        for tier, res in report["tiers"].items()
    }
    base: TierResult | None = report.get("host_baseline")
    out["host_baseline"] = (
        None if base is None else {"download_s": base.download_s, "errors": base.errors, "notes": base.notes}
    )
    out["density"] = {tier: res.to_json() for tier, res in report["density"].items()}
    out["summary"] = [r.to_json() for r in rows]
    out["summary_throughput"] = [r.to_json() for r in net_rows]
    images: ImagesResult | None = report.get("images")
    out["images"] = None if images is None else images.to_json()  # samples in ms, per metric and tier
    out["summary_images"] = [r.to_json() for r in image_rows]
    snapshots: SnapshotsResult | None = report.get("snapshots")
    out["snapshots"] = None if snapshots is None else snapshots.to_json()  # ms per metric, tier and size (MB)
    out["summary_snapshots"] = [{"size_mb": size, **r.to_json()} for size, r in snapshot_rows]
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(out, indent=2, ensure_ascii=False) + "\n"
    paths = [RESULTS / f"{report['started_utc'].replace('-', '').replace(':', '')}.json"]
    # an aborted run, or one that measured nothing, must not replace the last real results
    measured = (
        any(r.n for r in rows)
        or any(r.n for r in net_rows)
        or any(r.n for r in image_rows)
        or any(r.n for _, r in snapshot_rows)
        or any(d.create_ms for d in report["density"].values())
    )
    if not report.get("aborted") and measured:
        paths.append(RESULTS / "latest.json")
    for path in paths:
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return paths
