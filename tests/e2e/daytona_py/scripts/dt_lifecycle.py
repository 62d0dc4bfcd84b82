"""Sandboxes through Daytona's SDK: create (default image, snapshot, image + resources, every option the SDK sends),
get by id and name, list with filters and pages, labels, settings, stop/start, delete."""

from __future__ import annotations

import uuid

from _common import TEST_LABEL, catch, cleanup, emit
from daytona import (
    CreateSandboxFromImageParams,
    CreateSandboxFromSnapshotParams,
    Daytona,
    DaytonaNotFoundError,
    ListSandboxesQuery,
    Resources,
    SandboxState,
    VolumeMount,
)

tag = uuid.uuid4().hex[:8]
out: dict = {}
daytona = Daytona()
vol = daytona.volume.get(f"dt-vol-{tag}", create=True)  # mounted by name below: the server answers its id
out["volume_id"] = vol.id
with cleanup(daytona) as made:
    # all defaults: the server's default image, resources and language
    plain = daytona.create(CreateSandboxFromSnapshotParams(labels={**TEST_LABEL, "group": tag}))
    made.append(plain)
    out["default"] = {
        "state": str(plain.state.value), "snapshot": plain.snapshot, "cpu": plain.cpu, "memory": plain.memory,
        "disk": plain.disk, "labels": plain.labels, "user": plain.user, "target": plain.target,
        "toolbox_proxy_url": plain.toolbox_proxy_url, "auto_stop": plain.auto_stop_interval,
    }  # fmt: skip

    # a snapshot by name, with every option the SDK sends (stored and echoed)
    name = f"dt-{tag}"
    full = daytona.create(
        CreateSandboxFromSnapshotParams(
            name=name, snapshot="busybox", env_vars={"GREETING": "hello", "EMPTY": ""},
            labels={**TEST_LABEL, "group": tag, "role": "full"}, public=True, auto_stop_interval=30,
            auto_archive_interval=60, auto_delete_interval=120, network_block_all=False,
            network_allow_list="10.1.0.0/16,192.168.0.0/24", volumes=[VolumeMount(volume_id=vol.name, mount_path="/data")],
            language="javascript",
        ),
        timeout=60,
    )  # fmt: skip
    made.append(full)
    out["full"] = {
        "name": full.name, "snapshot": full.snapshot, "public": full.public, "auto_stop": full.auto_stop_interval,
        "auto_archive": full.auto_archive_interval, "auto_delete": full.auto_delete_interval,
        "network_allow_list": full.network_allow_list, "env": full.env, "labels": full.labels,
        "volumes": [v.to_dict() for v in (full.volumes or [])],
        "exec_env": full.process.exec('printf "%s|%s" "$GREETING" "${EMPTY-unset}"').result,
    }  # fmt: skip

    # an image by name with resources (the SDK sends them only this way, as a one-line Dockerfile)
    sized = daytona.create(
        CreateSandboxFromImageParams(
            image="busybox", resources=Resources(cpu=1, memory=1, disk=1), labels={**TEST_LABEL, "group": tag}
        )
    )
    made.append(sized)
    out["sized"] = {"snapshot": sized.snapshot, "cpu": sized.cpu, "memory": sized.memory, "disk": sized.disk}
    built = daytona.create(
        CreateSandboxFromImageParams(
            image=__import__("daytona").Image.base("busybox").run_commands("echo hi > /hi"), labels=TEST_LABEL
        )
    )
    made.append(built)
    out["build_image"] = {
        "state": str(built.state.value),
        "hi": built.process.exec("cat /hi", timeout=30).result.strip(),
    }

    # get by id and by name
    by_id, by_name = daytona.get(full.id), daytona.get(name)
    out["get"] = {"by_id": by_id.id == full.id, "by_name": by_name.id == full.id, "language": by_id.labels}
    out["get_missing"] = catch(lambda: daytona.get("no-such-sandbox-" + tag))

    # list: labels filter, states, name prefix, paging with limit=1 (the SDK follows nextCursor)
    group = {"group": tag}
    out["list_group"] = sorted(s.id for s in daytona.list(ListSandboxesQuery(labels=group)))
    out["list_paged"] = sorted(s.id for s in daytona.list(ListSandboxesQuery(labels=group, limit=1)))
    out["list_role"] = [s.id for s in daytona.list(ListSandboxesQuery(labels={**group, "role": "full"}))]
    out["list_name"] = [s.id for s in daytona.list(ListSandboxesQuery(name=name.upper()[:6], labels=group))]
    out["list_snapshot"] = sorted(
        s.id for s in daytona.list(ListSandboxesQuery(snapshots=["busybox"], labels=group))
    )
    out["list_min_cpu"] = sorted(s.id for s in daytona.list(ListSandboxesQuery(min_cpu=2, labels=group)))
    out["list_sorted"] = [
        s.name for s in daytona.list(ListSandboxesQuery(labels=group, sort="name", order="desc"))
    ]
    out["ids"] = {"plain": plain.id, "full": full.id, "sized": sized.id}

    # labels and settings
    out["set_labels"] = full.set_labels({**TEST_LABEL, "group": tag, "role": "relabelled"})
    full.set_autostop_interval(5)
    full.set_auto_archive_interval(7)
    full.set_auto_delete_interval(-1)
    full.set_auto_pause_interval(0)
    full.set_ttl(90)
    full.set_public(False)
    full.update_network_settings(network_block_all=True)
    full.refresh_data()
    out["settings"] = {
        "auto_stop": full.auto_stop_interval, "auto_archive": full.auto_archive_interval,
        "auto_delete": full.auto_delete_interval, "public": full.public, "block_all": full.network_block_all,
        "allow_list": full.network_allow_list, "labels": full.labels,
    }  # fmt: skip

    # stop and start
    full.stop(timeout=60)
    out["stopped"] = str(full.state.value)
    out["stopped_list"] = [
        s.id for s in daytona.list(ListSandboxesQuery(labels=group, states=[SandboxState.STOPPED]))
    ]
    full.start(timeout=60)
    out["restarted"] = str(full.state.value)
    out["after_restart"] = full.process.exec("echo back").result

    # delete: the SDK's default (no wait) and wait=True; afterwards the sandbox is gone
    daytona.delete(sized)
    out["deleted_state"] = str(sized.state.value)
    full.delete(wait=True)
    out["deleted_wait_state"] = str(full.state.value)
    out["get_deleted"] = catch(lambda: daytona.get(full.id))
    out["not_found_class"] = DaytonaNotFoundError.__name__
daytona.volume.delete(vol)
emit(out)
