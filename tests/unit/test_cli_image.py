"""Unit tests of ``sandburg image ...``: argument parsing, the requests it builds (steps, context tarballs, pull
and import bodies), its output formats and exit codes, against ``ImagesFake`` through ``httpx.MockTransport``.
The fake stands in only because unit tests cannot run a server; tests/e2e/test_cli_image.py runs the same
commands against the real one (real builds, cache hits, pulls).
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandburg import Sandburg
from sandburg.cli.image import format_bytes
from sandburg.cli.main import main
from tests.unit.test_sdk_core import KEY

BUILTINS = ("debian-12", "busybox")


def _image(name: str, **kw: Any) -> dict[str, Any]:
    return {"id": f"id-{name}", "name": name, "kind": "image", "state": "active", "sizeBytes": None, **kw}


class ImagesFake:
    """FAKE of the /api/images routes for MockTransport: images kept by name, build logs canned, requests and
    uploaded contexts recorded. It checks the wire the CLI sends, not the server's behaviour."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.images: dict[str, dict[str, Any]] = {}
        self.contexts: list[bytes] = []
        self.log = "build of 'x'\n#1 [run] run true ... CACHED\n"
        self.failure: tuple[str, str] | None = None  # (code, reason) of the next build

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def find(self, ref: str) -> dict[str, Any] | None:
        return next((i for i in self.images.values() if ref in (i["id"], i["name"])), None)

    def made(self, name: str, source: dict[str, Any]) -> httpx.Response:
        extra: dict[str, Any] = {"state": "building", "source": source}
        if self.failure:
            extra.update(state="error", errorCode=self.failure[0], errorReason=self.failure[1])
        self.images[name] = _image(name, **extra)
        return httpx.Response(202, json=self.images[name])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"] == f"Bearer {KEY}"
        method, path = request.method, request.url.path.removeprefix("/api/images").strip("/")
        if (method, path) == ("GET", ""):
            kind = request.url.params.get("kind")
            items = [_image(n, builtin=True) for n in BUILTINS] if kind in (None, "image") else []
            items += [i for i in self.images.values() if kind in (None, i["kind"])]
            return httpx.Response(200, json={"items": items})
        if (method, path) == ("POST", ""):
            body = json.loads(request.content)
            return self.made(body["name"], {"plan": {"base": body["base"], "steps": body["steps"]}})
        if (method, path) == ("POST", "context"):
            self.contexts.append(request.read())
            return httpx.Response(200, json={"digest": f"sha256:{len(self.contexts):064x}", "size": 1})
        if (method, path) == ("POST", "pull"):
            body = json.loads(request.content)
            return self.made(body["name"], {"pull": body["reference"]})
        if (method, path) == ("POST", "import"):
            return self.made(request.url.params["name"], {"import": "upload.tar"})
        name = path.removesuffix("/logs")
        img = self.find(name) or (_image(name, builtin=True) if name in BUILTINS else None)
        if img is None:
            message = f"image {name!r} not found"
            return httpx.Response(
                404, json={"statusCode": 404, "message": message, "code": "IMAGE_NOT_FOUND"}
            )
        if path.endswith("/logs"):
            return httpx.Response(200, text=self.log)
        if method == "DELETE":
            del self.images[img["name"]]
            return httpx.Response(200, json=img)
        if img["state"] == "building":  # the build ends once its log was read
            img["state"], img["sizeBytes"] = "active", 3 << 20
        return httpx.Response(200, json=img)


@pytest.fixture
def fake() -> ImagesFake:
    return ImagesFake()


@pytest.fixture
def run(fake: ImagesFake, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI over the fake; returns (exit code, stdout, stderr)."""

    def factory(api_url: str | None) -> Sandburg:
        return Sandburg("http://fake/api", KEY, transport=httpx.MockTransport(fake))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv), client_factory=factory)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _members(data: bytes) -> dict[str, tuple[bytes, int]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        out = {}
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            assert fh is not None and m.mtime == 0 and m.uid == 0
            out[m.name] = (fh.read(), m.mode)
        return out


def test_format_bytes() -> None:
    cases = {
        None: "-",
        0: "-",
        512: "512B",
        1024: "1KiB",
        1536: "1.5KiB",
        3 << 20: "3MiB",
        (5 << 30) // 2: "2.5GiB",
    }
    assert {size: format_bytes(size) for size in cases} == cases


def test_build_steps_in_their_fixed_order(run: Any, fake: ImagesFake, tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "sub").mkdir(parents=True)
    (app / "b.py").write_text("b")
    (app / "sub" / "a.py").write_text("a")
    conf = tmp_path / "x.conf"
    conf.write_text("conf")
    conf.chmod(0o600)
    code, out, err = run(
        "image", "build", "team/app:1", "--run", "echo a", "--env", "A=1=2", "--workdir", "/srv",
        "--copy", f"{app}:/srv/app", "--copy", f"{conf}:/etc/app.conf", "--copy", f"{conf}:/opt/",
        "--npm", "left-pad", "--pip", "requests", "--apt", "curl", "--apt", "jq", "--run", "echo b",
        "--env", "B=", "--base", "busybox", "--isolation", "gvisor", "--allow", "example.com",
    )  # fmt: skip
    assert (code, err) == (0, ""), err
    build = next(json.loads(r.content) for r in fake.requests if r.url.path == "/api/images")
    assert build == {
        "name": "team/app:1",
        "base": "busybox",
        "isolation": "gvisor",
        "allow": ["example.com"],
        "steps": [
            {"kind": "apt", "args": ["curl", "jq"]},
            {"kind": "pip", "args": ["requests"]},
            {"kind": "npm", "args": ["left-pad"]},
            {"kind": "files", "args": ["/srv/app", f"sha256:{1:064x}"]},
            {"kind": "files", "args": ["/etc", f"sha256:{2:064x}"]},
            {"kind": "files", "args": ["/opt/", f"sha256:{3:064x}"]},
            {"kind": "run", "args": ["echo a", "echo b"]},
            {"kind": "env", "args": ["A=1=2", "B="]},
            {"kind": "workdir", "args": ["/srv"]},
        ],
    }
    # a directory's tree (sorted, relative names), a file renamed to the destination's name, or kept in it
    assert _members(fake.contexts[0]) == {"b.py": (b"b", 0o644), "sub/a.py": (b"a", 0o644)}
    assert _members(fake.contexts[1]) == {"app.conf": (b"conf", 0o600)}
    assert _members(fake.contexts[2]) == {"x.conf": (b"conf", 0o600)}
    # the log streams to stdout, then the result; the image is followed by its id
    assert out.endswith(fake.log + "built team/app:1\n"), out
    assert f"==> files: {app} -> /srv/app (" in out
    paths = [(r.method, r.url.path, r.url.query) for r in fake.requests[-2:]]
    assert paths == [
        ("GET", "/api/images/id-team/app:1/logs", b"follow=true"),
        ("GET", "/api/images/id-team/app:1", b""),
    ]


def test_the_same_files_give_the_same_context(run: Any, fake: ImagesFake, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    for _ in range(2):
        assert run("image", "build", "a", "--copy", f"{tmp_path}:/d")[0] == 0
        (tmp_path / "f").touch()  # a new mtime changes nothing
    assert fake.contexts[0] == fake.contexts[1]


def test_build_defaults(run: Any, fake: ImagesFake) -> None:
    assert run("image", "build", "plain")[:2] == (0, fake.log + "built plain\n")
    assert fake.body(0) == {
        "name": "plain",
        "base": "debian-12",
        "steps": [],
        "isolation": "container",
        "allow": [],
    }


def test_failed_build_exits_1_with_the_reason(run: Any, fake: ImagesFake) -> None:
    fake.failure = ("IMAGE_BUILD_FAILED", "step run [1/1] 'exit 4': exit 4 (see the build log)")
    code, out, err = run("image", "build", "bad", "--run", "exit 4")
    assert code == 1 and out == fake.log, out
    assert (
        err
        == "error: image 'bad': step run [1/1] 'exit 4': exit 4 (see the build log) (IMAGE_BUILD_FAILED)\n"
    )


def test_build_of_a_sandburg_yaml_is_the_image_up_makes(run: Any, fake: ImagesFake, tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "hello.py").write_text("print('hi')\n")
    spec = tmp_path / "sandburg.yaml"
    spec.write_text(
        textwrap.dedent("""\
            name: web
            packages: {apt: [curl], pip: [flask]}
            env: {B: "2", A: "1"}
            files: {"/workspace/app/": ./app}
            setup: ["python3 /workspace/app/hello.py"]
            network: {allow: [pypi.org]}
            volumes: ["data:/workspace/data"]
        """)
    )
    code, out, err = run("image", "build", "-f", str(spec), "--allow", "example.com")
    assert (code, err) == (0, ""), err
    assert out.endswith("built up/web\n")
    build = next(json.loads(r.content) for r in fake.requests if r.url.path == "/api/images")
    assert build == {
        "name": "up/web",
        "base": "debian-12",
        "isolation": "container",
        "allow": ["pypi.org", "example.com"],
        "steps": [
            {"kind": "apt", "args": ["curl"]},
            {"kind": "pip", "args": ["flask"]},
            {"kind": "files", "args": ["/workspace/app/", f"sha256:{1:064x}"]},
            {"kind": "run", "args": ["python3 /workspace/app/hello.py"]},
            {"kind": "env", "args": ["A=1", "B=2"]},
        ],
    }
    assert _members(fake.contexts[0]) == {"hello.py": (b"print('hi')\n", 0o644)}
    assert run("image", "build", "mine", "-f", str(spec))[0] == 0
    assert fake.body(-3)["name"] == "mine"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["image", "build"], "image build: give NAME (or -f sandburg.yaml)"),
        (["image", "build", "-f", "x.yaml", "--run", "true", "--base", "b"], "cannot go with --base, --run"),
        (["image", "build", "a", "--env", "NOEQUALS"], "expected K=V, got 'NOEQUALS'"),
        (["image", "build", "a", "--copy", "relative"], "expected LOCAL:/ABSOLUTE/DEST, got 'relative'"),
        (["image", "build", "a", "--copy", "src:dest"], "expected LOCAL:/ABSOLUTE/DEST"),
        (["image", "build", "a", "--isolation", "vm"], "invalid choice: 'vm'"),
        (["image", "ls", "--kind", "vm"], "invalid choice: 'vm'"),
        (["image", "import", "f.tar"], "the following arguments are required: --name"),
        (["image", "rm"], "the following arguments are required: NAME"),
        (["image"], "the following arguments are required: ACTION"),
    ],
)
def test_usage_errors_exit_2_without_a_request(
    run: Any, fake: ImagesFake, argv: list[str], message: str
) -> None:
    code, out, err = run(*argv)
    assert code == 2 and out == "" and message in err, err
    assert fake.requests == []


def test_a_missing_copy_source_exits_1(run: Any, fake: ImagesFake, tmp_path: Path) -> None:
    code, _out, err = run("image", "build", "a", "--copy", f"{tmp_path}/nope:/d")
    assert (code, err) == (1, f"error: --copy {tmp_path}/nope: no such file or directory\n")
    assert fake.requests == []


def test_a_bad_spec_exits_2(run: Any, tmp_path: Path) -> None:
    (tmp_path / "sandburg.yaml").write_text("name: web\nbogus: 1\n")
    code, _out, err = run("image", "build", "-f", str(tmp_path / "sandburg.yaml"))
    assert code == 2 and "bogus" in err, err


def test_ls_table_and_json(run: Any, fake: ImagesFake) -> None:
    fake.images = {
        "up/web": _image("up/web", sizeBytes=1536 << 20, source={"plan": {"base": "debian-12", "steps": []}}),
        "app:1": _image("app:1", sizeBytes=4 << 30, source={"pull": "127.0.0.1:5000/team/app:1"}),
        "snap": _image("snap", kind="template", source={"imageName": "debian-12"}),
        "bad": _image("bad", state="error", errorCode="IMAGE_PULL_FAILED", source={"pull": "x.io/bad"}),
        "arch": _image("arch", state="building", sizeBytes=800, source={"import": "tmp123.tar"}),
    }
    code, out, err = run("image", "ls")
    assert (code, err) == (0, "")
    assert out == textwrap.dedent("""\
        NAME       KIND      STATE                      SIZE    SOURCE
        debian-12  image     active                     -       built-in
        busybox    image     active                     -       built-in
        up/web     image     active                     1.5GiB  debian-12
        app:1      image     active                     4GiB    127.0.0.1:5000/team/app:1
        snap       template  active                     -       debian-12
        bad        image     error (IMAGE_PULL_FAILED)  -       x.io/bad
        arch       image     building                   800B    import
    """)
    code, out, _ = run("image", "ls", "--kind", "template", "--json")
    assert fake.requests[-1].url.query == b"kind=template"
    assert code == 0 and [i["name"] for i in json.loads(out)] == ["snap"]
    assert json.loads(out)[0]["source"] == {"imageName": "debian-12"}


def test_pull(run: Any, fake: ImagesFake) -> None:
    fake.log = "pull of 127.0.0.1:5000/team/app:1\n"
    assert run("image", "pull", "127.0.0.1:5000/team/app:1", "--insecure") == (
        0,
        fake.log + "pulled team/app:1\n",
        "",
    )
    assert fake.body(0) == {"name": "team/app:1", "reference": "127.0.0.1:5000/team/app:1", "insecure": True}
    assert run("image", "pull", "registry.io/app:2", "--name", "mine")[:2] == (0, fake.log + "pulled mine\n")
    assert fake.body(-3) == {"name": "mine", "reference": "registry.io/app:2", "insecure": False}


def test_import(run: Any, fake: ImagesFake, tmp_path: Path) -> None:
    archive = tmp_path / "img.tar"
    archive.write_bytes(b"tarball bytes")
    assert run("image", "import", str(archive), "--name", "imp/x") == (0, fake.log + "imported imp/x\n", "")
    sent = fake.requests[0]
    assert (sent.method, sent.url.path, sent.url.params["name"]) == ("POST", "/api/images/import", "imp/x")
    assert sent.content == b"tarball bytes"
    code, _out, err = run("image", "import", str(tmp_path / "none.tar"), "--name", "y")
    assert code == 1 and err.startswith("error: [Errno 2] No such file or directory"), err


def test_rm_keeps_going_and_reports_each_error(run: Any, fake: ImagesFake) -> None:
    fake.images = {n: _image(n) for n in ("a", "team/b:1")}
    code, out, err = run("image", "rm", "a", "nope", "team/b:1")
    assert (code, out) == (1, "a\nteam/b:1\n")
    assert err == "error: image 'nope' not found (IMAGE_NOT_FOUND)\n"
    assert fake.images == {}
    assert [r.url.path for r in fake.requests if r.method == "DELETE"][-1] == "/api/images/team/b:1"


def test_logs(run: Any, fake: ImagesFake) -> None:
    fake.images = {"a": _image("a")}
    assert run("image", "logs", "a") == (0, fake.log, "")
    assert fake.requests[-1].url.query == b"follow=false"
    assert run("image", "logs", "a", "-f")[0] == 0
    assert fake.requests[-1].url.query == b"follow=true"
    assert run("image", "logs", "nope")[:1] == (1,)


def test_inspect(run: Any, fake: ImagesFake) -> None:
    fake.images = {
        "up/web": _image("up/web", sizeBytes=10, config={"env": {"A": "1"}}, source={"pull": "r/x"})
    }
    code, out, _ = run("image", "inspect", "up/web")
    assert code == 0 and fake.requests[-1].url.path == "/api/images/up/web"
    assert json.loads(out) == {
        "id": "id-up/web",
        "name": "up/web",
        "kind": "image",
        "state": "active",
        "builtin": False,
        "error_reason": None,
        "error_code": None,
        "size_bytes": 10,
        "config": {"env": {"A": "1"}},
        "source": {"pull": "r/x"},
    }
    code, out, _ = run("image", "inspect", "busybox")
    assert code == 0 and json.loads(out)["builtin"] is True
    assert run("image", "inspect", "nope") == (1, "", "error: image 'nope' not found (IMAGE_NOT_FOUND)\n")
