"""Unit tests of ``sandbox.network`` and ``sandbox.preview_url`` in both clients, of ``create(network=...)``,
and of ``sandburg net`` / ``sandburg preview`` / ``sandburg create --network|--allow|--deny``: the requests they
build and what they make of the answers, against ``NetFake`` through ``httpx.MockTransport``. The same calls
against the real server (policies enforced, records logged, ports proxied) are end-to-end tests.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

import sandburg
from sandburg import _core as core
from sandburg.cli import net as net_cli
from sandburg.cli.main import main
from tests.unit.test_sdk_core import KEY

BOX = "5f0c3c1e-0000-4000-8000-000000000001"
TOKEN = "tok/en+=="
EVENTS = [
    {"id": 3, "ts": "2025-01-01T00:00:01.000Z", "kind": "dns", "name": "pypi.org", "type": "A",
     "allowed": True, "rcode": "NOERROR", "answers": ["151.101.0.223", "151.101.64.223"], "ttl": 60},
    {"id": 4, "ts": "2025-01-01T00:00:02.000Z", "kind": "dns", "name": "evil.test", "type": "A",
     "allowed": False, "rcode": "NXDOMAIN", "answers": [], "ttl": 0},
    {"id": 5, "ts": "2025-01-01T00:00:03.000Z", "kind": "allow", "proto": "tcp", "dst": "151.101.0.223",
     "dport": 443, "sport": 40000},
    {"id": 6, "ts": "2025-01-01T00:00:04.000Z", "kind": "deny", "proto": "icmp", "dst": "1.1.1.1",
     "icmpType": 8, "reason": "not allowed"},
    {"id": 7, "ts": "2025-01-01T00:00:05.000Z", "kind": "conn", "proto": "tcp", "dst": "151.101.0.223",
     "dport": 443, "sport": 40000, "bytesOut": 517, "bytesIn": 4096, "packetsOut": 6, "packetsIn": 8},
]  # fmt: skip


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json={"statusCode": status, "message": message, "code": code})


class NetFake:
    """FAKE of the sandbox, network and preview-url routes for MockTransport: canned answers, the policy kept,
    the requests recorded. It checks the wire the SDK sends, not the server's behaviour."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.policy: dict[str, Any] = {"mode": "list", "allow": ["pypi.org"], "deny": []}
        self.events = list(EVENTS)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def box(self) -> dict[str, Any]:
        return {"id": BOX, "name": "web", "state": "started", "network": self.policy}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["authorization"] == f"Bearer {KEY}"
        route = (request.method, request.url.path.removeprefix("/api"))
        if route == ("POST", "/sandbox"):
            network = json.loads(request.content).get("network")
            if isinstance(network, str):
                self.policy = {"mode": network, "allow": [], "deny": []}
            elif network is not None:
                self.policy = network
            return httpx.Response(200, json=self.box())
        if route[1] not in (f"/sandbox/{BOX}", "/sandbox/web") and not route[1].startswith(
            f"/sandbox/{BOX}/"
        ):
            return _error(404, "SANDBOX_NOT_FOUND", "sandbox not found")
        tail = route[1].removeprefix(f"/sandbox/{BOX}").removeprefix("/sandbox/web")
        if (route[0], tail) == ("GET", ""):
            return httpx.Response(200, json=self.box())
        if (route[0], tail) == ("GET", "/network"):
            return httpx.Response(200, json=self.policy)
        if (route[0], tail) == ("PUT", "/network"):
            body = json.loads(request.content)
            if any(" " in e for e in body["allow"] + body["deny"]):
                return _error(400, "VALIDATION_ERROR", "bad entry")
            self.policy = body
            return httpx.Response(200, json=body)
        if (route[0], tail) == ("GET", "/network/log"):
            q = request.url.params
            since, kinds = int(q["since"]), q.get_list("kind")
            found = [e for e in self.events if e["id"] > since and (not kinds or e["kind"] in kinds)]
            found = found[-int(q["limit"]) :]
            return httpx.Response(
                200, json={"events": found, "nextSince": max([since, *(e["id"] for e in found)])}
            )
        if route[0] == "GET" and tail.startswith("/ports/") and tail.endswith("/preview-url"):
            port = tail.split("/")[2]
            url = f"http://fake/preview/{BOX}/{port}"
            return httpx.Response(200, json={"sandboxId": BOX, "url": url, "token": TOKEN})
        return _error(404, "NOT_FOUND", "no such route")


def _client(fake: NetFake) -> sandburg.Sandburg:
    return sandburg.Sandburg("http://fake/api", KEY, transport=httpx.MockTransport(fake))


# --------------------------------------------------------------------------------------- request building


def test_create_request_carries_the_network_policy() -> None:
    assert core.create_request(network="none").json == {"network": "none"}
    assert core.create_request(network="all").json == {"network": "all"}
    assert core.create_request(network={"allow": ("pypi.org", "*.github.com")}).json == {
        "network": {"mode": "list", "allow": ["pypi.org", "*.github.com"], "deny": []}
    }
    assert core.create_request(network={"mode": "all", "deny": ["10.0.0.0/8"]}).json == {
        "network": {"mode": "all", "allow": [], "deny": ["10.0.0.0/8"]}
    }
    assert "network" not in core.create_request().json


@pytest.mark.parametrize(
    ("network", "message"),
    [
        ("list", "'none', 'all' or a mapping"),
        ("None", "'none', 'all' or a mapping"),
        (["pypi.org"], "'none', 'all' or a mapping"),
        (True, "'none', 'all' or a mapping"),
        ({"allow": "pypi.org"}, "allow must be a list of str"),
        ({"deny": [1]}, "deny entries must be str"),
        ({"allow": ["a"], "mode": "open"}, "network mode must be one of none, all, list"),
        ({"allowed": ["a"]}, "keys mode, allow and deny, got allowed"),
    ],
)
def test_create_rejects_a_network_of_the_wrong_shape(network: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        core.create_request(network=network)


def test_network_requests() -> None:
    req = core.get_network_request("web")
    assert (req.method, req.path) == ("GET", "/sandbox/web/network")
    req = core.set_network_request("a/b", allow=iter(["x.org"]), deny=["1.2.3.4"], mode="list")
    assert (req.method, req.path) == ("PUT", "/sandbox/a%2Fb/network")
    assert req.json == {"mode": "list", "allow": ["x.org"], "deny": ["1.2.3.4"]}
    assert core.set_network_request("web", mode="none").json == {"mode": "none", "allow": [], "deny": []}
    req = core.network_log_request("web", limit=5, since=9, kinds=["dns", "deny"])
    assert (req.method, req.path) == ("GET", "/sandbox/web/network/log")
    assert req.params == (("limit", "5"), ("since", "9"), ("kind", "dns"), ("kind", "deny"))
    assert core.network_log_request("web").params == (("limit", "100"), ("since", "0"))
    assert core.network_log_request("web", kinds="conn").params[-1] == ("kind", "conn")  # one kind alone
    req = core.preview_url_request("web", 8080)
    assert (req.method, req.path) == ("GET", "/sandbox/web/ports/8080/preview-url")
    with httpx.Client(base_url="http://fake/api") as http:
        url = core.build_http_request(http, core.network_log_request("web", kinds=["dns", "conn"])).url
    assert str(url) == "http://fake/api/sandbox/web/network/log?limit=100&since=0&kind=dns&kind=conn"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: core.set_network_request("w", allow="pypi.org"), "allow must be a list of str"),
        (lambda: core.set_network_request("w", deny=[b"x"]), "deny entries must be str"),
        (lambda: core.set_network_request("w", mode="block"), "mode must be one of"),
        (lambda: core.network_log_request("w", limit=0), "limit must be an integer of at least 1"),
        (lambda: core.network_log_request("w", since=-1), "since must be an integer of at least 0"),
        (lambda: core.network_log_request("w", limit=True), "limit must be an integer"),
        (lambda: core.network_log_request("w", kinds=["dns", "http"]), "kinds are dns, allow, deny, conn"),
        (lambda: core.preview_url_request("w", 0), "port must be an integer from 1 to 65535"),
        (lambda: core.preview_url_request("w", 65536), "port must be"),
        (lambda: core.preview_url_request("w", "80"), "port must be"),
    ],
)
def test_bad_arguments_raise_value_error(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------------ models


def test_models_decode_the_wire_form() -> None:
    info = sandburg.SandboxInfo.from_json({"id": "i", "network": {"mode": "list", "allow": ["a", 1]}})
    assert info.network_policy == sandburg.NetworkPolicy("list", ("a",), ())
    assert sandburg.SandboxInfo.from_json({"id": "i"}).network_policy is None  # an older server
    assert sandburg.SandboxInfo.from_json({"id": "i", "network": None}).network_policy is None
    assert sandburg.SandboxInfo.from_json({"id": "i", "network": {"allow": []}}).network_policy is None
    policy = sandburg.NetworkPolicy.from_json({"mode": "all", "allow": None, "deny": ["10.0.0.0/8"]})
    assert (
        policy == sandburg.NetworkPolicy("all", (), ("10.0.0.0/8",))
        and policy.mode == sandburg.NetworkMode.ALL
    )
    assert policy.to_json() == {"mode": "all", "allow": [], "deny": ["10.0.0.0/8"]}
    with pytest.raises(sandburg.UnexpectedResponseError, match="without a 'mode'"):
        sandburg.NetworkPolicy.from_json({"allow": []})

    log = sandburg.NetworkLog.from_json({"events": EVENTS, "nextSince": 7})
    assert len(log) == 5 and log.next_since == 7 and [e.id for e in log] == [3, 4, 5, 6, 7]
    event = log.events[-1]
    assert (event.id, event.ts, event.kind) == (7, "2025-01-01T00:00:05.000Z", "conn")
    assert event.data["bytesIn"] == 4096 and event.get("dport") == 443 and event.get("nope", "-") == "-"
    assert "id" not in event.data and "kind" not in event.data
    hash(event)  # frozen and usable in a set, data aside
    # without nextSince: the last id, or the since asked for
    assert sandburg.NetworkLog.from_json({"events": EVENTS[:2]}).next_since == 4
    assert sandburg.NetworkLog.from_json({"events": []}, since=12).next_since == 12
    with pytest.raises(sandburg.UnexpectedResponseError, match="integer 'id'"):
        sandburg.NetworkLog.from_json({"events": [{"ts": "x", "kind": "dns"}]})
    with pytest.raises(sandburg.UnexpectedResponseError):
        sandburg.NetworkLog.from_json([])

    preview = sandburg.PreviewUrl.from_json(
        {"sandboxId": BOX, "url": "http://h/preview/x/80", "token": TOKEN}, 80
    )
    assert (preview.sandbox_id, preview.port) == (BOX, 80)
    assert preview.headers == {"x-daytona-preview-token": TOKEN}
    assert preview.authenticated_url == "http://h/preview/x/80?token=tok%2Fen%2B%3D%3D"
    assert TOKEN not in repr(preview)
    assert sandburg.PreviewUrl("http://h/p?a=1", "t").authenticated_url == "http://h/p?a=1&token=t"
    with pytest.raises(sandburg.UnexpectedResponseError, match="'url' and a 'token'"):
        sandburg.PreviewUrl.from_json({"url": "http://h/p"})


# ------------------------------------------------------------------------------------------------ clients


def test_sync_client() -> None:
    fake = NetFake()
    with _client(fake) as sb:
        box = sb.create(network={"allow": ["pypi.org"], "deny": ["10.0.0.0/8"]})
        assert fake.body()["network"] == {"mode": "list", "allow": ["pypi.org"], "deny": ["10.0.0.0/8"]}
        assert box.network_policy == sandburg.NetworkPolicy("list", ("pypi.org",), ("10.0.0.0/8",))
        assert isinstance(box.network, sandburg.Network)
        assert box.network.get() == box.network_policy
        assert fake.requests[-1].url.path == f"/api/sandbox/{BOX}/network"

        policy = box.network.update(allow=["*.github.com"])
        assert policy == sandburg.NetworkPolicy("list", ("*.github.com",), ()) == box.network_policy
        assert (fake.requests[-1].method, fake.body()) == (
            "PUT",
            {"mode": "list", "allow": ["*.github.com"], "deny": []},
        )
        assert box.network.block_all().mode == "none" and fake.body()["mode"] == "none"
        assert box.network.allow_all().mode == "all" and box.network_policy.mode == "all"
        box.refresh()  # a refresh keeps the namespace and takes the server's policy
        assert isinstance(box.network, sandburg.Network) and box.network_policy.mode == "all"
        with pytest.raises(sandburg.BadRequestError, match="bad entry") as info:
            box.network.update(allow=["not a name"])
        assert info.value.code == "VALIDATION_ERROR" and box.network_policy.mode == "all"

        log = box.network.log(kinds=["dns"], limit=10)
        assert [e.get("name") for e in log] == ["pypi.org", "evil.test"]
        assert log.next_since == 4
        assert fake.requests[-1].url.params.get_list("kind") == ["dns"]
        assert [e.kind for e in box.network.log(since=log.next_since)] == ["allow", "deny", "conn"]

        preview = box.preview_url(3000)
        assert fake.requests[-1].url.path == f"/api/sandbox/{BOX}/ports/3000/preview-url"
        assert (preview.url, preview.token, preview.port) == (f"http://fake/preview/{BOX}/3000", TOKEN, 3000)

        sent = len(fake.requests)
        for bad in (
            lambda: box.network.update(allow="pypi.org"),
            lambda: box.network.update(mode="closed"),
            lambda: box.network.log(kinds=["http"]),
            lambda: box.preview_url(70000),
            lambda: sb.create(network="list"),
        ):
            with pytest.raises(ValueError):
                bad()
        assert len(fake.requests) == sent  # nothing was sent


def test_async_client_sends_the_same() -> None:
    sync_fake, async_fake = NetFake(), NetFake()

    def calls_sync() -> list[Any]:
        with _client(sync_fake) as sb:
            box = sb.create(network="none")
            return [
                box.network.get(), box.network.update(allow=["a.org"], deny=["b.org"]), box.network.block_all(),
                box.network.allow_all(), box.network.log(limit=2, kinds=["conn", "deny"]), box.preview_url(80),
                box.network_policy,
            ]  # fmt: skip

    async def calls_async() -> list[Any]:
        async with sandburg.AsyncSandburg(
            "http://fake/api", KEY, transport=httpx.MockTransport(async_fake)
        ) as sb:
            box = await sb.create(network="none")
            assert isinstance(box.network, sandburg.AsyncNetwork)
            return [
                await box.network.get(), await box.network.update(allow=["a.org"], deny=["b.org"]),
                await box.network.block_all(), await box.network.allow_all(),
                await box.network.log(limit=2, kinds=["conn", "deny"]), await box.preview_url(80),
                box.network_policy,
            ]  # fmt: skip

    assert asyncio.run(calls_async()) == calls_sync()
    assert [(r.method, str(r.url), r.content) for r in async_fake.requests] == [
        (r.method, str(r.url), r.content) for r in sync_fake.requests
    ]
    assert json.loads(sync_fake.requests[0].content) == {"network": "none"}


# ---------------------------------------------------------------------------------------------------- CLI


@pytest.fixture
def fake() -> NetFake:
    return NetFake()


@pytest.fixture
def run(fake: NetFake, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI over the fake; returns (exit code, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv), client_factory=lambda url: _client(fake))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_create_network_options(run: Any, fake: NetFake) -> None:
    assert run("create", "--network", "none")[:2] == (0, BOX + "\n")
    assert fake.body()["network"] == "none"
    assert run("create", "--allow", "pypi.org", "--allow", "*.github.com", "--deny", "1.2.3.4")[0] == 0
    assert fake.body()["network"] == {
        "mode": "list",
        "allow": ["pypi.org", "*.github.com"],
        "deny": ["1.2.3.4"],
    }
    assert run("create", "--deny", "10.0.0.0/8")[0] == 0
    assert fake.body()["network"] == {"mode": "list", "allow": [], "deny": ["10.0.0.0/8"]}
    assert run("create")[0] == 0 and "network" not in fake.body()
    sent = len(fake.requests)
    code, _, err = run("create", "--network", "all", "--allow", "pypi.org")
    assert code == 2 and "cannot go with --network all" in err
    code, _, err = run("create", "--network", "list")
    assert code == 2 and "invalid choice" in err
    assert len(fake.requests) == sent


def test_cli_info_shows_the_policy(run: Any, fake: NetFake) -> None:
    fake.policy = {"mode": "list", "allow": ["pypi.org", "*.github.com"], "deny": ["1.2.3.4"]}
    assert "network:   list (allow pypi.org, *.github.com; deny 1.2.3.4)\n" in run("info", "web")[1]
    fake.policy = {"mode": "none", "allow": [], "deny": []}
    assert "network:   none\n" in run("info", "web")[1]


def test_cli_net_show_and_set(run: Any, fake: NetFake) -> None:
    assert run("net", "show", "web") == (0, "mode:  list\nallow: pypi.org\ndeny:  -\n", "")
    assert json.loads(run("net", "show", "web", "--json")[1]) == fake.policy
    code, out, _ = run("net", "set", "web", "--allow", "a.org", "--allow", "*.b.org", "--deny", "10.0.0.0/8")
    assert code == 0 and out == "mode:  list\nallow: a.org, *.b.org\ndeny:  10.0.0.0/8\n"
    assert fake.body() == {"mode": "list", "allow": ["a.org", "*.b.org"], "deny": ["10.0.0.0/8"]}
    assert run("net", "set", "web", "--mode", "none", "--json")[0] == 0
    assert fake.body() == {"mode": "none", "allow": [], "deny": []}
    code, _, err = run("net", "set", "web", "--allow", "no good")
    assert (code, err) == (1, "error: bad entry (VALIDATION_ERROR)\n")
    sent = len(fake.requests)
    code, _, err = run("net", "set", "web")
    assert code == 2 and "give --allow, --deny or --mode" in err
    assert run("net", "set", "web", "--mode", "open")[0] == 2
    assert all(r.method != "PUT" for r in fake.requests[sent:])
    assert run("net", "show", "ghost")[0] == 1


def test_cli_net_log(run: Any, fake: NetFake) -> None:
    code, out, _ = run("net", "log", "web")
    assert code == 0
    assert out.splitlines() == [
        "2025-01-01T00:00:01.000Z  dns    pypi.org A -> 151.101.0.223, 151.101.64.223 ttl=60",
        "2025-01-01T00:00:02.000Z  dns    evil.test A (NXDOMAIN) ttl=0 [blocked]",
        "2025-01-01T00:00:03.000Z  allow  tcp 151.101.0.223:443",
        "2025-01-01T00:00:04.000Z  deny   icmp 1.1.1.1 icmp-type=8 (not allowed)",
        "2025-01-01T00:00:05.000Z  conn   tcp 151.101.0.223:443 out=517B/6p in=4096B/8p",
    ]
    assert run("net", "log", "web", "--limit", "2", "--kind", "dns", "--kind", "conn")[0] == 0
    params = fake.requests[-1].url.params
    assert (params["limit"], params.get_list("kind")) == ("2", ["dns", "conn"])
    code, out, _ = run("net", "log", "web", "--json", "--kind", "deny")
    assert [json.loads(line) for line in out.splitlines()] == [EVENTS[3]]
    assert run("net", "log", "web", "--kind", "http")[0] == 2
    assert run("net", "log", "web", "--limit", "0")[0] == 2


def test_cli_net_log_follow_polls_with_next_since(
    run: Any, fake: NetFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.events = EVENTS[:2]
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 1:
            fake.events = EVENTS[:4]  # two new records by the next poll
        elif len(naps) == 3:
            raise KeyboardInterrupt  # Ctrl-C

    monkeypatch.setattr(net_cli, "_sleep", sleep)
    code, out, err = run("net", "log", "web", "--follow")
    assert (code, err) == (0, "")
    assert [line.split()[1] for line in out.splitlines()] == ["dns", "dns", "allow", "deny"]
    logs = [r.url.params for r in fake.requests if r.url.path.endswith("/network/log")]
    assert [p["since"] for p in logs] == ["0", "4", "6"]
    assert naps == [net_cli.FOLLOW_INTERVAL] * 3


def test_cli_preview(run: Any, fake: NetFake) -> None:
    code, out, _ = run("preview", "web", "8080")
    url = f"http://fake/preview/{BOX}/8080"
    assert code == 0 and out.splitlines() == [
        f"url:     {url}",
        f"token:   {TOKEN}",
        f"browser: {url}?token=tok%2Fen%2B%3D%3D",
        f"curl -H 'x-daytona-preview-token: {TOKEN}' {url}/",
    ]
    assert fake.requests[-1].url.path == f"/api/sandbox/{BOX}/ports/8080/preview-url"
    data = json.loads(run("preview", "web", "8080", "--json")[1])
    assert data == {
        "sandboxId": BOX,
        "port": 8080,
        "url": url,
        "token": TOKEN,
        "authenticatedUrl": f"{url}?token=tok%2Fen%2B%3D%3D",
    }
    assert run("preview", "web", "0")[0] == 2 and run("preview", "web", "http")[0] == 2
