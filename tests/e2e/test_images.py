"""Image builds against the real server: cached layers, a one-step change, build context, failures (docs/images.md).

Builds run in real build sandboxes (container tier) on debian-12; layers are real btrfs snapshots.
"""

from __future__ import annotations

import io
import re
import tarfile
import uuid

import pytest

from sandburg import (
    ImageBuildFailedError,
    ImageNotReadyError,
    ImagePullFailedError,
    Sandburg,
    UnsafeImageError,
)
from tests._support.registry import build_malicious_image, write_docker_archive, write_oci_tarball


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def steps_log(log: str) -> dict[int, str]:
    """`#N [...] ... CACHED` → {N: "cached"}, `#N DONE` → {N: "built"}."""
    out: dict[int, str] = {}
    for m in re.finditer(r"^#(\d+) (?:\[\w+\] .* \.\.\. (CACHED|config)|(DONE))", log, re.M):
        n = int(m.group(1))
        out[n] = "cached" if m.group(2) == "CACHED" else "config" if m.group(2) else "built"
    return out


def build_sandboxes(sb: Sandburg) -> list[str]:
    return [b.name for b in sb.list() if "sandburg.io/build" in b.labels]


def test_build_cache_hit_and_one_step_change(sb, make_box):
    name = uniq("img")
    marker = uuid.uuid4().hex
    steps = [
        {"kind": "run", "args": [f"echo {marker} > /etc/first"]},
        {"kind": "env", "args": ["GREETING=hello", "LEVEL=debug"]},
        {"kind": "run", "args": ['echo "$GREETING" > /etc/second', "mkdir -p /srv/app && touch /srv/app/x"]},
        {"kind": "workdir", "args": ["/srv/app"]},
    ]
    logs: list[str] = []
    img = sb.images.build(name, steps, base="debian-12", on_log=logs.append)
    try:
        assert img.state == "active" and img.kind == "image"
        assert steps_log("".join(logs)) == {1: "built", 2: "config", 3: "built", 4: "config"}, "".join(logs)
        assert img.config["env"] == {"GREETING": "hello", "LEVEL": "debug"}
        assert img.config["workdir"] == "/srv/app"

        box = make_box(image=name, isolation="container")
        r = box.process.exec("cat /etc/first /etc/second; echo $LEVEL; ls /srv/app")
        assert r.exit_code == 0, r
        assert r.stdout.split() == [marker, "hello", "debug", "x"]

        # the same steps again: every layer is a cache hit, the image is active on return
        again = sb.images.build(name, steps, base="debian-12", wait=False)
        assert again.state == "active"
        assert steps_log("".join(sb.images.logs(name))) == {
            1: "cached",
            2: "config",
            3: "cached",
            4: "config",
        }

        # change only the third step: the first layer is reused, the third rebuilt
        changed = [*steps[:2], {"kind": "run", "args": ['echo "$GREETING again" > /etc/second']}, steps[3]]
        logs.clear()
        sb.images.build(name, changed, base="debian-12", on_log=logs.append)
        assert steps_log("".join(logs)) == {1: "cached", 2: "config", 3: "built", 4: "config"}, "".join(logs)
        box2 = make_box(image=name, isolation="gvisor")
        r = box2.process.exec("cat /etc/first /etc/second")
        assert r.stdout.split() == [marker, "hello", "again"], r
        # the sandbox made from the first build is untouched by the rebuild
        assert box.process.exec("cat /etc/second").stdout.strip() == "hello"
        assert build_sandboxes(sb) == []
    finally:
        sb.images.delete(name)


def test_files_step_from_uploaded_context(sb, make_box):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in (("app/main.py", b"print('hi from app')\n"), ("app/data/n.txt", b"42\n")):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    digest = sb.images.upload_context(buf.getvalue())
    assert digest.startswith("sha256:")
    name = uniq("ctx")
    img = sb.images.build(
        name,
        [
            {"kind": "files", "args": ["/workspace/", digest]},
            {"kind": "run", "args": ["python3 /workspace/app/main.py > /out"]},
        ],
    )
    try:
        assert img.state == "active"
        box = make_box(image=name, isolation="container")
        r = box.process.exec("cat /out /workspace/app/data/n.txt; stat -c %u /workspace/app/main.py")
        assert r.stdout.split() == ["hi", "from", "app", "42", "0"], r
    finally:
        sb.images.delete(name)


def test_failing_step_keeps_log_and_leaves_nothing(sb):
    name = uniq("bad")
    with pytest.raises(ImageBuildFailedError) as err:
        sb.images.build(name, [{"kind": "run", "args": ["echo building; echo oops >&2; exit 3"]}])
    assert "exit 3" in str(err.value) and "[1/1]" in str(err.value), err.value
    log = "".join(sb.images.logs(name))
    assert "building" in log and "oops" in log and "ERROR" in log, log
    info = sb.images.get(name)
    assert info.state == "error" and info.error_code == "IMAGE_BUILD_FAILED"
    with pytest.raises(ImageNotReadyError):
        sb.create(image=name, isolation="container")
    assert build_sandboxes(sb) == []
    sb.images.delete(name)


def test_unknown_base_and_bad_steps(sb, http):
    r = http.post("images", json={"name": uniq("x"), "base": "no-such-image", "steps": []})
    assert r.status_code == 404 and r.json()["code"] == "IMAGE_NOT_FOUND", r.text
    r = http.post(
        "images", json={"name": uniq("x"), "steps": [{"kind": "pip", "args": ["--index-url=http://evil"]}]}
    )
    assert r.status_code == 400 and r.json()["code"] == "VALIDATION_ERROR", r.text
    r = http.post(
        "images", json={"name": uniq("x"), "steps": [{"kind": "files", "args": ["/x", "sha256:" + "0" * 64]}]}
    )
    assert r.status_code == 400 and "not uploaded" in r.json()["message"], r.text
    r = http.post("images", json={"name": "debian-12x", "steps": [{"kind": "teleport", "args": ["x"]}]})
    assert r.status_code == 400, r.text
    names = [i.name for i in sb.images.list()]
    assert "debian-12" in names and "busybox" in names


def test_pull_from_registry_and_create(sb, make_box, oci):
    name = uniq("pulled")
    logs: list[str] = []
    img = sb.images.pull(oci.ref, name=name, insecure=True, on_log=logs.append)
    try:
        assert img.state == "active" and img.config["env"].get("GREETING") == "hi=there", img
        for isolation in ("container", "gvisor"):
            box = make_box(image=name, isolation=isolation)
            r = box.process.exec("cat /etc/motd; ls /opt/data; ls /etc; echo $GREETING")
            assert r.exit_code == 0, r
            lines = r.stdout.split()
            # layer 2 replaced motd and whited out etc/gone; layer 3 made opt/data opaque
            assert lines[:3] == ["hello", "again", "new1"], (isolation, r.stdout)
            assert "gone" not in lines and "hi=there" in lines, (isolation, r.stdout)
        # the same content pulled under a second name shares the layer: no second copy
        again = sb.images.pull(oci.ref, name=name + "-2", insecure=True)
        assert again.state == "active"
        sb.images.delete(name + "-2")
    finally:
        sb.images.delete(name)


def test_pull_missing_image_is_typed(sb):
    name = uniq("missing")
    with pytest.raises(ImagePullFailedError) as err:
        sb.images.pull("127.0.0.1:1/nothing/here:1", name=name, insecure=True)
    assert "127.0.0.1:1/nothing/here:1" in str(err.value)
    assert sb.images.get(name).error_code == "IMAGE_PULL_FAILED"
    sb.images.delete(name)


def test_import_archives_and_refuse_unsafe(sb, make_box, oci, tmp_path):
    archive = tmp_path / "busy-docker.tar"
    write_docker_archive(oci.image, str(archive))
    oci_tar = tmp_path / "busy-oci.tar"
    write_oci_tarball(oci.image.layout, str(oci_tar))
    names = []
    try:
        for path in (archive, oci_tar):
            name = uniq("imported")
            names.append(name)
            img = sb.images.import_archive(path, name=name)
            assert img.state == "active", img
            box = make_box(image=name, isolation="container")
            assert box.process.exec("cat /etc/motd").stdout == "hello again\n"
        # a layer writing through a symlink that points at a host dir: refused, the host dir untouched
        target = tmp_path / "host-target"
        target.mkdir()
        evil = build_malicious_image(str(tmp_path / "evil-layout"), "symlink-parent", str(target))
        evil_tar = tmp_path / "evil.tar"
        write_oci_tarball(evil.layout, str(evil_tar))
        name = uniq("evil")
        names.append(name)
        with pytest.raises(UnsafeImageError):
            sb.images.import_archive(evil_tar, name=name)
        assert list(target.iterdir()) == []
        assert "UNSAFE_IMAGE" == sb.images.get(name).error_code
    finally:
        for n in names:
            sb.images.delete(n)
