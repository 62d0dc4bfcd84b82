"""Network policy and preview links through Daytona's Python SDK (scripts/dt_network.py), against the fake
internet of tests/_support/fakenet.py. The blocked checks aim only at its addresses, each with a control."""

from __future__ import annotations

from tests._support.fakenet import FakeNet
from tests.e2e.daytona_py.conftest import RunScript


def test_network_settings_and_preview_link(run_script: RunScript, fake_internet: FakeNet) -> None:
    out = run_script(
        "dt_network.py",
        fake_internet.addr("allowed.test"),
        fake_internet.addr("other.test"),
        fake_internet.subnet,
    )
    assert out["created_block_all"] == {"flag": True, "curl": 7}  # refused
    assert out["cidr_allow"] == {"flag": False, "curl": 0}
    assert out["domain_allow"] == {"allowed": 0, "other": 7}  # the CIDR list was replaced by the domain list
    assert out["block_again"] == {"curl": 6}  # no name resolves
    assert out["preview"] == {
        "status": 200,
        "body": "daytona-preview\n",
        "without_token": 401,
        "has_token": True,
    }
