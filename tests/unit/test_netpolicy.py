"""The egress policy's parsing and name matching (node/netpolicy.py): what the resolver and the rules obey."""

from __future__ import annotations

import pytest

from sandburg.node.netpolicy import Policy, PolicyError


def test_entries_are_split_into_names_and_cidrs_normalised() -> None:
    p = Policy.build(
        "list", ["API.OpenAI.com.", "*.anewera.ch", "10.20.0.0/16", "10.20.0.7"], ["10.20.9.1/24"]
    )
    assert p.allow_domains == ("*.anewera.ch", "api.openai.com")
    assert p.allow_cidrs == ("10.20.0.0/16", "10.20.0.7/32")
    assert p.deny_cidrs == ("10.20.9.0/24",)
    assert Policy.from_json(p.to_json()) == p


def test_wildcards_match_strict_subdomains_only() -> None:
    p = Policy.build("list", ["*.wild.test", "exact.test"])
    assert (
        p.allows_name("sub.wild.test") and p.allows_name("a.b.wild.test") and p.allows_name("SUB.WILD.TEST.")
    )
    for name in ("wild.test", "wild.test.evil.test", "evilwild.test", "sub.exact.test", "exact.test.evil"):
        assert not p.allows_name(name), name
    assert p.allows_name("exact.test")


def test_deny_wins_and_modes() -> None:
    p = Policy.build("list", ["*.corp.test"], ["secret.corp.test"])
    assert p.allows_name("wiki.corp.test") and not p.allows_name("secret.corp.test")
    assert not Policy.build("none", ["x.test"]).allows_name("x.test")
    everything = Policy.build("all", deny=["blocked.test"])
    assert everything.allows_name("anything.test") and not everything.allows_name("blocked.test")


@pytest.mark.parametrize(
    "entry",
    [
        "",
        " ",
        "-bad.test",
        "a..b",
        "http://x.test",
        "x.test/path",
        "::1/128",
        "2001:db8::/32",
        "a" * 64 + ".test",
    ],
)
def test_bad_entries_are_refused(entry: str) -> None:
    with pytest.raises(PolicyError):
        Policy.build("list", [entry])


def test_request_shapes_and_defaults() -> None:
    assert Policy.from_request(None, ("pypi.org",)) == Policy.build("list", ["pypi.org"])
    assert Policy.from_request(None).allow_domains == ()  # default: deny everything
    assert Policy.from_request("all").mode == "all"
    assert Policy.from_request({"allow": ["x.test"]}).allow_domains == ("x.test",)
    for bad in ("open", {"allow": "x.test"}, {"alow": []}, 5):
        with pytest.raises(PolicyError):
            Policy.from_request(bad)
    with pytest.raises(PolicyError):
        Policy.build("some")


def test_daytona_fields_map_onto_the_same_engine() -> None:
    assert Policy.from_daytona(True, "10.0.0.0/8", None) == Policy.build("none")
    p = Policy.from_daytona(None, "10.0.0.0/8, 192.168.1.0/24", "pypi.org,*.example.com")
    assert p is not None and p.mode == "list"
    assert p.allow_cidrs == ("10.0.0.0/8", "192.168.1.0/24")
    assert p.allow_domains == ("*.example.com", "pypi.org")
    assert Policy.from_daytona(None, None, None) is None
