"""A/B of two server settings: the same request on two servers of this run, alternating, so that the host's drift
hits both alike. What `make bench`'s audit phase does for audit on/off, for any pair of settings.

    .venv/bin/python bench/ab.py --a SANDBURG_ACTIVITY=1 --b SANDBURG_AUDIT=off --tier container --pairs 300
    .venv/bin/python bench/ab.py --a SANDBURG_ACTIVITY=1 --b SANDBURG_ACTIVITY=0 --tier gvisor --create --pairs 12

Without --create: `exec("true")` in one sandbox per server (20 warm-up pairs). With --create: create (busybox,
an allowlist policy) → first exec, timed together, the sandbox deleted untimed (3 warm-up pairs). Prints the
machine, then p50/p95 of each side and A's p50 relative to B's. Each server has its own data dir, removed after.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import format_machine, machine_info  # noqa: E402
from bench.stats import percentile  # noqa: E402
from sandburg import Sandbox, Sandburg  # noqa: E402
from tests._support.private import private_server  # noqa: E402


def _env(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected NAME=VALUE, got {item!r}")
        out[key] = value
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", action="append", default=[], metavar="NAME=VALUE", help="env of server A")
    ap.add_argument("--b", action="append", default=[], metavar="NAME=VALUE", help="env of server B")
    ap.add_argument("--tier", choices=("container", "gvisor"), default="container")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--create", action="store_true", help="time create→first exec instead of exec")
    args = ap.parse_args()
    print(format_machine(machine_info(ROOT)))

    def create(sb: Sandburg) -> Sandbox:
        return sb.create(isolation=args.tier, image="busybox", network={"allow": ["allowed.test"]})

    def one(sb: Sandburg, box: Sandbox | None) -> float:
        t0 = time.perf_counter()
        b = box or create(sb)
        if b.process.exec("true").exit_code != 0:
            raise RuntimeError("`true` failed")
        took = (time.perf_counter() - t0) * 1000
        if box is None:
            b.delete()
        return took

    with private_server("ab-a", **_env(args.a)) as srv_a, private_server("ab-b", **_env(args.b)) as srv_b:
        with (
            Sandburg(api_url=srv_a.api_url, api_key=srv_a.api_key) as a,
            Sandburg(api_url=srv_b.api_url, api_key=srv_b.api_key) as b,
        ):
            boxes = (None, None) if args.create else (create(a), create(b))
            try:
                for _ in range(3 if args.create else 20):
                    one(a, boxes[0]), one(b, boxes[1])
                samples: dict[str, list[float]] = {"A": [], "B": []}
                for i in range(args.pairs):
                    for side in ("A", "B") if i % 2 else ("B", "A"):
                        samples[side].append(one(a, boxes[0]) if side == "A" else one(b, boxes[1]))
            finally:
                for box in boxes:
                    if box is not None:
                        box.delete()
    what = "create→first exec" if args.create else "exec round trip"
    p50 = {k: percentile(v, 50) for k, v in samples.items()}
    for side, env in (("A", args.a), ("B", args.b)):
        v = samples[side]
        print(f"{what} {args.tier} {side} ({' '.join(env) or 'defaults'}): n {len(v)}  "
              f"p50 {p50[side]:.2f} ms  p95 {percentile(v, 95):.2f} ms")  # fmt: skip
    print(f"A vs B, p50: {100 * (p50['A'] - p50['B']) / p50['B']:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
