"""Errors through Daytona's SDK: its own exception classes for auth, not found, conflict and timeout, and a
typed 501 (never a 404 page) for what sandburg does not do yet."""

from __future__ import annotations

import os

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import CreateSandboxFromSnapshotParams, Daytona, DaytonaConfig

out: dict = {}
bad = Daytona(DaytonaConfig(api_key="sb_not-a-key", api_url=os.environ["DAYTONA_API_URL"]))
out["auth"] = catch(lambda: bad.get("anything"))
out["auth_create"] = catch(lambda: bad.create(CreateSandboxFromSnapshotParams(snapshot="busybox")))

daytona = Daytona()
with cleanup(daytona) as made:
    box = daytona.create(CreateSandboxFromSnapshotParams(snapshot="busybox", labels=TEST_LABEL))
    made.append(box)
    out["conflict"] = catch(
        lambda: made.append(
            daytona.create(CreateSandboxFromSnapshotParams(name=box.name, snapshot="busybox"))
        )
    )
    out["bad_image"] = catch(
        lambda: daytona.create(CreateSandboxFromSnapshotParams(snapshot="no-such-image"))
    )
    out["bad_resources"] = catch(
        lambda: daytona.create(CreateSandboxFromSnapshotParams(snapshot="busybox", env_vars={"A=B": "x"}))
    )
    out["not_found"] = catch(lambda: daytona.get("00000000-0000-0000-0000-000000000000"))
    out["timeout"] = catch(lambda: box.process.exec("sleep 20", timeout=1))
    out["archive_started"] = catch(lambda: box.archive())
    # not yet: typed 501s with Daytona's status mapping (plain DaytonaError, status 501)
    out["preview"] = catch(lambda: box.create_signed_preview_url(8080))
    out["resize"] = catch(lambda: box.resize(__import__("daytona").Resources(cpu=1)))
    out["volume_missing"] = catch(lambda: daytona.volume.get("no-such-volume"))
    out["secrets"] = catch(
        lambda: daytona.create(
            CreateSandboxFromSnapshotParams(snapshot="busybox", secrets={"TOKEN": "NO_SUCH_SECRET"})
        )
    )
    out["ssh"] = catch(lambda: box.create_ssh_access(60))
    out["update_env"] = catch(lambda: box.update_env({"A": "1"}))
    box.stop()
    out["stopped_exec"] = catch(lambda: box.process.exec("true"))
emit(out)
