"""sandburg/specfile.py: parsing sandburg.yaml, errors naming the line and field, and the digest."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sandburg.specfile import FileCopy, Packages, SpecError, VolumeUse, load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    p = tmp_path / "sandburg.yaml"
    p.write_text(text)
    return p


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(write(tmp_path, text))
    return str(info.value)


def test_minimal(tmp_path):
    spec = load_spec(write(tmp_path, "name: box\n"))
    assert spec.name == "box" and spec.image is None and spec.env == {} and spec.files == ()


def test_minimal_example():
    spec = load_spec(EXAMPLES / "minimal" / "sandburg.yaml")
    assert (spec.name, spec.image, spec.isolation, spec.ports) == (
        "minimal",
        "debian-12",
        "container",
        (8000,),
    )
    assert spec.files == (FileCopy("/workspace/app/", "app"),)
    assert spec.network == {"allow": ["pypi.org"], "deny": []} and spec.env["DEBUG"] == "false"
    assert spec.pending == {}


def test_full_example():
    spec = load_spec(EXAMPLES / "insurance-lead-agent" / "sandburg.yaml")
    assert (spec.cpu, spec.memory_mib, spec.disk_mib) == (2, 4096, 10240)
    assert spec.env == {"LOG_LEVEL": "info"} and spec.setup == ("pip install -e /workspace/app",)
    assert spec.pending == {} and spec.volumes == (VolumeUse("data", "/workspace/data", size_mib=5120),)
    assert spec.secrets == {"OPENAI_API_KEY": "OPENAI_API_KEY"} and spec.lines["packages"] == 8
    assert spec.packages == Packages(
        apt=("postgresql-client", "chromium"), pip=("requests", "playwright"), npm=("typescript",)
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("packages: {apt: [--yes]}", "packages.apt[0]"),
        ("packages: {pip: ['requests; rm -rf /']}", "packages.pip[0]"),
        ("packages: {pip: ['--index-url=http://x']}", "packages.pip[0]"),
        ("packages: {npm: ['ts && curl x']}", "packages.npm[0]"),
        ("packages: {brew: [x]}", "packages"),
        ("packages: {apt: chromium}", "packages.apt"),
    ],
)
def test_bad_packages_name_the_line_and_field(tmp_path, text, where):
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, f"name: p\n{text}\n"))
    assert f":2: {where}:" in str(err.value), err.value


def test_good_package_names(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            "name: p\npackages:\n  apt: [libc6-dev, g++, python3.11=3.11.2-6]\n"
            "  pip: ['requests>=2.31,<3', 'uvicorn[standard]', Django==5.0]\n  npm: ['@types/node', typescript@5]\n",
        )
    )
    assert spec.packages.pip == ("requests>=2.31,<3", "uvicorn[standard]", "Django==5.0")


def test_values_are_normalized(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            "name: b\nenv: {N: 3, F: 1.5, T: true}\nresources: {memory: 512MiB, disk: 2}\nnetwork: none\n",
        )
    )
    assert spec.env == {"N": "3", "F": "1.5", "T": "true"}
    assert (spec.memory_mib, spec.disk_mib, spec.network) == (512, 2048, "none")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("name: b\nimage: [unclosed\n", ":3: YAML syntax"),
        ("name: b\nenv:\n  A: 1\n B: 2\n", ":4: YAML syntax"),
        ("image: debian-12\n", ":1: name: required"),
        ("", ":1: name: required"),
        ("name: 'bad name'\n", ":1: name: 'bad name' must match"),
        ("name: b\nisolation: vm\n", ":2: isolation: expected gvisor or container, got 'vm'"),
        ("name: b\nresources:\n  cpu: 1\n  memory: 4 lots\n", ":4: resources.memory: invalid size '4 lots'"),
        ("name: b\nresources: {cpu: 0}\n", ":2: resources.cpu: expected a positive whole number"),
        ("name: b\nimages: x\nfoo: 1\n", ":2: top level: unknown keys 'images', 'foo'"),
        ("name: b\nports: [8000, 0]\n", ":2: ports: expected a port from 1 to 65535, got 0"),
        ("name: b\nports:\n  - 80\n  - true\n", ":4: ports: expected a port"),
        ("name: b\nfiles:\n  /w/: ../etc\n", ":3: files['/w/']: '../etc' escapes the YAML's directory"),
        ("name: b\nfiles:\n  /w/: app/../../x\n", ":3: files['/w/']: 'app/../../x' escapes"),
        ("name: b\nfiles: {/w/: /etc/passwd}\n", ":2: files['/w/']: '/etc/passwd': local paths are relative"),
        ("name: b\nfiles: {w: ./app}\n", ":2: files['w']: the sandbox path must be absolute"),
        ("name: b\nfiles: {/w: ./nope}\n", "'./nope': no such file or directory"),
        ("name: b\nnetwork: [pypi.org]\n", ":2: network: expected 'none', 'all' or a mapping"),
        ("name: b\nnetwork: some\n", ":2: network: expected 'none', 'all' or a mapping"),
        ("name: b\nnetwork: {allow: pypi.org}\n", ":2: network.allow: expected a list"),
        ("name: b\nenv: {A: [1]}\n", ":2: env.A: expected a string, number or boolean"),
        ("name: b\nenv: {A-B: x}\n", ":2: env: 'A-B' is not a valid variable name"),
        ("name: b\nsetup: echo hi\n", ":2: setup: expected a list"),
        ("name: b\nname: c\n", ":2: top level: duplicate key 'name'"),
        ("- name: b\n", ":1: top level: expected a mapping"),
    ],
)
def test_errors_name_line_and_field(tmp_path, text, expected):
    message = error(tmp_path, text)
    assert message.startswith(str(tmp_path / "sandburg.yaml") + ":"), message
    assert expected in message, message


def test_symlink_escape(tmp_path):
    (tmp_path / "spec").mkdir()
    os.symlink("/etc", tmp_path / "spec" / "etc")
    (tmp_path / "spec" / "sandburg.yaml").write_text("name: b\nfiles: {/w/: ./etc}\n")
    with pytest.raises(SpecError, match="through a symlink"):
        load_spec(tmp_path / "spec" / "sandburg.yaml")


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "nope.yaml")


def test_digest(tmp_path):
    base = "name: b\nenv: {A: '1', B: '2'}\nfiles: {/w/: ./app}\n"
    first = load_spec(write(tmp_path, base)).digest(tmp_path)
    assert load_spec(write(tmp_path, base)).digest(tmp_path) == first
    reordered = "files: {/w/: ./app}\nenv:\n  B: '2'\n  A: '1'\nname: b   # same spec\n"
    assert load_spec(write(tmp_path, reordered)).digest(tmp_path) == first
    spec = load_spec(write(tmp_path, base))
    (tmp_path / "app" / "main.py").write_text("print('changed')\n")
    assert spec.digest(tmp_path) != first
    (tmp_path / "app" / "main.py").write_text("print('hi')\n")
    assert spec.digest(tmp_path) == first
    (tmp_path / "app" / "main.py").chmod(0o755)
    assert spec.digest(tmp_path) != first
    (tmp_path / "app" / "main.py").chmod(0o644)
    (tmp_path / "app" / "sub").mkdir()
    (tmp_path / "app" / "sub" / "x").write_text("")
    assert spec.digest(tmp_path) != first
    shutil.rmtree(tmp_path / "app" / "sub")
    assert load_spec(write(tmp_path, base.replace("'2'", "'3'"))).digest(tmp_path) != first


def test_secrets_as_names_or_a_mapping(tmp_path):
    f = tmp_path / "sandburg.yaml"
    f.write_text("name: s\nsecrets: [OPENAI_API_KEY, DB_URL]\n")
    assert load_spec(f).secrets == {"OPENAI_API_KEY": "OPENAI_API_KEY", "DB_URL": "DB_URL"}
    f.write_text("name: s\nsecrets:\n  API_KEY: prod_openai\n")
    assert load_spec(f).secrets == {"API_KEY": "prod_openai"}
    for bad, line in (("secrets: [ok, 'no-dash']", 2), ("secrets:\n  A: 'x y'", 3), ("secrets: 3", 2)):
        f.write_text(f"name: s\n{bad}\n")
        with pytest.raises(SpecError) as err:
            load_spec(f)
        assert f":{line}: secrets" in str(err.value), str(err.value)


def test_volumes_both_forms(tmp_path):
    spec = load_spec(
        write(
            tmp_path,
            "name: v\nvolumes:\n  - data:/workspace/data\n  - 'ref:/ref:ro'\n"
            "  - {name: big, mount: /big, size: 5GiB, subpath: inputs, read_only: false}\n",
        )
    )
    assert spec.volumes == (
        VolumeUse("data", "/workspace/data"),
        VolumeUse("ref", "/ref", read_only=True),
        VolumeUse("big", "/big", subpath="inputs", size_mib=5120),
    )


@pytest.mark.parametrize(
    "text",
    [
        "volumes: [data]",
        "volumes: ['data:/x:rx']",
        "volumes: [{name: d}]",
        "volumes: [{name: d, mount: /x, colour: red}]",
        "volumes: [{name: d, mount: /x, read_only: yes-please}]",
        "volumes: [{name: d, mount: /x, size: lots}]",
        "volumes: [{name: '../d', mount: /x}]",
        "volumes: ['a:/x', 'b:/x']",
        "volumes: ['a:/']",
        "volumes: {name: d}",
    ],
)
def test_bad_volumes_name_the_line_and_field(tmp_path, text):
    with pytest.raises(SpecError) as err:
        load_spec(write(tmp_path, f"name: p\n{text}\n"))
    assert ":2: volumes" in str(err.value), err.value
