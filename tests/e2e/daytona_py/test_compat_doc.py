"""docs/daytona-compat.md lists every operation of Daytona's generated clients, and the server agrees with it.

* the installed clients (`daytona_api_client`, `daytona_toolbox_api_client` in .venv-daytona, introspected by
  scripts/operations.py) have no operation the page lacks, and the page none they lack;
* the TypeScript SDK's clients, when tests/e2e/daytona_ts/node_modules is installed, have none the page lacks;
* "not yet" rows are exactly the endpoints of sandburg/server/unsupported.py;
* the live server answers every "not yet" operation with a typed 501, and no supported one with 501 or 404
  NOT_FOUND (a missing route).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandburg.server import unsupported
from tests._support.server import ServerProcess
from tests.e2e.daytona_py.conftest import ROOT, SCRIPTS

DOC = ROOT / "docs" / "daytona-compat.md"
TS_CLIENTS = ROOT / "tests" / "e2e" / "daytona_ts" / "node_modules" / "@daytona"
CLIENTS = ("daytona_api_client", "daytona_toolbox_api_client")
_ROW = re.compile(r"^\| `(\w+)` \| `([A-Z]+) (/\S*)` \| (supported|partial|not yet) \| (.*) \|$")

Op = tuple[str, str, str, str, str]  # client, api, operation, method, path


def doc_rows() -> dict[Op, tuple[str, str]]:
    rows: dict[Op, tuple[str, str]] = {}
    client = api = ""
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            client = next((c for c in CLIENTS if f"`{c}`" in line), "")
        elif line.startswith("### "):
            api = line[4:].strip()
        elif (m := _ROW.match(line)) is not None:
            assert client and api, f"row outside a client/API section: {line}"
            key = (client, api, m.group(1), m.group(2), m.group(3))
            assert key not in rows, f"listed twice: {key}"
            rows[key] = (m.group(4), m.group(5).strip())
    return rows


def installed_operations(daytona_python: Path) -> set[Op]:
    proc = subprocess.run(
        [str(daytona_python), str(SCRIPTS / "operations.py")], capture_output=True, text=True, timeout=120,
        check=True, cwd=ROOT,
    )  # fmt: skip
    return {(o["client"], o["api"], o["operation"], o["method"], o["path"]) for o in json.loads(proc.stdout)}


def test_every_generated_operation_is_in_the_doc(daytona_python: Path) -> None:
    installed = installed_operations(daytona_python)
    rows = doc_rows()
    assert len(installed) > 250  # the introspection found the clients' operations
    missing = sorted(installed - set(rows))
    assert not missing, (
        "operations of Daytona's generated clients missing from docs/daytona-compat.md:\n"
        + "\n".join(f"  {c} {a}.{o}: {m} {p}" for c, a, o, m, p in missing)
    )
    extra = sorted(set(rows) - installed)
    assert not extra, f"docs/daytona-compat.md lists operations the installed clients do not have: {extra}"
    for key, (status, note) in rows.items():
        if status != "supported":
            assert note, f"{key}: a {status} row says what differs or which issue brings it"


def test_typescript_clients_are_covered() -> None:
    if not TS_CLIENTS.is_dir():
        pytest.skip("the TypeScript SDK is not installed (tests/e2e/daytona_ts/node_modules)")
    documented = {(m, p) for (_c, _a, _o, m, p) in doc_rows()}
    found = set()
    for name in ("api-client", "toolbox-api-client"):
        for js in sorted((TS_CLIENTS / name / "src" / "api").glob("*.js")):
            src = js.read_text()
            for m in re.finditer(r"localVarPath = `([^`]*)`.*?method: '(\w+)'", src, re.S):
                path = re.sub(r"\$\{encodeURIComponent\(String\((\w+)\)\)\}", r"{\1}", m.group(1))
                found.add((m.group(2), path))
    assert len(found) > 200
    missing = sorted(found - documented)
    assert not missing, (
        f"operations of the TypeScript SDK's clients missing from docs/daytona-compat.md: {missing}"
    )


def test_not_yet_rows_match_the_servers_list() -> None:
    for (client, _api, op, method, path), (status, _note) in doc_rows().items():
        toolbox = client == "daytona_toolbox_api_client"
        endpoints = unsupported.TOOLBOX_ENDPOINTS if toolbox else unsupported.MAIN_ENDPOINTS
        listed = any(e.method == method and e.path == path for e in endpoints)
        assert listed == (status == "not yet"), f"{op} ({method} {path}) is {status!r} in the doc"


def _fill(path: str) -> str:
    return re.sub(
        r"\{(\w+)\}", lambda m: "8080" if m.group(1) in ("port", "interval", "ttlMinutes") else "x", path
    )


def test_live_server_answers_as_the_doc_says(server: ServerProcess) -> None:
    fake = "00000000-0000-0000-0000-00000000beef"
    problems: list[Any] = []
    with httpx.Client(
        base_url=server.api_url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=30
    ) as http:
        for (client, _api, op, method, path), (status, _note) in sorted(doc_rows().items()):
            url = (f"/toolbox/{fake}" if client == "daytona_toolbox_api_client" else "") + _fill(path)
            if path == "/sandbox/{sandboxIdOrName}/public/{isPublic}":
                url = url.rsplit("/", 1)[0] + "/true"
            r = http.request(method, url)
            body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
            code = body.get("code") if isinstance(body, dict) else None
            if status == "not yet":
                if (
                    r.status_code != 501
                    or code != "NOT_IMPLEMENTED"
                    or "issue" not in body.get("message", "")
                    and ("not planned" not in body.get("message", ""))
                ):
                    problems.append((op, method, url, r.status_code, r.text[:200]))
            elif r.status_code == 501 or code == "NOT_FOUND":
                problems.append((op, method, url, r.status_code, r.text[:200]))
    assert not problems, "\n".join(map(str, problems))
