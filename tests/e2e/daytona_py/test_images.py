"""Daytona's `Image` builder and snapshot service through the official Python SDK (scripts/dt_images.py), on
sandburg's cached builder; the registry image is one the test assembled and serves on loopback."""

from __future__ import annotations

from tests.e2e.conftest import OciFixture
from tests.e2e.daytona_py.conftest import RunScript


def test_images_and_snapshots(run_script: RunScript, oci: OciFixture) -> None:
    out = run_script("dt_images.py", oci.ref, timeout=600)
    fi = out["from_image"]
    assert fi["state"] == "started"
    assert fi["stdout"][:4] == [fi["stdout"][0], "/srv/app", "test", "two words"], fi
    assert fi["stdout"][0].startswith("built-") and fi["log_has_steps"], fi
    assert out["cached"]["stdout"] == fi["stdout"][0]
    snap = out["snapshot"]
    assert snap["state"] == "active" and snap["get_id_matches"] and snap["listed"], snap
    assert snap["content"].startswith("tpl-") and snap["activate"] == "active" and snap["deleted"], snap
    assert out["pulled"]["state"] == "active" and "bin" in out["pulled"]["ls"], out["pulled"]
    assert "exit 9" in out["failing"]["message"], out["failing"]
    assert out["build_failed_listed"] == 1
    assert "not supported yet" in out["copy"]["message"], out["copy"]
    assert "no-such-image" in out["not_found"]["message"], out["not_found"]
