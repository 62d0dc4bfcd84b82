"""sandburg benchmark: create→first exec, create, first exec, delete and exec round trip, per isolation tier;
throughput of an HTTP download through an allowed connection; then density: N concurrent creates/deletes and
the idle memory of N sandboxes (bench/density.py); images: a cold build, `sandburg up`, a pull and creates
from the pulled image (bench/images.py); snapshots: snapshot, restore, fork of 1 and of 10 with 20 and 200 MB
of changed files (bench/snapshots.py); the exec round trip with the audit log on vs off (bench/audit.py). Every
sandbox has networking on, with an allowlist policy.

    .venv/bin/python bench/run.py [--runs 30] [--exec-runs 300] [--net-runs 5] [--tiers container,gvisor]
                                  [--quick] [--no-density] [--density-count 20] [--idle-seconds 60]
                                  [--no-images] [--image-runs 5] [--no-snapshots] [--snapshot-runs 5]
                                  [--budget 900] [--no-audit-compare]
                                  [--api-url URL --api-key KEY]

Starts its own server (`python -m sandburg.server`) on a throwaway data dir under the test root, and a fake
internet for it (tests/_support/fakenet.py: its DNS is the server's resolver upstream, its HTTP servers the
download source), and always removes both afterwards (sandboxes, mounts, cgroups, files, the fake internet's
netns) — unless --api-url points at a running server, in which case only the sandboxes this run made are
deleted and the throughput phase is skipped. Timings are taken on the client with the sync SDK.
Prints the machine and a table; writes bench/results/latest.json and bench/results/<UTC timestamp>.json.
Exit status: 0 when the run finished (targets met or not; partial if the time budget ran out), 1 on errors,
an abort (SIGINT/SIGTERM also end in cleanup) or leftovers on the host, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.audit import with_off_server  # noqa: E402
from bench.density import Density, DensityResult, DensityTarget  # noqa: E402
from bench.hostcheck import (  # noqa: E402
    bridge_tables,
    leftovers,
    other_servers,
    processes_using,
    remove_empty_cgroups,
)
from bench.images import ImagesBench, ImagesResult  # noqa: E402
from bench.machine import format_machine, machine_info  # noqa: E402
from bench.measure import (  # noqa: E402
    ALLOWED_HOST,
    DOWNLOAD_BYTES,
    IMAGE,
    NETWORK,
    Bench,
    Budget,
    TierResult,
    download_url,
)
from bench.report import (  # noqa: E402
    image_summaries,
    print_density,
    print_images,
    print_latency,
    print_snapshots,
    print_throughput,
    snapshot_summaries,
    summaries,
    throughput_summaries,
    write_results,
)
from bench.snapshots import SIZES_MB, SnapshotsBench, SnapshotsResult  # noqa: E402
from bench.stats import PERCENTILE_METHOD  # noqa: E402
from sandburg import Sandburg  # noqa: E402

TIERS = ("container", "gvisor")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, help="recorded create→first exec runs per tier (default 30)")
    ap.add_argument("--exec-runs", type=int, help="recorded exec round trips per tier (default 300)")
    ap.add_argument("--warmup", type=int, default=5, help="create warm-up runs, not recorded (default 5)")
    ap.add_argument("--exec-warmup", type=int, default=10, help="exec warm-ups, not recorded (default 10)")
    ap.add_argument("--net-runs", type=int, help="recorded downloads per tier and on the host (default 5)")
    ap.add_argument("--net-warmup", type=int, default=1, help="download warm-ups, not recorded (default 1)")
    ap.add_argument("--tiers", default=",".join(TIERS), help="comma-separated (default container,gvisor)")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: 5 runs / 50 execs / 3 downloads per tier"
    )
    ap.add_argument("--density", action=argparse.BooleanOptionalAction, default=True, help="density pass")
    ap.add_argument("--density-count", type=int, help="concurrent sandboxes per tier (default 20, --quick 4)")
    ap.add_argument(
        "--idle-seconds", type=float, help="idle time before reading memory (default 60, --quick 5)"
    )
    ap.add_argument("--images", action=argparse.BooleanOptionalAction, default=True, help="images pass")
    ap.add_argument(
        "--image-runs", type=int, help="cold builds and `sandburg up` calls (default 5, --quick 2)"
    )
    ap.add_argument(
        "--snapshots", action=argparse.BooleanOptionalAction, default=True, help="state snapshots pass"
    )
    ap.add_argument(
        "--snapshot-runs",
        type=int,
        help="snapshots, restores and forks of 1 per tier and size (default 5, --quick 2)",
    )
    ap.add_argument(
        "--audit-compare", action=argparse.BooleanOptionalAction, default=True,
        help="exec round trip with audit on vs a second server with SANDBURG_AUDIT=off (bench/audit.py)",
    )  # fmt: skip
    ap.add_argument("--budget", type=float, default=900, help="global time budget in seconds (default 900)")
    ap.add_argument("--api-url", help="bench this running server instead of starting one")
    ap.add_argument("--api-key", help="its API key (default: SANDBURG_API_KEY / credentials.json)")
    args = ap.parse_args(argv)
    args.runs = args.runs if args.runs is not None else (5 if args.quick else 30)
    args.exec_runs = args.exec_runs if args.exec_runs is not None else (50 if args.quick else 300)
    args.net_runs = args.net_runs if args.net_runs is not None else (3 if args.quick else 5)
    args.density_count = args.density_count if args.density_count is not None else (4 if args.quick else 20)
    args.idle_seconds = args.idle_seconds if args.idle_seconds is not None else (5 if args.quick else 60)
    args.image_runs = args.image_runs if args.image_runs is not None else (2 if args.quick else 5)
    args.snapshot_runs = args.snapshot_runs if args.snapshot_runs is not None else (2 if args.quick else 5)
    args.tiers = [t.strip() for t in args.tiers.split(",") if t.strip()]
    bad = [t for t in args.tiers if t not in TIERS]
    if bad or not args.tiers:
        ap.error(f"--tiers takes a subset of {','.join(TIERS)}, got {bad or 'nothing'}")
    if not 1 <= args.density_count <= 200 or not 0 <= args.idle_seconds <= 3600:
        ap.error("--density-count takes 1..200, --idle-seconds 0..3600")
    for name in (
        "runs",
        "exec_runs",
        "warmup",
        "exec_warmup",
        "net_runs",
        "net_warmup",
        "image_runs",
        "snapshot_runs",
    ):
        if getattr(args, name) < 0:
            ap.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.budget <= 0:
        ap.error("--budget must be > 0")
    return args


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks, so the host is cleaned up


def run_bench(
    sb: Sandburg,
    args: argparse.Namespace,
    budget: Budget,
    report: dict[str, Any],
    target: DensityTarget,
    allowed_addr: str | None,
    cli_env: dict[str, str],
) -> None:
    """``allowed_addr``: the fake internet's address of ALLOWED_HOST, None without one (no throughput, and
    no pull from a registry on this host's loopback: the server is not ours). ``cli_env``: how the
    `sandburg` CLI reaches the server (SANDBURG_API_URL / SANDBURG_API_KEY)."""
    health = sb.health()
    report["server"]["version"] = health.version
    labels = {"sandburg-bench": report["run_id"]}
    bench = Bench(sb, budget, labels, log)
    try:
        if allowed_addr is not None:  # first, while the host is quiet: nothing of this run is up yet
            report["host_baseline"] = TierResult("host")
            bench.baseline_phase(
                report["host_baseline"], download_url(allowed_addr), args.net_warmup, args.net_runs
            )
        for tier in args.tiers:
            res = TierResult(tier)
            report["tiers"][tier] = res
            bench.create_phase(res, args.warmup, args.runs)
            bench.exec_phase(res, args.exec_warmup, args.exec_runs)
            if allowed_addr is not None:
                bench.throughput_phase(res, args.net_warmup, args.net_runs)
            else:
                res.notes.append("throughput: skipped, no fake internet (--api-url)")
        if args.images:  # builds and pulls, before density: they leave btrfs work behind too
            report["images"] = ImagesResult()
            images = ImagesBench(sb, budget, labels, log, cli_env, report["run_id"])
            images.run(
                report["images"], args.image_runs, max(5, args.runs), args.tiers, allowed_addr is not None
            )
        if args.snapshots:  # 200 MB sandboxes and snapshots: btrfs work left behind too, before density
            report["snapshots"] = SnapshotsResult()
            snapshots = SnapshotsBench(sb, budget, labels, log, report["run_id"])
            snapshots.run(report["snapshots"], args.snapshot_runs, args.tiers)
        # after every latency phase: a burst of creates and deletes leaves work behind (btrfs cleaner)
        density = Density(target, budget, labels, log)
        for tier in args.tiers if args.density else []:
            report["density"][tier] = DensityResult(tier, args.density_count)
            density.run(report["density"][tier], args.idle_seconds)
    finally:
        try:
            left = bench.sweep()
            if left:
                report["errors"].append(f"sandboxes still listed after the run, deleted: {left}")
        except Exception as exc:
            report["errors"].append(f"final sweep: {type(exc).__name__}: {exc}")


def with_own_server(args: argparse.Namespace, budget: Budget, report: dict[str, Any]) -> None:
    from tests._support import fakenet
    from tests._support.host import require_root

    require_root()
    net = fakenet.start()
    try:
        # its subnet is chosen from the pid: another test run's fake internet on the same subnet breaks both
        clash = subnet_users(net.subnet)
        if len(clash) > 1:
            raise RuntimeError(f"the fake internet's subnet {net.subnet} is on several interfaces: {clash}")
        report["server"]["fake_internet"] = {
            "netns": net.netns,
            "dns": net.dns,
            ALLOWED_HOST: net.addr(ALLOWED_HOST),
        }
        log(f"fake internet up: netns {net.netns}, DNS {net.dns}, {ALLOWED_HOST} = {net.addr(ALLOWED_HOST)}")
        with_server(args, budget, report, net.dns, net.addr(ALLOWED_HOST))
    finally:  # after the server and its sandboxes are gone
        fakenet.stop(net)
        if os.path.exists(f"/run/netns/{net.netns}"):
            report["errors"].append(f"cleanup left on the host: the fake internet's netns {net.netns}")


def subnet_users(subnet: str) -> list[str]:
    """The host's interfaces with an IPv4 address in ``subnet``."""
    out = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    net = ipaddress.ip_network(subnet)
    return [
        f"{fields[1]} {fields[3]}"
        for fields in (line.split() for line in out.splitlines())
        if len(fields) > 3 and ipaddress.ip_interface(fields[3]).ip in net
    ]


def with_server(
    args: argparse.Namespace, budget: Budget, report: dict[str, Any], dns: str, allowed_addr: str
) -> None:
    from tests._support.host import destroy, net_env, new_data_dir
    from tests._support.server import ServerProcess

    data_dir, cgroup_parent = new_data_dir("bench")
    foreign = [t for t in bridge_tables() if t != net_env(data_dir)["SANDBURG_NET_TABLE"]]
    if foreign:  # every node's bridge table sees every sandbox port (sv*) on the host, not only its own
        msg = f"other sandburg nodes' nftables bridge tables on this host (servers, or leftovers): {foreign}"
        report["warnings"].append(msg + "; they may drop this run's sandbox traffic")
        log("warning: " + msg)
    srv = ServerProcess(data_dir, cgroup_parent, {"SANDBURG_DNS_UPSTREAM": dns})
    report["server"].update(mode="own subprocess", data_dir=data_dir, cgroup_parent=cgroup_parent)
    log(f"starting server on {srv.api_url} (data dir {data_dir}, log {srv.log_path}, DNS upstream {dns})")
    completed = False
    try:
        srv.start(wait=False)
        srv.wait_ready(timeout=max(1.0, budget.remaining()))
        assert srv.proc is not None
        report["server"].update(pid=srv.proc.pid, api_url=srv.api_url)
        note_neighbours(report, {os.getpid(), srv.proc.pid}, "at start")
        target = DensityTarget(
            lambda: Sandburg(api_url=srv.api_url, api_key=srv.api_key, timeout=60),
            cgroup_parent,
            srv.proc.pid,
        )
        with Sandburg(api_url=srv.api_url, api_key=srv.api_key, timeout=60) as sb:
            try:
                cli_env = {"SANDBURG_API_URL": srv.api_url, "SANDBURG_API_KEY": srv.api_key}
                run_bench(sb, args, budget, report, target, allowed_addr, cli_env)
                if args.audit_compare:
                    with_off_server(
                        sb, args.tiers, args.exec_warmup, args.exec_runs, budget, report, dns, log
                    )  # fmt: skip
            finally:
                try:
                    listed = [box.id for box in sb.list()]
                    if listed:
                        report["errors"].append(f"the server still lists sandboxes after the run: {listed}")
                except Exception as exc:
                    report["errors"].append(f"listing sandboxes after the run: {type(exc).__name__}: {exc}")
        completed = True
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("stopping the server and removing its data dir")
        if srv.proc is not None and srv.proc.poll() is not None:
            report["errors"].append(
                f"the server exited on its own during the run, status {srv.proc.returncode}"
            )
        srv.stop()
        running = processes_using(data_dir)  # sandboxes outlive a server stop by design: these were leaked
        if running:
            report["errors"].append(
                f"processes of the data dir still running after the server stopped: {running}"
            )
        problems = destroy(data_dir, cgroup_parent)
        # destroy() skips the `unified` hierarchy of a cgroup v1/v2 hybrid host: remove what it left, and say so
        swept = remove_empty_cgroups(cgroup_parent)
        if swept:
            report["warnings"].append(f"destroy() left empty cgroup dirs, removed by the bench: {swept}")
        problems += leftovers(data_dir, cgroup_parent)
        if problems:
            report["errors"].append(f"cleanup left on the host: {problems}")
        report["server"]["cleaned_up"] = not problems
        failed = [r.errors for r in measured(report) if r.errors]
        if not completed or report["errors"] or failed:
            report["server"]["log_tail"] = srv.tail(60)
            report["server"]["log_path"] = srv.log_path  # kept to explain the failure
        elif os.path.exists(srv.log_path):
            os.remove(srv.log_path)


def measured(report: dict[str, Any]) -> list[Any]:
    """Every result of the run that keeps its own errors: tiers, density passes, the host baseline, images,
    snapshots."""
    base = [report["host_baseline"]] if report.get("host_baseline") is not None else []
    phases = [report[k] for k in ("images", "snapshots") if report.get(k) is not None]
    return [*report["tiers"].values(), *report["density"].values(), *base, *phases]


def note_neighbours(report: dict[str, Any], exclude: set[int], when: str) -> None:
    others = other_servers(exclude)
    report["machine"][f"other_sandburg_processes_{when.replace(' ', '_')}"] = others
    if others:
        log(
            f"warning: {len(others)} other sandburg server/test processes on this host {when}; timings may be skewed:"
        )
        for line in others:
            log(f"  {line}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    budget = Budget(args.budget)
    signal.signal(signal.SIGTERM, _on_sigterm)
    machine = machine_info(ROOT)
    print(format_machine(machine))
    print()
    report: dict[str, Any] = {
        "run_id": uuid.uuid4().hex[:12],
        "started_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine,
        "config": {
            "image": IMAGE,
            "tiers": args.tiers,
            "runs": args.runs,
            "warmup": args.warmup,
            "exec_runs": args.exec_runs,
            "exec_warmup": args.exec_warmup,
            "network": NETWORK,
            "net_runs": args.net_runs,
            "net_warmup": args.net_warmup,
            "download_bytes": DOWNLOAD_BYTES,
            "density": args.density,
            "density_count": args.density_count,
            "idle_seconds": args.idle_seconds,
            "images": args.images,
            "image_runs": args.image_runs,
            "snapshots": args.snapshots,
            "snapshot_runs": args.snapshot_runs,
            "snapshot_sizes_mb": list(SIZES_MB),
            "budget_s": args.budget,
            "quick": args.quick,
            "client": "sandburg sync SDK (Sandburg), timings with time.perf_counter on the client",
            "percentiles": PERCENTILE_METHOD,
        },
        "server": {},
        "tiers": {},
        "density": {},
        "host_baseline": None,
        "images": None,
        "snapshots": None,
        "errors": [],
        "warnings": [],
        "aborted": False,
    }
    status = 0
    try:
        if args.api_url:
            report["server"].update(mode="external", api_url=args.api_url)
            # the sandboxes' cgroups and MemAvailable are only meaningful when that server runs on this host
            target = DensityTarget(
                lambda: Sandburg(api_url=args.api_url, api_key=args.api_key, timeout=60),
                os.environ.get("SANDBURG_CGROUP_PARENT", "sandburg"),
                None,
            )
            with Sandburg(api_url=args.api_url, api_key=args.api_key, timeout=60) as sb:
                cli_env = {"SANDBURG_API_URL": args.api_url}
                if args.api_key:
                    cli_env["SANDBURG_API_KEY"] = args.api_key
                run_bench(sb, args, budget, report, target, None, cli_env)
        else:
            with_own_server(args, budget, report)
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        report["errors"].append(f"aborted: {type(exc).__name__}: {exc}")
        report["aborted"] = True
        status = 1
    report["budget_exhausted"] = budget.exhausted
    report["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if report["server"].get("mode") != "external":  # there the benched server would count as a neighbour
        note_neighbours(report, {os.getpid(), report["server"].get("pid", -1)}, "at end")
    report["elapsed_s"] = round(args.budget - budget.remaining(), 1)
    rows = summaries(report)
    net_rows = throughput_summaries(report)
    image_rows = image_summaries(report)
    snapshot_rows = snapshot_summaries(report)
    print_latency(report, rows)
    if net_rows:
        print_throughput(report, net_rows)
    if report["images"] is not None:
        print_images(report, image_rows)
    if report["snapshots"] is not None:
        print_snapshots(report, snapshot_rows)
    if report["density"]:
        print_density(report["density"])
    if any(r.errors for r in measured(report)):
        status = 1
    print(f"load avg at start {machine['loadavg_at_start']}, at end {report['machine']['loadavg_at_end']}")
    busy = [k for k in report["machine"] if k.startswith("other_sandburg") and report["machine"][k]]
    if busy:
        print("WARNING: other sandburg servers / test runs were active on this host: timings may be skewed")
    if budget.exhausted:
        print(f"time budget of {args.budget:g} s spent: results are partial")
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    for err in report["errors"]:
        status = 1
        print(f"error: {err}")
    if "log_tail" in report["server"]:
        print("server log (tail):\n" + report["server"]["log_tail"])
    for path in write_results(report, rows, net_rows, image_rows, snapshot_rows):
        print(f"wrote {path.relative_to(ROOT)}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
