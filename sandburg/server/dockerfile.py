"""Parse the Dockerfile subset that Daytona's `Image` builder emits (`buildInfo.dockerfileContent`).

The grammar follows Docker's own reader (docs/daytona-images-wire.md lists what the SDKs emit):

* Physical lines are joined by a trailing `\\` (spaces after it allowed) with nothing in between; blank
  lines and `#` comment lines inside a continued instruction are dropped. A `#` only starts a comment
  at the beginning of a line. `# syntax=` is ignored; `# escape=` other than `\\` is refused.
* Instruction names are case-insensitive. Leading `--flag[=value]` words are flags of FROM/RUN/COPY/ADD.
* RUN/CMD/ENTRYPOINT: a valid JSON array of strings is the exec form; anything else is the shell form
  and stays untouched (the shell does quoting and `$VAR`). CMD/ENTRYPOINT shell form -> /bin/sh -c.
* ENV/LABEL/ARG/WORKDIR/USER/COPY/ADD/EXPOSE and FROM are shell-lexed like Docker does: `'...'` is
  literal, `"..."` and bare words honour `\\` escapes, and `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR-x}`,
  `${VAR:+x}`, `${VAR+x}` expand from earlier ENV/ARG values (ENV wins) over the base image's env.
  Unset variables expand to "" as in Docker, so pass `base_env` (the pulled image's config Env) to get
  `ENV PATH=/x:$PATH` right: parse once for `base`, pull, parse again with its env.
* Refused with a DockerfileError naming the line: multi-stage builds (`FROM x AS y`, a second FROM,
  `COPY --from`), heredocs, ADD from a URL, RUN/FROM flags, sources escaping the context, and the
  instructions Sandburg does not build (VOLUME, SHELL, HEALTHCHECK, ONBUILD, STOPSIGNAL). LABEL, EXPOSE
  and MAINTAINER are accepted as metadata the builder may ignore.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Dockerfile", "DockerfileError", "Instruction", "parse"]

METADATA_OPS = frozenset({"LABEL", "EXPOSE", "MAINTAINER"})
_BUILD_OPS = frozenset({"RUN", "ENV", "ARG", "WORKDIR", "COPY", "ADD", "USER", "ENTRYPOINT", "CMD"})
_UNSUPPORTED_OPS = frozenset({"VOLUME", "SHELL", "HEALTHCHECK", "ONBUILD", "STOPSIGNAL"})
_COPY_FLAGS = frozenset({"chown", "chmod", "link"})
_CONTINUATION = re.compile(r"\\[ \t]*$")
_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEREDOC = re.compile(r"<<-?(['\"]?)[A-Za-z_][A-Za-z0-9_]*\1")
_FLAG = re.compile(r"--(\S*)\s*")
_URL = re.compile(r"^(https?://|git@|git://|ssh://)", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    """One instruction after FROM.

    `args` by op: RUN (shell command,) or the argv when `exec_form`; ENV/LABEL ("K", "V", "K2", "V2", ...);
    ARG ("NAME", "NAME2=default", ...) as declared, defaults expanded; COPY/ADD (*sources, dest);
    USER (user,); WORKDIR (path,); ENTRYPOINT/CMD argv (shell form -> ("/bin/sh", "-c", cmd));
    EXPOSE the port specs; MAINTAINER (text,).
    """

    op: str
    args: tuple[str, ...]
    line: int
    exec_form: bool = False
    flags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Dockerfile:
    """The FROM image reference and everything after it."""

    base: str
    instructions: tuple[Instruction, ...]


class DockerfileError(ValueError):
    """The Dockerfile is malformed or uses something Sandburg does not build."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"Dockerfile line {line}: {message}")
        self.line = line
        self.message = message


def parse(text: str, *, base_env: Mapping[str, str] | None = None) -> Dockerfile:
    """Parse `text`; `base_env` is the base image's environment, used only for `$VAR` expansion."""
    env: dict[str, str] = dict(base_env or {})
    global_args: dict[str, str] = {}  # ARGs before FROM: visible in FROM only, unless redeclared
    args: dict[str, str] = {}
    base: str | None = None
    out: list[Instruction] = []
    last_line = 1
    for line, op, rest in _logical_lines(text):
        last_line = line
        flags, rest = _split_flags(line, op, rest)
        if op == "FROM":
            if base is not None:
                raise DockerfileError(line, "a second FROM (multi-stage build) is not supported")
            base = _parse_from(line, rest, global_args)
            continue
        if op not in _BUILD_OPS | METADATA_OPS:
            if op in _UNSUPPORTED_OPS:
                raise DockerfileError(line, f"{op} is not supported")
            raise DockerfileError(line, f"unknown instruction {op}")
        if base is None:
            if op != "ARG":
                raise DockerfileError(line, f"{op} before FROM")
            _parse_arg(line, rest, global_args, {}, dict(global_args))
            continue
        vars_ = {**args, **env}
        if op == "ARG":
            out.append(Instruction(op, _parse_arg(line, rest, args, global_args, vars_), line))
            continue
        ins = _parse_instruction(line, op, rest, flags, vars_)
        if op == "ENV":
            env.update(zip(ins.args[::2], ins.args[1::2], strict=True))
        out.append(ins)
    if base is None:
        raise DockerfileError(last_line, "no FROM instruction")
    return Dockerfile(base, tuple(out))


def _logical_lines(text: str) -> list[tuple[int, str, str]]:
    """(start line, upper-case op, rest) per instruction; continuations joined, comments dropped."""
    result: list[tuple[int, str, str]] = []
    current: str | None = None
    start = 0
    directives_allowed = True
    for number, raw in enumerate(text.splitlines(), start=1):
        physical = raw.rstrip("\r")
        stripped = physical.strip()
        if directives_allowed:
            directive = _DIRECTIVE.match(stripped)
            if directive and directive.group(1).lower() == "escape" and directive.group(2) != "\\":
                raise DockerfileError(number, f"escape={directive.group(2)} is not supported")
            directives_allowed = bool(directive)
        if stripped.startswith("#") or (not stripped and current is None):
            continue
        if not stripped:  # a blank line inside a continued instruction, which Docker drops
            continue
        continued = _CONTINUATION.search(physical)
        segment = physical[: continued.start()] if continued else physical
        if current is None:
            current, start = segment, number
        else:
            current += segment
        if not continued:
            result.append(_split_op(start, current))
            current = None
    if current is not None:
        result.append(_split_op(start, current))
    return result


def _split_op(line: int, logical: str) -> tuple[int, str, str]:
    parts = logical.strip().split(None, 1)
    return line, parts[0].upper(), parts[1].strip() if len(parts) > 1 else ""


def _split_flags(line: int, op: str, rest: str) -> tuple[tuple[tuple[str, str], ...], str]:
    if op not in ("FROM", "RUN", "COPY", "ADD"):
        return (), rest
    flags: list[tuple[str, str]] = []
    while flag := _FLAG.match(rest):
        rest = rest[flag.end() :]
        name, _, value = flag.group(1).partition("=")
        if op in ("COPY", "ADD") and name == "from":
            raise DockerfileError(line, f"{op} --from (multi-stage build) is not supported")
        if op not in ("COPY", "ADD") or name not in _COPY_FLAGS:
            raise DockerfileError(line, f"{op} flag --{name} is not supported")
        flags.append((name, value))
    return tuple(flags), rest


def _parse_from(line: int, rest: str, global_args: Mapping[str, str]) -> str:
    words = [_lex(line, w, global_args) for w in _raw_words(line, rest)]
    if len(words) == 3 and words[1].lower() == "as":
        raise DockerfileError(line, "FROM ... AS (multi-stage build) is not supported")
    if len(words) != 1 or not words[0]:
        raise DockerfileError(line, "FROM takes exactly one image reference")
    return words[0]


def _parse_arg(
    line: int, rest: str, args: dict[str, str], global_args: Mapping[str, str], vars_: Mapping[str, str]
) -> tuple[str, ...]:
    decls: list[str] = []
    words = _raw_words(line, rest)
    if not words:
        raise DockerfileError(line, "ARG requires a name")
    for word in words:
        name, eq, raw = word.partition("=")
        if not _NAME.fullmatch(name):
            raise DockerfileError(line, f"invalid ARG name {name!r}")
        if eq:
            args[name] = _lex(line, raw, vars_)
            decls.append(f"{name}={args[name]}")
        else:
            if name in global_args:  # `ARG NAME` inside the stage takes the global default
                args[name] = global_args[name]
            decls.append(name)
    return tuple(decls)


def _parse_instruction(
    line: int, op: str, rest: str, flags: tuple[tuple[str, str], ...], vars_: Mapping[str, str]
) -> Instruction:
    if not rest:
        raise DockerfileError(line, f"{op} requires an argument")
    if op in ("RUN", "CMD", "ENTRYPOINT"):
        argv = _json_argv(rest)
        if argv is not None:
            if op == "RUN" and not argv:
                raise DockerfileError(line, "RUN requires a command")
            return Instruction(op, argv, line, exec_form=True)
        if op == "RUN":
            _refuse_heredoc(line, op, rest)
            return Instruction(op, (rest,), line)
        return Instruction(op, ("/bin/sh", "-c", rest), line)
    if op in ("ENV", "LABEL"):
        return Instruction(op, _parse_pairs(line, op, rest, vars_), line)
    if op in ("WORKDIR", "USER", "MAINTAINER"):
        value = _lex(line, rest, vars_) if op != "MAINTAINER" else rest
        if not value:
            raise DockerfileError(line, f"{op} requires an argument")
        return Instruction(op, (value,), line)
    if op == "EXPOSE":
        return Instruction(op, tuple(_lex(line, w, vars_) for w in _raw_words(line, rest)), line)
    return _parse_copy(line, op, rest, flags, vars_)


def _parse_copy(
    line: int, op: str, rest: str, flags: tuple[tuple[str, str], ...], vars_: Mapping[str, str]
) -> Instruction:
    argv = _json_argv(rest)
    if argv is not None:
        paths = tuple(_lex(line, a, vars_, quotes=False) for a in argv)
    else:
        _refuse_heredoc(line, op, rest)
        paths = tuple(_lex(line, w, vars_) for w in _raw_words(line, rest))
    if len(paths) < 2:
        raise DockerfileError(line, f"{op} requires at least one source and a destination")
    *sources, dest = paths
    if len(sources) > 1 and not dest.endswith("/"):
        raise DockerfileError(line, f"{op} with several sources needs a destination ending in /")
    for source in sources:
        if op == "ADD" and _URL.match(source):
            raise DockerfileError(line, f"ADD from a URL is not supported: {source}")
        # sources are relative to the merged context even when absolute (the TS SDK emits /abs/path)
        relative = posixpath.normpath(source.replace("\\", "/").lstrip("/") or ".")
        if relative == ".." or relative.startswith("../"):
            raise DockerfileError(line, f"{op} source {source!r} is outside the build context")
    expanded = tuple((name, _lex(line, value, vars_)) for name, value in flags)
    return Instruction(op, paths, line, flags=expanded)


def _parse_pairs(line: int, op: str, rest: str, vars_: Mapping[str, str]) -> tuple[str, ...]:
    words = _raw_words(line, rest)
    if "=" not in words[0]:  # legacy `ENV key value...`: the whole rest of the line is the value
        value = rest[len(words[0]) :].strip()
        if not value:
            raise DockerfileError(line, f"{op} {words[0]} needs a value (use {op} {words[0]}=value)")
        return (_lex(line, words[0], vars_), _lex(line, value, vars_))
    pairs: list[str] = []
    for word in words:
        key, eq, value = word.partition("=")
        if not eq:
            raise DockerfileError(line, f"{op} expects key=value, got {word!r}")
        key = _lex(line, key, vars_)
        if not key:
            raise DockerfileError(line, f"{op} names can not be blank")
        pairs += [key, _lex(line, value, vars_)]
    return tuple(pairs)


def _refuse_heredoc(line: int, op: str, rest: str) -> None:
    try:
        words = _raw_words(line, rest)
    except DockerfileError:  # unbalanced quotes in a RUN are the shell's business, not ours
        words = rest.split()
    if any(_HEREDOC.match(word) for word in words):
        raise DockerfileError(line, f"{op} with a heredoc is not supported")


def _json_argv(rest: str) -> tuple[str, ...] | None:
    """The exec-form argv if `rest` is a JSON array of strings, else None (Docker falls back to shell)."""
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return None
    return tuple(value)


def _raw_words(line: int, text: str) -> list[str]:
    """Whitespace-separated words with quotes and escapes kept (Docker's parseWords)."""
    words: list[str] = []
    word: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if not quote and ch.isspace():
            if word:
                words.append("".join(word))
                word = []
        elif ch == "\\" and quote != "'" and i + 1 < len(text):
            word += text[i : i + 2]
            i += 1
        else:
            if quote == ch:
                quote = ""
            elif not quote and ch in "'\"":
                quote = ch
            word.append(ch)
        i += 1
    if quote:
        raise DockerfileError(line, f"unterminated {quote} quote")
    if word:
        words.append("".join(word))
    return words


def _lex(line: int, text: str, vars_: Mapping[str, str], *, quotes: bool = True) -> str:
    """One word with quotes removed and `$VAR`s expanded (Docker's ProcessWord)."""
    out: list[str] = []
    i = 0
    quote = ""
    while i < len(text):
        ch = text[i]
        nxt = text[i + 1] if i + 1 < len(text) else ""
        if quotes and quote != "'" and ch == "\\" and nxt:
            if quote == '"' and nxt not in '"$\\':
                out.append(ch)
            else:
                out.append(nxt)
                i += 1
        elif not quotes and ch == "\\" and nxt == "$":
            out.append("$")
            i += 1
        elif quotes and ch in "'\"" and quote in ("", ch):
            quote = "" if quote else ch
        elif ch == "$" and quote != "'":
            value, i = _expand(line, text, i, vars_)
            out.append(value)
            continue
        else:
            out.append(ch)
        i += 1
    if quote:
        raise DockerfileError(line, f"unterminated {quote} quote")
    return "".join(out)


def _expand(line: int, text: str, i: int, vars_: Mapping[str, str]) -> tuple[str, int]:
    """Expand the `$` reference at text[i]; returns (value, index after it)."""
    if text.startswith("${", i):
        end, depth, j = -1, 1, i + 2
        while j < len(text):
            if text.startswith("${", j):
                depth, j = depth + 1, j + 2
                continue
            if text[j] == "}":
                depth -= 1
                if depth == 0:
                    end = j
                    break
            j += 1
        if end < 0:
            raise DockerfileError(line, f"missing }} in {text!r}")
        body = text[i + 2 : end]
        name_match = _NAME.match(body)
        name = name_match.group(0) if name_match else ""
        if not name:
            raise DockerfileError(line, f"bad substitution ${{{body}}}")
        modifier = body[len(name) :]
        value = vars_.get(name)
        if not modifier:
            return value or "", end + 1
        op = modifier[:2] if modifier[:2] in (":-", ":+") else modifier[:1]
        if op not in (":-", ":+", "-", "+"):
            raise DockerfileError(line, f"unsupported substitution ${{{body}}}")
        word = _lex(line, modifier[len(op) :], vars_)
        is_set = value is not None and (value != "" or not op.startswith(":"))
        if op.endswith("-"):
            return (value or "") if is_set else word, end + 1
        return word if is_set else "", end + 1
    name_match = _NAME.match(text, i + 1)
    if not name_match:
        return "$", i + 1
    return vars_.get(name_match.group(0), ""), name_match.end()
