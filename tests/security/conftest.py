"""The attack suite runs against a real server, like the e2e tests: it reuses their fixtures (a server of its own
for this directory, sandboxes deleted in finalizers, the session's leak check)."""

from __future__ import annotations

from tests.e2e.conftest import *  # noqa: F403
from tests.e2e.conftest import _leak_trace  # noqa: F401 - autouse, not matched by *
