"""Daytona's declarative images and snapshots (templates) against sandburg's cached builder.

    dt_images.py REGISTRY_REF    (an image on the test's own registry on loopback)

`daytona.create(CreateSandboxFromImageParams(image=Image...))` with build logs, the same Image again (cached),
`daytona.snapshot.create/get/list/activate/delete` from an Image and from an image name, a sandbox from that
snapshot, a failing Dockerfile, and COPY of local files (refused: no S3 context upload yet).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import (
    CreateSandboxFromImageParams,
    CreateSandboxFromSnapshotParams,
    CreateSnapshotParams,
    Daytona,
    Image,
    ListSandboxesQuery,
)

registry_ref = sys.argv[1]
out: dict = {}
daytona = Daytona()
tag = uuid.uuid4().hex[:8]

image = (
    Image.base("debian-12")
    .env({"APP_MODE": "test", "QUOTED": "two words"})
    .run_commands(f"echo built-{tag} > /etc/built", "mkdir -p /srv/app")
    .workdir("/srv/app")
    .run_commands("pwd > /etc/where")
)

with cleanup(daytona) as made:
    logs: list[str] = []
    t0 = time.monotonic()
    box = daytona.create(
        CreateSandboxFromImageParams(image=image, labels=TEST_LABEL),
        on_snapshot_create_logs=logs.append,
        timeout=300,
    )
    made.append(box)
    r = box.process.exec("cat /etc/built /etc/where; echo $APP_MODE; echo $QUOTED", timeout=30)
    out["from_image"] = {
        "state": str(box.state.value if hasattr(box.state, "value") else box.state),
        "stdout": r.result.split("\n"),
        "log_has_steps": any("RUN" in line or "run" in line for line in logs),
        "seconds": round(time.monotonic() - t0, 1),
    }
    t0 = time.monotonic()
    again = daytona.create(CreateSandboxFromImageParams(image=image, labels=TEST_LABEL), timeout=120)
    made.append(again)
    out["cached"] = {
        "seconds": round(time.monotonic() - t0, 1),
        "stdout": again.process.exec("cat /etc/built", timeout=30).result.strip(),
    }

    # snapshots (templates): from an Image, then a sandbox from the snapshot
    name = f"tpl-{tag}"
    slogs: list[str] = []
    snap = daytona.snapshot.create(
        CreateSnapshotParams(
            name=name, image=Image.base("debian-12").run_commands(f"echo tpl-{tag} > /etc/tpl")
        ),
        on_logs=slogs.append,
    )
    got = daytona.snapshot.get(name)
    listed = [s.name for s in daytona.snapshot.list().items]
    fromsnap = daytona.create(CreateSandboxFromSnapshotParams(snapshot=name, labels=TEST_LABEL), timeout=120)
    made.append(fromsnap)
    out["snapshot"] = {
        "state": str(getattr(snap.state, "value", snap.state)),
        "get_id_matches": got.id == snap.id,
        "listed": name in listed,
        "content": fromsnap.process.exec("cat /etc/tpl", timeout=30).result.strip(),
        "activate": str(getattr(daytona.snapshot.activate(got).state, "value", "")),
    }
    fromsnap.delete()
    made.remove(fromsnap)
    daytona.snapshot.delete(got)
    out["snapshot"]["deleted"] = name not in [s.name for s in daytona.snapshot.list().items]

    # a snapshot of an image name: a registry reference on the test's registry
    ref_name = f"pulled-{tag}"
    pulled = daytona.snapshot.create(CreateSnapshotParams(name=ref_name, image=registry_ref))
    frompull = daytona.create(
        CreateSandboxFromSnapshotParams(snapshot=ref_name, labels=TEST_LABEL), timeout=120
    )
    made.append(frompull)
    out["pulled"] = {
        "state": str(getattr(pulled.state, "value", pulled.state)),
        "ls": frompull.process.exec("ls /", timeout=30).result.split(),
    }
    frompull.delete()
    made.remove(frompull)
    daytona.snapshot.delete(daytona.snapshot.get(ref_name))

    # a failing build, and COPY of local files
    bad = Image.base("debian-12").run_commands("echo about to fail; exit 9")
    out["failing"] = catch(
        lambda: daytona.create(CreateSandboxFromImageParams(image=bad, labels=TEST_LABEL), timeout=120)
    )
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "data.txt")
        with open(path, "w") as fh:
            fh.write("x")
        withcopy = Image.base("debian-12").add_local_file(path, "/opt/data.txt")
        out["copy"] = catch(
            lambda: daytona.create(
                CreateSandboxFromImageParams(image=withcopy, labels=TEST_LABEL), timeout=60
            )
        )
    out["not_found"] = catch(
        lambda: daytona.create(
            CreateSandboxFromImageParams(image=Image.base("no-such-image:1"), labels=TEST_LABEL), timeout=60
        )
    )

    # a failed build leaves its sandbox `build_failed` (as in Daytona: the user deletes it)
    failed = [
        s
        for s in daytona.list(ListSandboxesQuery(labels=TEST_LABEL))
        if str(getattr(s.state, "value", s.state)) == "build_failed"
    ]
    out["build_failed_listed"] = len(failed)
    for s in failed:
        daytona.delete(s)

emit(out)
