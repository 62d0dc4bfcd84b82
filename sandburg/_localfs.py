"""Local-file handling shared by the sync and async clients (the only local file I/O the SDK does).

The clients do their network I/O themselves; what they do with the local file around it lives here so that
both behave the same.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_write(local_path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A binary file to write ``local_path``'s new content into, put in place only if the block succeeds.

    The data goes to a temporary file next to ``local_path``, renamed into place once complete, so a failed
    or cancelled download never leaves a truncated file behind.
    """
    target = Path(local_path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        # mkstemp makes the file 0600; give it what an ordinary download would get
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
