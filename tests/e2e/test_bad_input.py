"""Bad input gets a typed error with a stable code and loses nothing; never a 500 with a traceback."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid

import httpx
import pytest

from sandburg import (
    AuthenticationError,
    BadRequestError,
    ExecTimeoutError,
    InvalidPathError,
    InvalidResourcesError,
    NotFoundError,
    SandboxNameConflictError,
    SandboxNotFoundError,
    Sandburg,
)
from tests.e2e.conftest import TIERS


def assert_error(r: httpx.Response, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert body["statusCode"] == status and body["message"] and body["error"]
    assert "Traceback" not in r.text
    return body


def count_sandboxes(http: httpx.Client) -> int:
    return len(http.get("sandbox", params={"limit": 1000}).json()["items"])


@pytest.mark.parametrize(
    "body, status, code",
    [
        ({"isolation": "vm"}, 400, "VALIDATION_ERROR"),
        ({"cpu": -1}, 422, "INVALID_RESOURCES"),
        ({"cpu": 10_000}, 422, "INVALID_RESOURCES"),
        ({"memory": 100_000}, 422, "INVALID_RESOURCES"),
        ({"memoryMiB": 1}, 422, "INVALID_RESOURCES"),
        ({"disk": 0}, 422, "INVALID_RESOURCES"),
        ({"cpu": "2"}, 400, "VALIDATION_ERROR"),
        ({"cpu": 1.5}, 400, "VALIDATION_ERROR"),
        ({"name": "../etc"}, 400, "VALIDATION_ERROR"),
        ({"image": "no-such-image"}, 404, "IMAGE_NOT_FOUND"),
        ({"unknownField": 1}, 400, "VALIDATION_ERROR"),
        ({"env": {"A=B": "x"}}, 400, "VALIDATION_ERROR"),
        # Daytona's SDK sends `FROM <image>` for an image by name: only a real build is not there yet
        ({"buildInfo": {"dockerfileContent": 'FROM busybox\nCOPY ["a", "/a"]'}}, 501, "NOT_IMPLEMENTED"),
        ({"buildInfo": {"dockerfileContent": "FROM busybox\nVOLUME /data"}}, 400, "VALIDATION_ERROR"),
        ({"buildInfo": {"dockerfileContent": "FROM x"}}, 404, "IMAGE_NOT_FOUND"),
        ({"secrets": [{"TOKEN": "NO_SUCH_SECRET"}]}, 404, "SECRET_NOT_FOUND"),
        ({"secrets": ["bad-name"]}, 422, "INVALID_SECRET"),
    ],
)
def test_bad_create_is_refused_and_makes_nothing(http, body, status, code):
    before = count_sandboxes(http)
    assert_error(http.post("sandbox", json={"image": "busybox", **body}), status, code)
    assert count_sandboxes(http) == before


def test_malformed_json_and_auth(http, server):
    assert_error(
        http.post("sandbox", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "VALIDATION_ERROR",
    )
    r = httpx.get(f"{server.api_url}/sandbox")
    assert_error(r, 401, "UNAUTHORIZED")
    r = httpx.get(f"{server.api_url}/sandbox", headers={"Authorization": "Bearer sb_wrong"})
    assert_error(r, 401, "UNAUTHORIZED")
    assert_error(http.get("no/such/route"), 404, "NOT_FOUND")
    with Sandburg(api_url=server.api_url, api_key="sb_wrong") as wrong, pytest.raises(AuthenticationError):
        wrong.list()


def test_sdk_maps_codes_to_exceptions(sb, make_box):
    with pytest.raises(InvalidResourcesError):
        sb.create(image="busybox", cpu=10_000)
    with pytest.raises(BadRequestError):
        sb.create(image="busybox", isolation="vm")
    with pytest.raises(SandboxNotFoundError):
        sb.get(str(uuid.uuid4()))
    box = make_box(isolation="container", name=f"dup-{uuid.uuid4().hex[:6]}")
    with pytest.raises(SandboxNameConflictError):
        sb.create(image="busybox", isolation="container", name=box.name)


@pytest.mark.parametrize("tier", TIERS)
def test_paths_stay_inside_the_sandbox(make_box, tier):
    box = make_box(isolation=tier)
    marker = f"/tmp/sandburg-host-{uuid.uuid4().hex}"
    with open(marker, "w") as fh:
        fh.write("host secret")
    try:
        # climbing above / is refused outright
        with pytest.raises(InvalidPathError):
            box.fs.download_file("../../../../etc/passwd")
        # a symlink pointing "out" resolves inside the sandbox: the host's file is not there
        box.process.exec(f"ln -s {marker} /workspace/escape; ln -s /etc/passwd /workspace/pw")
        with pytest.raises(NotFoundError):
            box.fs.download_file("/workspace/escape")
        assert box.fs.download_file("/workspace/pw").startswith(
            b"root:x:0:0:root:/root:/bin/sh"
        )  # the sandbox's own
        # writing through a symlink that points at a host path writes the sandbox's file, never the host's
        box.fs.upload_file(b"overwritten?", "/workspace/escape")
        with open(marker) as fh:
            assert fh.read() == "host secret"
    finally:
        os.unlink(marker)


@pytest.mark.parametrize("tier", TIERS)
def test_command_that_never_ends_times_out_and_is_killed(make_box, tier):
    box = make_box(isolation=tier)
    t0 = time.monotonic()
    with pytest.raises(ExecTimeoutError) as info:
        box.process.exec("echo started; sleep 600 & sleep 600", timeout=1)
    assert time.monotonic() - t0 < 10
    assert info.value.code == "PROCESS_EXECUTION_TIMEOUT"
    assert "started" in (info.value.stdout or "")
    # the whole process group is gone, background child included
    assert "sleep 600" not in box.process.exec("ps -o args").stdout


def test_deleted_sandbox_and_racing_deletes(sb, http):
    box = sb.create(image="busybox", isolation="container")
    results: list[int] = []

    def delete() -> None:
        results.append(http.delete(f"sandbox/{box.id}").status_code)

    threads = [threading.Thread(target=delete) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 404, 404]
    assert_error(http.get(f"sandbox/{box.id}"), 404, "SANDBOX_NOT_FOUND")
    assert_error(
        http.post(f"toolbox/{box.id}/process/execute", json={"command": "true"}), 404, "SANDBOX_NOT_FOUND"
    )
    assert_error(http.post(f"sandbox/{box.id}/start"), 404, "SANDBOX_NOT_FOUND")


def test_toolbox_on_a_stopped_sandbox_is_a_conflict(make_box, http):
    box = make_box(isolation="container")
    box.stop()
    assert_error(
        http.post(f"toolbox/{box.id}/process/execute", json={"command": "true"}), 409, "SANDBOX_NOT_RUNNING"
    )


@pytest.mark.parametrize("tier", TIERS)
def test_runtime_killed_from_outside_shows_error_state(make_box, server, tier):
    box = make_box(isolation=tier)
    # the runtime's host process: runc's container init (tini) or gVisor's sandbox process
    from sandburg.node.oci import runc, runsc

    root = os.path.join(server.data_dir, "runc" if tier == "container" else "runsc")
    state = (runc(root) if tier == "container" else runsc(root)).state(box.id)
    assert state and state["status"] == "running"
    os.kill(int(state["pid"]), signal.SIGKILL)
    deadline = time.monotonic() + 10
    box.refresh()
    while box.state == "started":
        assert time.monotonic() < deadline, "the server did not notice"
        time.sleep(0.05)
        box.refresh()
    assert box.state == "error"
    assert box.error_reason == "exited"
    # a sandbox in error can be started again, with its files
    box.start()
    assert box.process.exec("echo back").stdout == "back\n"
