"""The node bridge's fixed MAC address (sandburg/node/net.py): stable per bridge name, unicast, locally administered."""

from __future__ import annotations

from sandburg.node.net import bridge_mac


def test_bridge_mac_is_stable_unicast_and_local() -> None:
    mac = bridge_mac("sandburg0")
    assert mac == bridge_mac("sandburg0") != bridge_mac("sbt-1234")
    octets = [int(x, 16) for x in mac.split(":")]
    assert len(octets) == 6
    assert octets[0] & 0x01 == 0  # unicast
    assert octets[0] & 0x02 == 0x02  # locally administered
