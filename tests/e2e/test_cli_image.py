"""`sandburg image ...` as a subprocess against the real server: builds with real layers and cache hits, ls,
inspect, logs, pull from the loopback test registry, import, rm, and the failures' exit codes (docs/cli.md).

Builds use debian-12 without --apt/--pip (package installs need a mirror, set up by the image tests).
"""

from __future__ import annotations

import contextlib
import json
import uuid

import pytest

from sandburg import ImageNotFoundError, Sandburg
from tests._support.registry import write_docker_archive


@pytest.fixture
def names(sb: Sandburg):
    """Unique image names; every image of these names is deleted at the end."""
    made: list[str] = []

    def new(prefix: str) -> str:
        made.append(f"cli-{prefix}-{uuid.uuid4().hex[:8]}")
        return made[-1]

    try:
        yield new
    finally:
        for name in made:
            with contextlib.suppress(ImageNotFoundError):
                sb.images.delete(name)


def row(ls_out: str, name: str) -> list[str]:
    return next(line.split() for line in ls_out.splitlines() if line.split()[0] == name)


def test_build_ls_cache_inspect_logs_rm(cli, sb, make_box, names, tmp_path):
    name = names("built")
    marker = uuid.uuid4().hex
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "hello.txt").write_text(marker)
    argv = ["image", "build", name, "--run", "echo built > /etc/cli-built", "--env", f"MARKER={marker}",
            "--copy", f"{tmp_path / 'app'}:/srv/app", "--workdir", "/srv/app"]  # fmt: skip
    r = cli(*argv)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.endswith(f"built {name}\n") and "#1 [files] files → /srv/app" in r.stdout, r.stdout
    assert "#2 DONE" in r.stdout and "CACHED" not in r.stdout, r.stdout

    r = cli("image", "ls")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split() == ["NAME", "KIND", "STATE", "SIZE", "SOURCE"]
    assert row(r.stdout, name)[:3] == [name, "image", "active"] and row(r.stdout, name)[-1] == "debian-12"
    assert row(r.stdout, "debian-12") == ["debian-12", "image", "active", "-", "built-in"]

    # the same steps (and the same files, tarred reproducibly) again: every layer is a cache hit
    r = cli(*argv)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.count("... CACHED") == 2 and " DONE " not in r.stdout, r.stdout

    r = cli("image", "inspect", name)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["name"], info["state"], info["kind"], info["builtin"]) == (name, "active", "image", False)
    assert info["config"]["env"]["MARKER"] == marker and info["config"]["workdir"] == "/srv/app"

    r = cli("image", "logs", name)
    assert r.returncode == 0 and "#2 [run] run echo built > /etc/cli-built ... CACHED" in r.stdout, r.stdout

    box = make_box(image=name, isolation="container")
    res = box.process.exec("cat /etc/cli-built /srv/app/hello.txt; echo; echo $MARKER")
    assert res.stdout.split() == ["built", marker, marker], res

    r = cli("image", "rm", name)
    assert (r.returncode, r.stdout) == (0, f"{name}\n"), r.stderr
    with pytest.raises(ImageNotFoundError):
        sb.images.get(name)


def test_pull_import_and_rm(cli, sb, oci, names, tmp_path):
    pulled, imported = names("pulled"), names("imported")
    r = cli("image", "pull", oci.ref, "--insecure", "--name", pulled)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith(f"pull of {oci.ref}") and r.stdout.endswith(f"pulled {pulled}\n"), r.stdout

    archive = tmp_path / "busybox-docker.tar"
    write_docker_archive(oci.image, str(archive))
    r = cli("image", "import", str(archive), "--name", imported)
    assert r.returncode == 0 and r.stdout.endswith(f"imported {imported}\n"), (r.stdout, r.stderr)

    r = cli("image", "ls", "--kind", "image")
    assert row(r.stdout, pulled)[2] == "active" and row(r.stdout, pulled)[-1] == oci.ref, r.stdout
    assert row(r.stdout, imported)[-1] == "import", r.stdout
    assert sb.images.get(pulled).config["env"].get("GREETING") == "hi=there"

    r = cli("image", "rm", pulled, imported)
    assert (r.returncode, r.stdout) == (0, f"{pulled}\n{imported}\n"), r.stderr
    assert [n for n in (pulled, imported) if n in {i.name for i in sb.images.list()}] == []


def test_failures_exit_1_with_the_message(cli, names):
    name = names("failing")
    r = cli("image", "build", name, "--run", "exit 4")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "exit 4" in r.stderr and "(IMAGE_BUILD_FAILED)" in r.stderr and "Traceback" not in r.stderr, (
        r.stderr
    )
    assert f"built {name}" not in r.stdout and "$ exit 4" in r.stdout, r.stdout

    r = cli("image", "ls")
    assert row(r.stdout, name)[2:4] == ["error", "(IMAGE_BUILD_FAILED)"], r.stdout

    unknown = names("unknown")
    r = cli("image", "rm", unknown)
    assert r.returncode == 1 and r.stderr.startswith("error: ") and "(IMAGE_NOT_FOUND)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr

    r = cli("image", "build")
    assert r.returncode == 2 and "give NAME" in r.stderr, r.stderr
