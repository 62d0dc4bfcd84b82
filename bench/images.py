"""Images (issue 6): a cold build of the minimal example, `sandburg up` with nothing to do and after an env
change, a pull from a registry on loopback, and create→first exec of sandboxes from the pulled image per tier.

Every image, sandbox and `up` spec the phase makes is recorded before it is made, and removed on the way out,
also after an error or Ctrl-C (which is held until the removal is done). An image still being built cannot be
deleted: the cleanup waits for its build to end first.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.density import deferred_sigint
from bench.measure import NETWORK, Budget, ms, now, run_loop
from sandburg import ImageInUseError, ImageNotFoundError, SandboxNotFoundError, Sandburg
from sandburg.cli.up import _allow, _steps
from sandburg.specfile import load_spec

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "minimal"
UP_TARGET_MS = 1000.0  # issue 6: `sandburg up` with nothing to do answers in under a second
COLD_MARKER = "SANDBURG_BENCH_COLD"
BUILD_WAIT_S = 300  # the cleanup waits at most this long for a build in flight before deleting its image
BUILD_ISOLATION = "container"  # what `sandburg up` builds with (the SDK's default)
NO_TIER = "-"  # a pull makes no sandbox

# metric key -> the label printed in the table, in table order
IMAGE_METRICS: dict[str, str] = {
    "cold_build": "cold build of the minimal example (request → active)",
    "up_warm": "sandburg up, nothing changed (CLI process)",
    "up_env_change": "  sandburg up after an env change (layers cached)",
    "pull": "pull from a registry on loopback (busybox, 3 layers)",
    "pulled_create_to_first_exec": "create→first exec from the pulled image",
}
IMAGE_TARGETS_P50_MS: dict[str, float] = {"up_warm": UP_TARGET_MS}
DONE_RE = re.compile(r"^#(\d+) DONE ([0-9.]+)s$", re.M)


@dataclass
class ImagesResult:
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # metric -> tier -> ms
    build_steps_s: list[dict[str, float]] = field(default_factory=list)  # per cold build: "#i kind" -> s
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: str, tier: str, value_ms: float) -> None:
        self.samples.setdefault(metric, {}).setdefault(tier, []).append(value_ms)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class ImageBenchError(Exception):
    pass


class ImagesBench:
    """``cli_env``: SANDBURG_API_URL / SANDBURG_API_KEY for the `sandburg` CLI subprocesses (the same server)."""

    def __init__(
        self, sb: Sandburg, budget: Budget, labels: dict[str, str], log: Callable[[str], None],
        cli_env: dict[str, str], run_id: str,
    ) -> None:  # fmt: skip
        self.sb, self.budget, self.labels, self.log = sb, budget, labels, log
        self.cli_env, self.run_id = {**os.environ, **cli_env}, run_id
        self.images: list[str] = []  # made or being made, not yet deleted
        self.specs: list[Path] = []  # `up` specs whose sandbox may exist

    def run(self, res: ImagesResult, runs: int, create_runs: int, tiers: list[str], registry: bool) -> None:
        """``runs`` cold builds and `up` calls; ``create_runs`` creates per tier from the pulled image, which
        needs a registry on this host reachable by the server (``registry``)."""
        work = tempfile.mkdtemp(prefix="sandburg-bench-images-")
        try:
            phases: list[tuple[str, Callable[[], None]]] = [
                ("cold build", lambda: self.cold_build_phase(res, runs)),
                ("up", lambda: self.up_phase(res, runs, Path(work))),
                ("pull", lambda: self.pull_phase(res, create_runs, tiers, Path(work), registry)),
            ]
            for what, phase in phases:
                if self.budget.expired():
                    res.notes.append(f"{what}: time budget spent before it started")
                    continue
                try:
                    phase()
                except Exception as exc:  # one phase failing leaves the others to run
                    res.errors.append(f"{what}: {type(exc).__name__}: {exc}")
                    self.log(f"  ! images {what}: {type(exc).__name__}: {exc}")
        finally:
            with deferred_sigint():
                self.cleanup(res)
                shutil.rmtree(work, ignore_errors=True)

    def _loop(self, res: ImagesResult, phase: str, count: int, step: Callable[[int], None]) -> None:
        run_loop(self.budget, self.log, res.errors, res.notes, phase, count, step)

    # -- cold build ---------------------------------------------------------------------------------------
    def cold_build_phase(self, res: ImagesResult, runs: int) -> None:
        spec_path = EXAMPLE / "sandburg.yaml"
        spec = load_spec(spec_path)
        with contextlib.redirect_stdout(io.StringIO()):  # _steps says "==> files ..." as `up` does
            steps = _steps(self.sb, spec, str(EXAMPLE))  # uploads the context once: the same digest each run
        base, allow = spec.image or "debian-12", _allow(spec)
        self.log(f"[images] cold build of {spec_path.relative_to(ROOT)}: {runs} runs, {len(steps)} steps")

        def record(i: int) -> None:
            # the config in force is part of every layer's key (server/buildplan.py): a unique env var set
            # first makes every layer of the example's steps new, without adding a step that makes a layer
            marker = {"kind": "env", "args": [f"{COLD_MARKER}={uuid.uuid4().hex}"]}
            name = f"bench-{self.run_id}/cold-{i}"
            chunks: list[str] = []
            self.images.append(name)
            t0 = now()
            info = self.sb.images.build(
                name,
                [marker, *steps],
                base=base,
                isolation=BUILD_ISOLATION,
                allow=allow,
                on_log=chunks.append,
            )
            elapsed = now() - t0
            self._delete_image(name)
            text = "".join(chunks)
            if info.state != "active" or "... CACHED" in text:
                raise ImageBenchError(f"{name} is {info.state}, or not cold:\n{text[-1000:]}")
            res.add("cold_build", BUILD_ISOLATION, ms(elapsed))
            done = DONE_RE.findall(text)
            res.build_steps_s.append({f"#{n} {_kind(steps, int(n) - 2)}": float(s) for n, s in done})

        self._loop(res, "cold build", runs, record)

    # -- sandburg up ------------------------------------------------------------------------------------------
    def up_phase(self, res: ImagesResult, runs: int, work: Path) -> None:
        name = f"bench-up-{self.run_id}"
        spec = work / "minimal" / "sandburg.yaml"
        shutil.copytree(EXAMPLE, spec.parent)
        spec.write_text(spec.read_text().replace("name: minimal\n", f"name: {name}\n", 1))
        tier = load_spec(spec).isolation or "container"
        self.log(f"[images] sandburg up {name}: 1 cold (not recorded), {runs} unchanged, {runs} env changes")
        self.specs.append(spec)
        self.images.append(f"up/{name}")
        self._up(spec, "==> ready")

        def unchanged(_i: int) -> None:
            res.add("up_warm", tier, ms(self._up(spec, "is up to date")))

        self._loop(res, "up, nothing changed", runs, unchanged)

        def env_change(i: int) -> None:
            text = re.sub(
                r"GREETING: [^,}]+", f"GREETING: bench-{i}-{uuid.uuid4().hex[:8]}", spec.read_text()
            )
            spec.write_text(text)
            t0 = now()
            out = self._run_cli("up", spec, "spec changed: replacing")
            elapsed = now() - t0
            if " DONE " in out:  # only the env changed: a rebuilt layer would measure something else
                raise ImageBenchError(f"a layer was rebuilt after an env change:\n{out[-1000:]}")
            res.add("up_env_change", tier, ms(elapsed))

        self._loop(res, "up after an env change", runs, env_change)

    def _up(self, spec: Path, expect: str) -> float:
        t0 = now()
        self._run_cli("up", spec, expect)
        return now() - t0

    def _run_cli(self, command: str, spec: Path, expect: str) -> str:
        """`sandburg COMMAND -f SPEC` as a user runs it (a new Python process); its stdout, which must hold
        ``expect``."""
        r = subprocess.run(
            [sys.executable, "-m", "sandburg.cli.main", command, "-f", str(spec)],
            env=self.cli_env, capture_output=True, text=True, timeout=self.budget.call_timeout(300),
            check=False,
        )  # fmt: skip
        if r.returncode != 0 or expect not in r.stdout:
            raise ImageBenchError(
                f"sandburg {command} exited {r.returncode} without {expect!r}: {(r.stdout + r.stderr)[-1000:]}"
            )
        return r.stdout

    # -- pull, and sandboxes from the pulled image --------------------------------------------------------------
    def pull_phase(self, res: ImagesResult, runs: int, tiers: list[str], work: Path, registry: bool) -> None:
        if not registry:
            res.notes.append("pull: skipped with --api-url (that server may not reach this host's loopback)")
            return
        from tests._support.registry import build_busybox_image, push
        from tests._support.registry import registry as local_registry

        name = f"bench-{self.run_id}/pulled"
        with local_registry() as reg:
            image = build_busybox_image(str(work / "layout"))
            ref = push(image, reg.host, f"bench/busy-{self.run_id}:1")
            self.log(f"[images] pull {ref} as {name}")
            self.images.append(name)
            t0 = now()
            info = self.sb.images.pull(ref, name=name, insecure=True)
            elapsed = now() - t0
            if info.state != "active":
                raise ImageBenchError(f"pulled image {name} is {info.state}")
            res.add("pull", NO_TIER, ms(elapsed))
        for tier in tiers:
            self.log(f"[images] [{tier}] create→first exec from {name}: 1 warm-up + {runs} recorded")

            def warm(_i: int, tier: str = tier) -> None:
                self._create_once(name, tier)

            def record(_i: int, tier: str = tier) -> None:
                res.add("pulled_create_to_first_exec", tier, self._create_once(name, tier))

            self._loop(res, f"pulled create warm-up [{tier}]", 1, warm)
            self._loop(res, f"pulled create [{tier}]", runs, record)

    def _create_once(self, image: str, tier: str) -> float:
        """create → exec("true") in ms, like the latency table's row; the box is deleted afterwards, untimed."""
        t0 = now()
        box = self.sb.create(
            isolation=tier, image=image, labels=self.labels, network=NETWORK,
            timeout=self.budget.call_timeout(300),
        )  # fmt: skip
        try:
            r = box.process.exec("true")
            elapsed = now() - t0
            if r.exit_code != 0:
                raise ImageBenchError(f"`true` exited {r.exit_code}: {r.result[:200]!r}")
        finally:
            box.delete()
        return ms(elapsed)

    # -- cleanup ------------------------------------------------------------------------------------------------
    def cleanup(self, res: ImagesResult) -> None:
        """`down` every `up` spec (the sandbox directly if that fails), then delete every image made."""
        for spec in self.specs:
            try:
                self._run_cli("down", spec, "")
            except Exception as exc:
                res.errors.append(f"cleanup: sandburg down -f {spec}: {type(exc).__name__}: {exc}")
                name = load_spec(spec).name
                try:
                    self.sb.get(name).delete()
                except SandboxNotFoundError:
                    pass
                except Exception as exc2:
                    res.errors.append(f"cleanup: delete sandbox {name}: {type(exc2).__name__}: {exc2}")
        self.specs.clear()
        for name in list(self.images):
            try:
                self._delete_image(name)
            except Exception as exc:
                res.errors.append(f"cleanup: delete image {name}: {type(exc).__name__}: {exc}")
        try:
            mine = (f"bench-{self.run_id}/", f"up/bench-up-{self.run_id}")
            left = [i.name for i in self.sb.images.list() if i.name.startswith(mine)]
            if left:
                res.errors.append(f"cleanup: images still listed after the run: {left}")
        except Exception as exc:
            res.errors.append(f"cleanup: listing images: {type(exc).__name__}: {exc}")

    def _delete_image(self, name: str) -> None:
        deadline = time.monotonic() + BUILD_WAIT_S
        while True:
            try:
                self.sb.images.delete(name)
                break
            except ImageNotFoundError:  # never made (the request failed), or already gone
                break
            except ImageInUseError:  # being built (e.g. the client stopped following it): wait for its end
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.images.remove(name)


def _kind(steps: list[dict[str, Any]], index: int) -> str:
    """The kind of the example's step at ``index`` (the builds put the marker first: log step #i+2)."""
    return str(steps[index]["kind"]) if 0 <= index < len(steps) else "?"
