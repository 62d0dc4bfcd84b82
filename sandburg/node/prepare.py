"""`python -m sandburg.node.prepare`: mount the store, build the runtime layer and the built-in images now.

`make up` runs it in the foreground so that the one-time Debian build shows its progress, before the daemon starts.
"""

from __future__ import annotations

import os
import sys
import time

from .errors import NodeError
from .node import Node, NodeConfig


def main() -> int:
    if os.geteuid() != 0:
        print("prepare: must run as root", file=sys.stderr)
        return 1
    data_dir = os.environ.get("SANDBURG_DATA_DIR") or "/var/lib/sandburg"
    cache_dir = os.environ.get("SANDBURG_CACHE_DIR") or "/var/cache/sandburg"
    images = tuple(i for i in (os.environ.get("SANDBURG_IMAGES") or "busybox,debian-12").split(",") if i)
    t0 = time.monotonic()
    try:
        Node(NodeConfig(data_dir=data_dir, cache_dir=cache_dir)).prepare(images)
    except NodeError as exc:
        print(f"prepare: {exc}", file=sys.stderr)
        return 1
    print(
        f"prepare: store, runtime layer and images ({', '.join(images)}) ready in {time.monotonic() - t0:.1f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
