"""A Dockerfile (the subset Daytona's `Image` builder emits) as a build plan on the cached builder.

`dockerfile.parse` reads the text; here each instruction becomes a build step: `RUN` a `run` layer, `ENV`,
`WORKDIR`, `USER`, `ENTRYPOINT` and `CMD` config steps, `ARG`, `LABEL`, `EXPOSE` and `MAINTAINER` nothing (ARG is
already substituted by the parser). `COPY`/`ADD` need the build context, which Daytona's SDK uploads to S3: that
upload is not served yet, so they are refused with a typed 501 (docs/daytona-compat.md).
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex

from .._codes import ErrorCode
from .buildplan import Plan, Step
from .compat import IMAGE_ALIASES
from .dockerfile import DockerfileError, parse
from .errors import ApiError

IGNORED = ("ARG", "LABEL", "EXPOSE", "MAINTAINER")
CONTEXT_NOT_YET = (
    "COPY/ADD of local files (build context) is not supported yet: the Daytona SDK uploads the context to "
    "S3 over HTTPS, which sandburg does not serve yet; put the files in the sandbox after it starts "
    "(sandbox.fs.upload_file) or in a sandburg.yaml `files:` entry"
)


def plan_name(text: str, context_hashes: list[str] | None) -> str:
    """The template name a create-from-Dockerfile builds into: the same text gives the same (cached) image."""
    h = hashlib.sha256(text.encode())
    for c in context_hashes or []:
        h.update(b"\0" + c.encode())
    return f"dockerfile-{h.hexdigest()[:20]}"


def plan_from_dockerfile(text: str, context_hashes: list[str] | None = None) -> Plan:
    """The plan for `text`; ApiError VALIDATION_ERROR (naming the line) or NOT_IMPLEMENTED for what is not
    supported."""
    try:
        df = parse(text)
    except DockerfileError as exc:
        raise ApiError(ErrorCode.VALIDATION_ERROR, f"buildInfo.dockerfileContent: {exc}") from exc
    if context_hashes:
        raise ApiError(ErrorCode.NOT_IMPLEMENTED, CONTEXT_NOT_YET)
    steps: list[Step] = []
    workdir = "/"
    for ins in df.instructions:
        label = f"Dockerfile line {ins.line}: {ins.op} {' '.join(ins.args)}"[:200]
        if ins.op in IGNORED:
            continue
        if ins.op in ("COPY", "ADD"):
            raise ApiError(ErrorCode.NOT_IMPLEMENTED, f"Dockerfile line {ins.line}: {CONTEXT_NOT_YET}")
        if ins.op == "RUN":
            cmd = shlex.join(ins.args) if ins.exec_form else ins.args[0]
            steps.append(Step("run", (cmd,), label))
        elif ins.op == "ENV":
            pairs = [f"{ins.args[i]}={ins.args[i + 1]}" for i in range(0, len(ins.args), 2)]
            steps.append(Step("env", tuple(pairs), label))
        elif ins.op == "WORKDIR":
            workdir = posixpath.normpath(posixpath.join(workdir, ins.args[0]))
            steps.append(Step("workdir", (workdir,), label))
        elif ins.op == "USER":
            steps.append(Step("user", (ins.args[0],), label))
        elif ins.op in ("ENTRYPOINT", "CMD"):
            steps.append(Step(ins.op.lower(), tuple(ins.args), label))
        else:
            raise ApiError(
                ErrorCode.VALIDATION_ERROR,
                f"Dockerfile line {ins.line}: {ins.op} is not supported by sandburg",
            )
    return Plan(IMAGE_ALIASES.get(df.base, df.base), tuple(steps))
