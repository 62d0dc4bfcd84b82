"""The ``sandburg`` command line: sandboxes through the SDK, and ``sandburg server ...`` for the daemon.

The entry point is :func:`sandburg.cli.main.main`.
"""

__all__: list[str] = []
