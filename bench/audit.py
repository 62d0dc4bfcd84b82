"""The audit log's cost on the exec round trip: the benched server (audit on) against a second server of this run
started with SANDBURG_AUDIT=off, one sandbox of each tier on each, execs of `true` alternating between the two so
that drift of the host hits both alike. Budget: p50 with audit on within 10 % of p50 with it off (docs/audit.md).

Run by bench/run.py after the latency phases (skip with --no-audit-compare); only with the bench's own server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.measure import IMAGE, NETWORK, Budget, now
from bench.stats import percentile
from sandburg import Sandbox, Sandburg

BUDGET_PCT = 10.0


def _exec(box: Sandbox) -> float:
    t0 = now()
    r = box.process.exec("true")
    if r.exit_code != 0:
        raise RuntimeError(f"`true` exited {r.exit_code}")
    return (now() - t0) * 1000


def _stats(samples: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(samples, 50), 3), "p95": round(percentile(samples, 95), 3)}


def compare(
    on: Sandburg, off: Sandburg, tiers: list[str], warmup: int, runs: int, budget: Budget, labels: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Per tier: p50/p95 of the exec round trip with audit on and off (ms), and the p50 overhead in %."""
    out: dict[str, Any] = {}
    for tier in tiers:
        if budget.expired():
            out[tier] = {"note": "time budget spent before it started"}
            continue
        log(
            f"[{tier}] exec round trip, audit on vs off: {warmup} warm-up + {runs} recorded each, alternating"
        )
        boxes: list[Sandbox] = []
        try:
            for sb in (on, off):
                boxes.append(sb.create(isolation=tier, image=IMAGE, labels=labels, network=NETWORK))
            for _ in range(warmup):
                _exec(boxes[0]), _exec(boxes[1])
            samples: dict[str, list[float]] = {"on": [], "off": []}
            for i in range(runs):
                if budget.expired():
                    break
                order = ("on", "off") if i % 2 == 0 else ("off", "on")
                for which in order:
                    samples[which].append(_exec(boxes[0] if which == "on" else boxes[1]))
            res: dict[str, Any] = {"n": len(samples["on"])}
            if samples["on"] and samples["off"]:
                res.update(on=_stats(samples["on"]), off=_stats(samples["off"]))
                pct = (res["on"]["p50"] - res["off"]["p50"]) / res["off"]["p50"] * 100
                res.update(overhead_p50_pct=round(pct, 1), met=pct <= BUDGET_PCT)
            out[tier] = res
        except Exception as exc:
            out[tier] = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for box in boxes:
                try:
                    box.delete()
                except Exception as exc:
                    out.setdefault(tier, {}).setdefault("cleanup_errors", []).append(str(exc))
    return out


def format_rows(result: dict[str, Any]) -> str:
    lines = ["exec round trip, audit on vs off (ms)   p50 on  p50 off  p95 on  p95 off  overhead  budget"]
    for tier, r in result.items():
        if "on" not in r:
            lines.append(f"  {tier:<37} {r.get('error') or r.get('note') or 'no samples'}")
            continue
        verdict = "met" if r["met"] else "MISSED"
        lines.append(
            f"  {tier:<37} {r['on']['p50']:>6.2f} {r['off']['p50']:>8.2f} {r['on']['p95']:>7.2f} "
            f"{r['off']['p95']:>8.2f} {r['overhead_p50_pct']:>+8.1f}%  {verdict} (<= {BUDGET_PCT:g}%)"
        )
    return "\n".join(lines)


def with_off_server(
    on: Sandburg, tiers: list[str], warmup: int, runs: int, budget: Budget, report: dict[str, Any], dns: str,
    log: Callable[[str], None],
) -> None:  # fmt: skip
    """Start the SANDBURG_AUDIT=off server, compare, print the rows, and remove that server and its data dir."""
    from tests._support.host import destroy, new_data_dir
    from tests._support.server import ServerProcess

    data_dir, cgroup_parent = new_data_dir("bench-noaudit")
    srv = ServerProcess(data_dir, cgroup_parent, {"SANDBURG_DNS_UPSTREAM": dns, "SANDBURG_AUDIT": "off"})
    labels = {"sandburg-bench": str(report["run_id"])}
    try:
        srv.start(wait=False)
        srv.wait_ready(timeout=max(1.0, budget.remaining()))
        with Sandburg(api_url=srv.api_url, api_key=srv.api_key, timeout=60) as off:
            report["audit"] = compare(on, off, tiers, warmup, runs, budget, labels, log)
        print(format_rows(report["audit"]))
    except Exception as exc:
        report["errors"].append(f"audit on/off comparison: {type(exc).__name__}: {exc}")
    finally:
        srv.stop()
        problems = destroy(data_dir, cgroup_parent)
        if problems:
            report["errors"].append(f"cleanup of the audit-off server left: {problems}")
