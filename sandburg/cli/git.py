"""``sandburg git ID_OR_NAME ACTION ...``: git in a sandbox, through ``sandbox.git`` (docs/cli.md, docs/git.md).

A password or token is never an option (it would show in ``ps`` and in shell history): it comes from
``--password-stdin`` or ``$SANDBURG_GIT_PASSWORD``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from .._client import Git, Sandburg
from .._git import GitFileState, GitStatus

__all__ = ["add_parser", "format_status", "run"]

PASSWORD_ENV = "SANDBURG_GIT_PASSWORD"
_LETTERS: dict[str, str] = {
    GitFileState.UNMODIFIED: " ", GitFileState.UNTRACKED: "?", GitFileState.MODIFIED: "M",
    GitFileState.ADDED: "A", GitFileState.DELETED: "D", GitFileState.RENAMED: "R", GitFileState.COPIED: "C",
    GitFileState.UNMERGED: "U",
}  # fmt: skip


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _auth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--username", help="for HTTP basic auth (with a token, often any non-empty name)")
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help=f"read the password or token from stdin (else ${PASSWORD_ENV})",
    )


def add_parser(sub: Any) -> None:
    """Add ``git`` and its actions to the ``sandburg`` parser's subcommands."""
    p = sub.add_parser(
        "git",
        help="run git in a sandbox: clone, status, branches, commit, push, pull, ...",
        description="Git in a sandbox, with the image's git. PATH is the repository in the sandbox (relative: "
        f"from /workspace). Credentials: --username and --password-stdin or ${PASSWORD_ENV}; they are used for "
        "the one command and stored nowhere.",
    )
    p.add_argument("sandbox", metavar="ID_OR_NAME")
    acts = p.add_subparsers(dest="git_action", required=True, metavar="ACTION")

    a = acts.add_parser("clone", help="clone URL into PATH")
    a.add_argument("url", metavar="URL")
    a.add_argument("path", metavar="PATH")
    a.add_argument("--branch", metavar="B")
    a.add_argument("--commit", metavar="SHA", help="then a detached HEAD at this commit")
    a.add_argument("--depth", type=_positive_int, metavar="N", help="a shallow clone of N commits")
    _auth(a)
    for name, text in (("status", "branch, upstream and changed files"), ("branches", "local branches")):
        a = acts.add_parser(name, help=text)
        a.add_argument("path", metavar="PATH")
        a.add_argument("--json", action="store_true")
    a = acts.add_parser("log", help="commits reachable from HEAD, newest first")
    a.add_argument("path", metavar="PATH")
    a.add_argument("-n", "--limit", type=_positive_int, metavar="N")
    a.add_argument("--json", action="store_true")
    a = acts.add_parser("branch", help="create a branch and check it out (-d: delete it)")
    a.add_argument("path", metavar="PATH")
    a.add_argument("name", metavar="NAME")
    a.add_argument("-d", "--delete", action="store_true", help="delete the branch, merged or not")
    a = acts.add_parser("checkout", help="switch to a branch (a tag or commit: detached HEAD)")
    a.add_argument("path", metavar="PATH")
    a.add_argument("branch", metavar="BRANCH")
    a = acts.add_parser("add", help="stage files ('.' for everything)")
    a.add_argument("path", metavar="PATH")
    a.add_argument("files", nargs="+", metavar="FILE")
    a = acts.add_parser("commit", help="commit what is staged; prints the commit's hash")
    a.add_argument("path", metavar="PATH")
    a.add_argument("-m", "--message", required=True)
    a.add_argument("--author", required=True, metavar="NAME")
    a.add_argument("--email", required=True)
    a.add_argument("--allow-empty", action="store_true")
    for name, text in (("push", "push the current branch (or --branch)"), ("pull", "fetch and merge")):
        a = acts.add_parser(name, help=text)
        a.add_argument("path", metavar="PATH")
        a.add_argument("--remote", metavar="R", help="default origin")
        a.add_argument("--branch", metavar="B")
        if name == "push":
            a.add_argument("-u", "--set-upstream", action="store_true")
        _auth(a)


def _password(args: argparse.Namespace) -> str | None:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return os.environ.get(PASSWORD_ENV)


def _print(text: str) -> None:
    """A line whose file names that are not UTF-8 come out as their own bytes (as git prints them)."""
    data = (text + "\n").encode("utf-8", "surrogateescape")
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:
        sys.stdout.write(data.decode("utf-8", "replace"))
        return
    sys.stdout.flush()
    buffer.write(data)
    buffer.flush()


def _json(value: Any) -> None:
    data = (
        dataclasses.asdict(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type)
        else value
    )
    print(json.dumps(data, indent=2, sort_keys=True, default=str))  # ASCII: such bytes as \udcXX escapes


def format_status(st: GitStatus) -> str:
    """Like ``git status --short --branch``: ``## branch...upstream [ahead N, behind M]``, then ``XY name``."""
    head = f"## {st.current_branch}" + (" (detached)" if st.detached else "")
    if st.upstream:
        head += f"...{st.upstream}"
        counts = [f"{w} {n}" for w, n in (("ahead", st.ahead), ("behind", st.behind)) if n]
        head += f" [{', '.join(counts)}]" if counts else "" if st.branch_published else " [gone]"
    lines = [head]
    for f in st.file_status:
        xy = _LETTERS.get(f.staging, "?") + _LETTERS.get(f.worktree, "?")
        lines.append(f"{xy} {f.extra} -> {f.name}" if f.extra else f"{xy} {f.name}")
    return "\n".join(lines)


def run(args: argparse.Namespace, sb: Sandburg) -> int:
    """Run ``sandburg git``; errors propagate as the SDK's exceptions (main prints them)."""
    git: Git = sb.get(args.sandbox).git
    act, path = args.git_action, args.path
    if act == "clone":
        git.clone(
            args.url, path, branch=args.branch, commit_id=args.commit, depth=args.depth,
            username=args.username, password=_password(args),
        )  # fmt: skip
        _print(f"cloned into {path}")
    elif act == "status":
        st = git.status(path)
        if args.json:
            _json(st)
        else:
            _print(format_status(st))
    elif act == "branches":
        br = git.branches(path)
        if args.json:
            _json(br)
        else:
            _print("\n".join(f"{'*' if b == br.current else ' '} {b}" for b in br.branches))
    elif act == "log":
        commits = git.history(path, limit=args.limit)
        if args.json:
            _json([dataclasses.asdict(c) for c in commits])
            return 0
        for c in commits:
            when = c.timestamp.isoformat() if c.timestamp else "-"
            subject = c.message.splitlines()[0] if c.message else ""
            _print(f"{c.hash[:12]}  {when}  {c.author} <{c.email}>  {subject}")
    elif act == "branch":
        (git.delete_branch if args.delete else git.create_branch)(path, args.name)
    elif act == "checkout":
        git.checkout(path, args.branch)
    elif act == "add":
        git.add(path, args.files)
    elif act == "commit":
        print(git.commit(path, args.message, args.author, args.email, allow_empty=args.allow_empty))
    elif act == "push":
        git.push(
            path, args.username, _password(args), branch=args.branch, remote=args.remote,
            set_upstream=args.set_upstream,
        )  # fmt: skip
    elif act == "pull":
        git.pull(path, args.username, _password(args), branch=args.branch, remote=args.remote)
    return 0
