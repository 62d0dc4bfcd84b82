"""The local package mirror: filled once by `make mirror` (scripts/fill-mirror.py), served by the fake internet.

tests/_support/fakenet.py serves MIRROR_DIR as `http://mirror.test`; a sandbox that resolves through the fake
internet's DNS installs apt, pip and npm packages from there with the URLs of `urls()`. What the mirror holds
(and how it is laid out) is listed in the docstring of scripts/fill-mirror.py.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests._support.fakenet import FakeNet

MIRROR_DIR = os.environ.get("SANDBURG_MIRROR_DIR") or "/var/cache/sandburg/mirror"
HOST = "mirror.test"
SECTIONS = ("apt", "pypi", "npm")


def urls(net: FakeNet) -> dict[str, str]:
    """Where a sandbox on `net` finds each registry: an apt source (`deb [trusted=yes] <apt> ./`), a pip index
    URL and an npm registry URL. Names, not addresses: the sandbox resolves mirror.test through the fake DNS."""
    assert HOST in net.zone, f"the fake internet {net.netns} has no {HOST}"
    base = f"http://{HOST}"
    return {"apt": f"{base}/apt", "pip": f"{base}/pypi/simple", "npm": f"{base}/npm/"}


def ensure_filled() -> None:
    """Fail with what to do when the mirror was never filled (or a section of it is missing)."""
    stamp = os.path.join(MIRROR_DIR, "stamp.json")
    try:
        with open(stamp) as fh:
            filled = json.load(fh)
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"the package mirror {MIRROR_DIR} is not filled ({exc}): run `make mirror`"
        ) from None
    missing = [s for s in SECTIONS if s not in filled or not os.path.isdir(os.path.join(MIRROR_DIR, s))]
    if missing:
        raise RuntimeError(f"the package mirror {MIRROR_DIR} lacks {', '.join(missing)}: run `make mirror`")
