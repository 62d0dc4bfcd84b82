"""Volumes through Daytona's SDK: `volume.create/list/get/delete`, `get(create=True)`, and `VolumeMount` (with a
subpath) at create; two sandboxes share the volume, it outlives them, delete is refused while one mounts it."""

from __future__ import annotations

import uuid

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import CreateSandboxFromSnapshotParams, Daytona, VolumeMount

tag = uuid.uuid4().hex[:8]
out: dict = {}
daytona = Daytona()
vol = daytona.volume.create(f"dt-vol-{tag}")
out["created"] = {"name": vol.name, "state": str(getattr(vol.state, "value", vol.state)), "id": vol.id}
out["listed"] = vol.id in [v.id for v in daytona.volume.list()]
out["get_by_name"] = daytona.volume.get(vol.name).id == vol.id
out["get_or_create"] = daytona.volume.get(f"dt-vol2-{tag}", create=True).name
daytona.volume.delete(daytona.volume.get(f"dt-vol2-{tag}"))
try:
    with cleanup(daytona) as made:
        params = {"snapshot": "busybox", "labels": TEST_LABEL}
        a = daytona.create(CreateSandboxFromSnapshotParams(
            **params, volumes=[VolumeMount(volume_id=vol.id, mount_path="/home/data")]))  # fmt: skip
        made.append(a)
        a.process.exec("mkdir -p /home/data/p && echo shared > /home/data/p/f", timeout=30)
        b = daytona.create(CreateSandboxFromSnapshotParams(
            **params, volumes=[VolumeMount(volume_id=vol.name, mount_path="/sub", subpath="p")]))  # fmt: skip
        made.append(b)
        out["echo"] = [v.to_dict() for v in (b.volumes or [])]
        out["read_subpath"] = b.process.exec("cat /sub/f", timeout=30).result.strip()
        out["delete_in_use"] = catch(lambda: daytona.volume.delete(vol))
        daytona.delete(a)
        c = daytona.create(CreateSandboxFromSnapshotParams(
            **params, volumes=[VolumeMount(volume_id=vol.id, mount_path="/again")]))  # fmt: skip
        made.append(c)
        out["after_delete"] = c.process.exec("cat /again/p/f", timeout=30).result.strip()
finally:
    daytona.volume.delete(vol)
out["gone"] = catch(lambda: daytona.volume.get(vol.name))
emit(out)
