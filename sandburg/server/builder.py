"""Running a build plan: one build sandbox per build, one layer per filesystem step, every step cached.

The steps whose layer already exists are skipped (cache hits). The build sandbox starts from the last cached
layer, runs the remaining steps in order through its toolbox agent, and after each step its root is snapshotted
read-only into the layer store under the step's key (btrfs: 5 ms, no copy; the step's commands have exited, so the
snapshot is consistent). The sandbox is a normal sandbox of the building organization, labelled
`sandburg.io/build`, with the network policy of the build (the spec's allowlist plus the package sources): the
same isolation, limits and egress rules as any sandbox. A failed step stops the build; its partial changes were
never snapshotted, so nothing of it remains but the log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from .._codes import ErrorCode
from ..node.agent_client import AgentClientError
from ..node.node import Node
from ..node.runtime_layer import as_user_argv
from .buildplan import ImageConfig, Mirrors, Plan, Resolved, Step, commands
from .errors import ApiError
from .schemas import CreateSandbox, NetworkPolicyIn

log = logging.getLogger("sandburg.server")

BUILD_LABEL = "sandburg.io/build"
MAX_CONTEXT = 256 << 20


class BuildFailed(Exception):
    """A step failed: `code` is the API error code, the message names the step."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class BuildRequest:
    image_id: str
    organization_id: str
    plan: Plan
    resolved: Resolved
    parent_ref: str  # node ref of the base: a built-in name or layer:<key>
    isolation: str
    allow: tuple[str, ...]
    log_path: str


class Builder:
    def __init__(
        self,
        node: Node,
        create: Callable[[str, CreateSandbox, str], str],
        delete: Callable[[str, str], None],
        mirrors: Mirrors,
        context_dir: str,
        step_timeout: float,
    ) -> None:
        self.node = node
        self._create = create  # (org, request, node image ref) -> sandbox id
        self._delete = delete  # (org, sandbox id)
        self.mirrors = mirrors
        self.context_dir = context_dir
        self.step_timeout = step_timeout

    def context_path(self, digest: str) -> str:
        hexd = digest.removeprefix("sha256:")
        if len(hexd) != 64 or any(c not in "0123456789abcdef" for c in hexd):
            raise ApiError(ErrorCode.VALIDATION_ERROR, f"files: invalid context digest {digest!r}")
        return os.path.join(self.context_dir, hexd + ".tar")

    def run(self, req: BuildRequest) -> None:
        """Build every missing layer of `req`; raises BuildFailed. Appends to the build log as it goes."""
        layers = self.node.images.layers
        keys = req.resolved.keys
        with open(req.log_path, "a", buffering=1, encoding="utf-8", errors="replace") as out:
            missing = [i for i, k in enumerate(keys) if k and not layers.exists(k)]
            for i, step in enumerate(req.plan.steps):
                if not missing or i < missing[0]:
                    state = "CACHED" if step.makes_layer else "config"
                    out.write(f"#{i + 1} [{step.kind}] {step.describe()} ... {state}\n")
            if not missing:
                return
            first = missing[0]
            prior = [k for k in keys[:first] if k]
            start_ref = f"layer:{prior[-1]}" if prior else req.parent_ref
            allow = sorted({*req.allow, *self.mirrors.hosts()})
            create_req = CreateSandbox(
                name=f"build-{req.image_id[:8]}-{int(time.time() * 1000) % 100000}",
                isolation=req.isolation,  # type: ignore[arg-type]
                labels={BUILD_LABEL: req.image_id},
                network=NetworkPolicyIn(mode="list", allow=allow),
            )
            out.write(f"build sandbox from {start_ref} (egress allowed to {', '.join(allow)})\n")
            try:
                sid = self._create(req.organization_id, create_req, start_ref)
            except ApiError as exc:
                raise BuildFailed(
                    ErrorCode.IMAGE_BUILD_FAILED, f"the build sandbox did not start: {exc}"
                ) from exc
            try:
                for i in range(first, len(keys)):
                    step = req.plan.steps[i]
                    if not step.makes_layer:
                        out.write(f"#{i + 1} [{step.kind}] {step.describe()} ... config\n")
                        continue
                    t0 = time.monotonic()
                    out.write(f"#{i + 1} [{step.kind}] {step.describe()}\n")
                    self._run_step(sid, step, req.resolved.configs[i], out)
                    layers.snapshot_into(self.node.root_path(sid), keys[i])
                    out.write(f"#{i + 1} DONE {time.monotonic() - t0:.1f}s\n")
            finally:
                try:
                    self._delete(req.organization_id, sid)
                except ApiError as exc:
                    log.error("deleting build sandbox %s failed: %s", sid, exc)

    def _run_step(self, sid: str, step: Step, cfg: ImageConfig, out: IO[str]) -> None:
        stdin = None
        if step.kind == "files":
            path = self.context_path(step.args[1])
            try:
                with open(path, "rb") as fh:
                    stdin = fh.read(MAX_CONTEXT + 1)
            except FileNotFoundError:
                raise BuildFailed(
                    ErrorCode.IMAGE_BUILD_FAILED,
                    f"{step.describe()}: build context {step.args[1]} not uploaded",
                ) from None
        cmds = commands(step, self.mirrors)
        for j, cmd in enumerate(cmds, 1):
            which = ""
            if step.kind == "run":
                which = f" [{j}/{len(cmds)}] {cmd!r}"
                out.write(f"==> [{j}/{len(cmds)}] $ {cmd}\n")
            argv = None
            if cfg.user not in ("", "root", "0", "0:0"):  # USER: the step runs as that user, as in Docker
                argv = as_user_argv(cfg.user, ["/bin/sh", "-c", cmd])
            code = asyncio.run(self._exec(sid, cmd, argv, cfg, stdin, out))
            if code != 0:
                raise BuildFailed(
                    ErrorCode.IMAGE_BUILD_FAILED,
                    f"step {step.describe() if not which else step.kind}{which}: exit {code} (see the build log)"
                    + _hint(code),
                )

    async def _exec(
        self, sid: str, cmd: str, argv: list[str] | None, cfg: ImageConfig, stdin: bytes | None, out: IO[str]
    ) -> int:
        agent = self.node.agent(sid)
        workdir = cfg.workdir or "/"
        try:
            # the workdir may not exist yet (WORKDIR creates it, as in Docker)
            await agent.mkdir(workdir, parents=True)  # through the agent: the image may have no mkdir
            async with agent.exec_stream(
                None if argv else cmd, argv=argv, cwd=workdir, env=cfg.env or None, timeout=self.step_timeout, stdin=stdin is not None,
                max_output=1 << 40,
            ) as proc:  # fmt: skip
                if stdin is not None:
                    await proc.write_stdin(stdin)
                    await proc.close_stdin()
                async for _name, chunk in proc:
                    out.write(chunk.decode("utf-8", "replace"))
            res = proc.result
        except AgentClientError as exc:
            raise BuildFailed(ErrorCode.IMAGE_BUILD_FAILED, f"the build sandbox failed: {exc}") from exc
        if res.timed_out:
            out.write(f"\n(step timed out after {self.step_timeout:.0f}s)\n")
            return 124
        return res.exit_code


def _hint(code: int) -> str:
    if code == 127:
        return ": a command or tool is missing in the image"
    if code == 100:
        return ": apt-get failed (an unknown package?)"
    return ""
