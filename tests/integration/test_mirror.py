"""The package mirror (scripts/fill-mirror.py) as the fake internet serves it at mirror.test.

From the host, straight to mirror.test's address: every index names files that download with the size and hash
it promises, and no path leaves the mirror. Then the clients themselves: pip, npm and apt fetch over HTTP by name
from inside the fake internet, and the apt closure installs into a chroot of the sandbox's Debian image.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator

import dns.resolver
import pytest

from tests._support import fakenet, mirror
from tests._support.host import require_root

pytestmark = pytest.mark.root

CACHE_DIR = os.environ.get("SANDBURG_CACHE_DIR") or "/var/cache/sandburg"


@pytest.fixture(scope="module")
def net() -> Iterator[fakenet.FakeNet]:
    require_root()
    mirror.ensure_filled()
    n = fakenet.start()
    try:
        yield n
    finally:
        fakenet.stop(n)


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


def fetch(net: fakenet.FakeNet, path: str, method: str = "GET") -> Response:
    """One request to mirror.test's address, the path sent exactly as given (http.client never normalises it)."""
    conn = http.client.HTTPConnection(net.addr(mirror.HOST), 80, timeout=30)
    try:
        conn.request(method, path, headers={"Host": mirror.HOST})
        resp = conn.getresponse()
        return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def stanzas(packages: str) -> dict[str, dict[str, str]]:
    out = {}
    for block in packages.strip().split("\n\n"):
        fields = dict(re.findall(r"^([\w-]+): (.*)$", block, re.M))
        out[fields["Package"]] = fields
    return out


def test_mirror_test_resolves_and_the_other_names_still_say_hello(net: fakenet.FakeNet) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [net.dns]
    assert [r.to_text() for r in resolver.resolve(mirror.HOST, "A")] == [net.addr(mirror.HOST)]
    net.check()
    conn = http.client.HTTPConnection(net.addr("allowed.test"), 80, timeout=10)
    conn.request("GET", "/")
    assert conn.getresponse().read() == b"hello from allowed.test\n"
    conn.close()
    assert mirror.urls(net) == {
        "apt": "http://mirror.test/apt",
        "pip": "http://mirror.test/pypi/simple",
        "npm": "http://mirror.test/npm/",
    }


def test_apt_index_names_chromium_and_its_deb_downloads_intact(net: fakenet.FakeNet) -> None:
    release = fetch(net, "/apt/Release")
    index = fetch(net, "/apt/Packages")
    assert release.status == index.status == 200
    # the hash apt checks the index against
    assert f"{hashlib.sha256(index.body).hexdigest()} {len(index.body)} Packages" in release.body.decode()
    chromium = stanzas(index.body.decode())["chromium"]
    path = "/apt/" + urllib.parse.quote(chromium["Filename"].removeprefix("./"))
    head = fetch(net, path, "HEAD")
    assert (head.status, head.headers["content-length"], head.body) == (200, chromium["Size"], b"")
    deb = fetch(net, path)
    assert deb.status == 200 and deb.headers["content-type"] == "application/vnd.debian.binary-package"
    assert len(deb.body) == int(chromium["Size"]) and int(chromium["Size"]) > 50_000_000
    assert hashlib.sha256(deb.body).hexdigest() == chromium["SHA256"]


def test_pip_index_lists_a_requests_wheel_that_downloads_intact(net: fakenet.FakeNet) -> None:
    assert 'href="requests/"' in fetch(net, "/pypi/simple/").body.decode()
    moved = fetch(net, "/pypi/simple/requests")
    assert (moved.status, moved.headers["location"]) == (301, "/pypi/simple/requests/")
    page = fetch(net, "/pypi/simple/requests/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    hrefs = re.findall(r'href="([^"]+\.whl)#sha256=([0-9a-f]{64})"', page.body.decode())
    assert hrefs, page.body
    href, sha256 = hrefs[0]
    wheel = fetch(net, urllib.parse.urljoin("/pypi/simple/requests/", href))
    assert wheel.status == 200 and wheel.body[:2] == b"PK"
    assert hashlib.sha256(wheel.body).hexdigest() == sha256


def test_npm_metadata_points_at_tarballs_on_the_mirror(net: fakenet.FakeNet) -> None:
    meta = fetch(net, "/npm/typescript")
    assert meta.status == 200 and meta.headers["content-type"] == "application/json"
    doc = json.loads(meta.body)
    dist = doc["versions"][doc["dist-tags"]["latest"]]["dist"]
    url = urllib.parse.urlsplit(dist["tarball"])
    assert (url.scheme, url.netloc) == ("http", mirror.HOST) and url.path.startswith("/npm/typescript/-/")
    tarball = fetch(net, url.path)
    assert tarball.status == 200
    assert dist["integrity"] == "sha512-" + base64.b64encode(hashlib.sha512(tarball.body).digest()).decode()
    # npm asks for a scoped package's document with its slash escaped
    scoped = fetch(net, "/npm/@typescript%2ftypescript-linux-x64")
    assert scoped.status == 200 and json.loads(scoped.body)["name"] == "@typescript/typescript-linux-x64"


@pytest.mark.parametrize(
    "path",
    [
        "/../../../../etc/passwd",
        "/apt/../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/npm/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "//etc/passwd",
        "/apt/%00/Packages",
        "/nonexistent",
    ],
)
def test_no_path_leaves_the_mirror(net: fakenet.FakeNet, path: str) -> None:
    r = fetch(net, path)
    assert r.status in (400, 404), (r.status, r.body[:200])
    assert b"root:" not in r.body


def in_fake_internet(
    net: fakenet.FakeNet, tmp: str, argv: list[str], env: dict[str, str], cwd: str | None = None
) -> str:
    """Run `argv` inside the fake internet, resolving names through its DNS (a resolv.conf of its own, bind
    mounted in a mount namespace of its own: the host's is never touched)."""
    resolv = os.path.join(tmp, "resolv.conf")
    with open(resolv, "w") as fh:
        fh.write(f"nameserver {net.dns}\n")
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    r = subprocess.run(
        ["ip", "netns", "exec", net.netns, "unshare", "--mount", "sh", "-c", script, resolv, *argv],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        cwd=cwd,
    )
    assert r.returncode == 0, f"{argv[:3]} exit {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_pip_and_npm_install_by_name_from_the_mirror(net: fakenet.FakeNet) -> None:
    urls = mirror.urls(net)
    with tempfile.TemporaryDirectory(prefix="sandburg-mirror-") as tmp:
        # nothing of the host's pip or npm configuration (indexes, find-links) may supply a package
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("PIP_", "NPM_CONFIG_"))}
        env |= {"PIP_CONFIG_FILE": "/dev/null", "HOME": tmp, "NPM_CONFIG_USERCONFIG": "/dev/null"}
        pip = [sys.executable, "-m", "pip", "download", "--no-cache-dir", "-q"]
        in_fake_internet(
            net,
            tmp,
            [
                *pip,
                "--index-url",
                urls["pip"],
                "--trusted-host",
                mirror.HOST,
                "-d",
                f"{tmp}/wheels",
                "requests",
            ],
            env=env,
        )
        wheels = sorted(os.listdir(f"{tmp}/wheels"))
        assert [w.split("-")[0] for w in wheels] == [
            "certifi",
            "charset_normalizer",
            "idna",
            "requests",
            "urllib3",
        ]
        os.makedirs(f"{tmp}/proj")
        npm = [
            "npm",
            "install",
            "--registry",
            urls["npm"],
            "--cache",
            f"{tmp}/npm-cache",
            "--no-audit",
            "--no-fund",
        ]
        in_fake_internet(net, tmp, [*npm, "typescript", "is-number"], env=env, cwd=f"{tmp}/proj")
        # typescript's compiler is the binary of its optional dependency for this platform
        version = subprocess.run(
            [f"{tmp}/proj/node_modules/.bin/tsc", "--version"], capture_output=True, text=True, check=True
        )
        assert version.stdout.startswith("Version "), version


def base_tarball() -> str:
    found = sorted(glob.glob(os.path.join(CACHE_DIR, "debian-12@*.tar")), key=os.path.getmtime)
    assert found, f"no debian-12 image tarball in {CACHE_DIR}: run `make mirror`"
    return found[-1]


def apt_config(work: str, source: str) -> dict[str, str]:
    """An apt that knows only `source` and the packages of the sandbox's image (as scripts/fill-mirror.py)."""
    subprocess.run(["tar", "-x", "-C", work, "-f", base_tarball(), "./var/lib/dpkg/status"], check=True)
    for d in ("empty", "lists/partial", "archives/partial", "cache", "log"):
        os.makedirs(os.path.join(work, d), exist_ok=True)
    with open(os.path.join(work, "sources.list"), "w") as fh:
        fh.write(source + "\n")
    conf = {
        "Dir::Etc::Parts": f"{work}/empty",
        "Dir::Etc::Main": "/dev/null",
        "Dir::Etc::SourceList": f"{work}/sources.list",
        "Dir::Etc::SourceParts": f"{work}/empty",
        "Dir::Etc::Preferences": "/dev/null",
        "Dir::Etc::PreferencesParts": f"{work}/empty",
        "Dir::State": work,
        "Dir::State::Lists": f"{work}/lists",
        "Dir::State::status": f"{work}/var/lib/dpkg/status",
        "Dir::Cache": f"{work}/cache",
        "Dir::Cache::archives": f"{work}/archives",
        "Dir::Log": f"{work}/log",
        "Debug::NoLocking": "1",
        "APT::Architecture": "amd64",
    }
    with open(os.path.join(work, "apt.conf"), "w") as fh:
        fh.writelines(f'{k} "{v}";\n' for k, v in conf.items())
        fh.write('APT::Architectures { "amd64"; };\n')
    return {**os.environ, "APT_CONFIG": f"{work}/apt.conf"}


def test_apt_downloads_the_closure_by_name_over_http(net: fakenet.FakeNet) -> None:
    # apt pipelines requests and escapes file names (epochs are %3a in them): the server must keep up with both
    with tempfile.TemporaryDirectory(prefix="sandburg-mirror-", dir="/var/tmp") as tmp:
        env = apt_config(tmp, f"deb [trusted=yes] {mirror.urls(net)['apt']} ./")
        in_fake_internet(net, tmp, ["apt-get", "-q", "update"], env=env)
        in_fake_internet(
            net,
            tmp,
            ["apt-get", "-q", "-y", "--download-only", "--no-install-recommends", "install", "chromium", "nodejs", "npm", "postgresql-client"],
            env=env,
        )  # fmt: skip
        got = sorted(os.listdir(os.path.join(tmp, "archives")))
        names = [d.split("_")[0] for d in got if d.endswith(".deb")]
        assert {"chromium", "nodejs", "npm", "postgresql-client"} <= set(names)
        assert any("%3a" in d for d in got), "no file name with an epoch was fetched"


@pytest.mark.slow
def test_apt_closure_installs_into_the_sandbox_image() -> None:
    """The real proof: the mirror alone is enough for apt to install everything into the Debian image."""
    mirror.ensure_filled()
    require_root()
    root = tempfile.mkdtemp(prefix="sandburg-mirror-root-", dir="/var/tmp")
    mnt = os.path.join(root, "mirror", "apt")
    try:
        subprocess.run(
            [
                "tar",
                "-x",
                "--numeric-owner",
                "--xattrs",
                "--xattrs-include=*",
                "-C",
                root,
                "-f",
                base_tarball(),
            ],
            check=True,
        )
        os.makedirs(mnt)
        with open(os.path.join(root, "etc/apt/sources.list.d/mirror.list"), "w") as fh:
            fh.write("deb [trusted=yes] file:/mirror/apt ./\n")
        for f in glob.glob(os.path.join(root, "etc/apt/sources.list.d/*.sources")) + [
            os.path.join(root, "etc/apt/sources.list")
        ]:
            if os.path.exists(f):
                os.unlink(f)  # the image's own sources: deb.debian.org must not be needed
        apt = "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root DEBIAN_FRONTEND=noninteractive apt-get -q"
        packages = " ".join(["chromium", "postgresql-client", "fonts-liberation", "nodejs", "npm"])
        # a mount and pid namespace of its own: the mirror's read-only bind mount and /proc vanish with it, so
        # nothing is left mounted on the host whatever happens (and rmtree can never reach into the mirror)
        script = f"""set -e
            mount --bind {mirror.MIRROR_DIR}/apt {mnt}
            mount -o remount,bind,ro {mnt}
            mount -t proc proc {root}/proc
            mount --rbind /dev {root}/dev
            chroot {root} {apt} update
            chroot {root} {apt} -y --no-install-recommends install {packages}
            chroot {root} chromium --version
            chroot {root} psql --version
            chroot {root} node -e 'console.log(process.version)'
        """
        r = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--pid",
                "--fork",
                "--kill-child",
                "sh",
                "-c",
                script,
            ],
            capture_output=True,
            text=True,
            timeout=280,
        )
        assert r.returncode == 0, f"exit {r.returncode}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
        assert "Chromium" in r.stdout and "psql (PostgreSQL) 15" in r.stdout, r.stdout[-2000:]
        assert not re.search(r"^E: ", r.stderr, re.M), r.stderr[-2000:]
    finally:
        for path in (mnt, os.path.join(root, "proc"), os.path.join(root, "dev")):
            assert not os.path.ismount(path), f"{path} is still mounted on the host"
        shutil.rmtree(root)
