"""`sandburg up` / `sandburg down` on a sandburg.yaml against the real server (examples/minimal, the full one)."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from sandburg import SandboxNotFoundError, Sandburg

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def copy_example(tmp_path: Path, example: str) -> tuple[Path, str]:
    name = f"up-{uuid.uuid4().hex[:10]}"
    shutil.copytree(EXAMPLES / example, tmp_path / example)
    spec = tmp_path / example / "sandburg.yaml"
    text = spec.read_text()
    spec.write_text(text.replace(f"name: {example}\n", f"name: {name}\n", 1))
    return spec, name


def absent(sb: Sandburg, name: str) -> bool:
    try:
        return sb.get(name).state == "destroyed"
    except SandboxNotFoundError:
        return True


def test_up_down(cli, sb, tmp_path):
    spec, name = copy_example(tmp_path, "minimal")
    try:
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0, (r.stdout, r.stderr)
        for line in ("==> build up/", "==> create", "==> files", "==> [1/1] $ python3", f"sandburg shell {name}",
                     "port 8000: "):  # fmt: skip
            assert line in r.stdout, r.stdout
        assert "curl -H 'x-daytona-preview-token: " in r.stdout
        box = sb.get(name)
        assert box.state == "started" and box.labels["sandburg.io/up"] == "1"
        assert box.fs.download_file("/workspace/setup.out") == b"hello\n"
        assert box.process.exec("echo $GREETING").stdout == "hello\n"
        assert box.process.exec("test -f /workspace/app/hello.py").exit_code == 0

        start = time.monotonic()
        r = cli("up", "-f", str(spec))
        elapsed = time.monotonic() - start
        assert r.returncode == 0 and "up to date" in r.stdout and "==> build" not in r.stdout, r.stdout
        assert elapsed < 1.0, elapsed
        assert sb.get(name).id == box.id

        spec.write_text(spec.read_text().replace("GREETING: hello", "GREETING: bonjour"))
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0 and "spec changed: replacing" in r.stdout, (r.stdout, r.stderr)
        # only the env changed: every layer below it is a cache hit
        assert r.stdout.count("... CACHED") == 2 and " DONE " not in r.stdout, r.stdout
        again = sb.get(name)
        assert again.id != box.id and again.process.exec("echo $GREETING").stdout == "bonjour\n"

        (spec.parent / "app" / "hello.py").write_text("print('changed')\n")
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0 and "spec changed" in r.stdout
        assert sb.get(name).fs.download_file("/workspace/setup.out") == b"changed\n"
    finally:
        r = cli("down", "-f", str(spec))
    assert r.returncode == 0 and "removed" in r.stdout, (r.stdout, r.stderr)
    assert absent(sb, name)
    r = cli("down", "-f", str(spec))
    assert r.returncode == 0 and "nothing to remove" in r.stdout


def test_failing_setup_leaves_nothing(cli, sb, tmp_path):
    spec, name = copy_example(tmp_path, "minimal")
    spec.write_text(
        spec.read_text().replace('setup: ["', 'setup: ["echo step-one", "echo boom >&2; exit 7", "')
    )
    try:
        r = cli("up", "-f", str(spec))
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert "==> [2/3] $ echo boom" in r.stdout and "step-one" in r.stdout and "boom" in r.stdout
        assert "[2/3] 'echo boom >&2; exit 7': exit 7" in r.stderr and "Traceback" not in r.stderr
        assert absent(sb, name)
        assert not [b for b in sb.list() if "sandburg.io/build" in b.labels]
    finally:
        cli("down", "-f", str(spec))


def test_volumes_are_made_once_and_outlive_the_sandboxes(cli, sb, tmp_path):
    spec, name = copy_example(tmp_path, "minimal")
    vol = f"upvol-{uuid.uuid4().hex[:8]}"
    spec.write_text(
        spec.read_text()
        + f"volumes: [{{name: {vol}, mount: /workspace/data, size: 256MiB}}, '{vol}:/ro:ro']\n"
    )
    try:
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert f"==> create volume {vol} (256 MiB)" in r.stdout
        assert sb.volumes.get(vol).size_mib == 256
        box = sb.get(name)
        assert box.process.exec("echo kept > /workspace/data/f && cat /ro/f").stdout == "kept\n"
        assert box.process.exec("touch /ro/g").exit_code != 0  # the second mount is read-only
        # a changed spec replaces the sandbox; the volume (and its data) is mounted again, not made again
        spec.write_text(spec.read_text().replace("GREETING: hello", "GREETING: hola"))
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0 and "spec changed: replacing" in r.stdout, (r.stdout, r.stderr)
        assert "create volume" not in r.stdout
        again = sb.get(name)
        assert again.id != box.id and again.fs.download_file("/workspace/data/f") == b"kept\n"
        r = cli("down", "-f", str(spec))
        assert r.returncode == 0 and absent(sb, name)
        assert sb.volumes.get(vol).sandboxes == ()  # down leaves the volume, unmounted
    finally:
        cli("down", "-f", str(spec))
        try:
            sb.volumes.delete(vol)
        except Exception:  # noqa: BLE001 - cleanup; the assertions above report the failure
            pass


def test_bad_volumes_are_refused_before_anything_is_made(cli, sb, tmp_path):
    spec, name = copy_example(tmp_path, "minimal")
    spec.write_text(spec.read_text() + "volumes: [{name: x, mount: relative/path}]\n")
    r = cli("up", "-f", str(spec))
    assert r.returncode == 2 and "volumes[0]" in r.stderr and "absolute" in r.stderr, r.stderr
    assert absent(sb, name)


def test_bad_spec_exits_2(cli, tmp_path):
    spec = tmp_path / "sandburg.yaml"
    spec.write_text("name: x\nports: [0]\n")
    r = cli("up", "-f", str(spec))
    assert r.returncode == 2 and f"{spec}:2: ports:" in r.stderr and "Traceback" not in r.stderr


def test_up_from_a_registry_reference(cli, sb, tmp_path, oci):
    """`image:` naming a registry reference: pulled once (then reused), built on, and run. The image's USER
    (1000:1000) applies to the setup step, as in Docker, though the image has no su or runuser."""
    name = f"up-{uuid.uuid4().hex[:10]}"
    spec = tmp_path / "sandburg.yaml"
    spec.write_text(
        f"name: {name}\nimage: {oci.ref}\nisolation: container\nsetup: ['echo from-setup > /home/user/out']\n"
        "env: {MODE: oci}\n"
    )
    try:
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0, (r.stdout, r.stderr)
        assert f"==> pull {oci.ref}" in r.stdout, r.stdout
        box = sb.get(name)
        r = box.process.exec("read x < /home/user/out; echo $x; ls -ln /home/user/out; echo $MODE $GREETING")
        lines = r.stdout.splitlines()
        assert lines[0] == "from-setup" and lines[1].split()[2:4] == ["1000", "1000"], r.stdout
        assert lines[2] == "oci hi=there", r.stdout
        spec.write_text(spec.read_text().replace("MODE: oci", "MODE: oci2"))
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0 and "==> pull" not in r.stdout, r.stdout  # the pulled base is reused
    finally:
        cli("down", "-f", str(spec))
        for n in (f"up/{name}", oci.ref.split("/", 1)[1]):
            try:
                sb.images.delete(n)
            except Exception:  # noqa: BLE001 - already gone is fine
                pass


def test_up_injects_secrets_and_keeps_them_out_of_the_build(cli, sb, tmp_path):
    secret = f"UP_TOKEN_{uuid.uuid4().hex[:6].upper()}"
    value = "up-" + uuid.uuid4().hex
    sb.secrets.set(secret, value)
    spec, name = copy_example(tmp_path, "minimal")
    spec.write_text(spec.read_text() + f"secrets:\n  API_TOKEN: {secret}\n")
    try:
        r = cli("up", "-f", str(spec))
        assert r.returncode == 0, (r.stdout, r.stderr)
        box = sb.get(name)
        got = box.process.exec('test "$API_TOKEN" = "$EXPECTED" && echo same', env={"EXPECTED": value})
        assert got.stdout == "same\n"  # injected under the env name the spec chose
        assert value not in r.stdout + r.stderr and value not in "".join(sb.images.logs(f"up/{name}"))
        # a rotated value reaches the running sandbox without an `up`
        sb.secrets.set(secret, value + "-2")
        got = box.process.exec('test "$API_TOKEN" = "$EXPECTED" && echo same', env={"EXPECTED": value + "-2"})
        assert got.stdout == "same\n"
        assert cli("down", "-f", str(spec)).returncode == 0
    finally:
        if not absent(sb, name):
            sb.get(name).delete()
        try:
            sb.images.delete(f"up/{name}")
        except Exception:
            pass
        sb.secrets.delete(secret)
