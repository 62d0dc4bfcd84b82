"""The secret service: an organization's secrets (set, list, get, delete), the references sandboxes hold, and the
values injected into each toolbox process (docs/secrets.md).

Values live in a `SecretBackend` (secretstore.py) and nowhere else: a sandbox row keeps only its references (env
name -> secret name), resolved again at every process start, so a rotation reaches a running sandbox's next command
and snapshots, images, build logs and events never see a value. Every route that starts a process in a sandbox asks
`for_exec` for the env to add and the `Redactor` that masks those values in the output it returns.
"""

from __future__ import annotations

import builtins
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from .._codes import ErrorCode
from .db import Image, Sandbox
from .errors import ApiError
from .redact import Redactor
from .secretcrypto import DecryptError
from .secretstore import SecretBackend, SecretMeta

log = logging.getLogger("sandburg.server")

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE_BYTES = 64 * 1024
MAX_REFERENCES = 100

# what CreateSandbox.secrets accepts: names (env name = secret name), Daytona's one {ENV: name} object per secret,
# or one mapping {ENV: name}
RawReferences = list[str | dict[str, str]] | dict[str, str]


@dataclass(frozen=True)
class Injection:
    """The secret env of one process and the redactor of its output."""

    env: Mapping[str, str]
    redactor: Redactor

    def merged(self, envs: Mapping[str, str] | None) -> dict[str, str] | None:
        """The env to send with the process: the secrets, under what the request itself sets."""
        if not self.env:
            return dict(envs) if envs is not None else None
        return {**self.env, **(envs or {})}


NO_SECRETS = Injection({}, Redactor())


def check_name(name: str, what: str = "secret name") -> str:
    if not NAME.match(name):
        raise ApiError(
            ErrorCode.INVALID_SECRET,
            f"{what} {name[:140]!r}: letters, digits and _, not starting with a digit, at most 128 characters",
        )
    return name


def check_value(value: str) -> bytes:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(ErrorCode.INVALID_SECRET, "value: not valid text (a lone surrogate)") from None
    if not raw or "\0" in value:
        raise ApiError(ErrorCode.INVALID_SECRET, "value: must be non-empty and without NUL characters")
    if len(raw) > MAX_VALUE_BYTES:
        raise ApiError(
            ErrorCode.SECRET_TOO_LARGE, f"value: {len(raw)} bytes; at most {MAX_VALUE_BYTES} bytes (64 KiB)"
        )
    return raw


def parse_references(raw: RawReferences | None) -> dict[str, str]:
    """Env name -> secret name from a create's `secrets`, validated (names only: existence is checked later)."""
    if raw is None:
        return {}
    pairs: list[tuple[str, str]] = []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    else:
        for item in raw:
            pairs.extend([(item, item)] if isinstance(item, str) else item.items())
    refs: dict[str, str] = {}
    for env_name, secret in pairs:
        check_name(env_name, "secrets: env name")
        check_name(secret, "secrets: secret name")
        if refs.get(env_name, secret) != secret:
            raise ApiError(ErrorCode.INVALID_SECRET, f"secrets: env name {env_name!r} given twice")
        refs[env_name] = secret
    if len(refs) > MAX_REFERENCES:
        raise ApiError(ErrorCode.INVALID_SECRET, f"secrets: at most {MAX_REFERENCES} per sandbox")
    return refs


class SecretService:
    def __init__(self, sessions: sessionmaker[Session], backend: SecretBackend) -> None:
        self.sessions = sessions
        self.backend = backend
        self.audit: Any = (
            None  # the audit log (audit.py): each injection is recorded, names and versions only
        )
        # held while a create checks its secrets exist and writes its row, and while a delete checks no row
        # references the secret and deletes it: a secret is never deleted under a sandbox that uses it
        self._guard = threading.Lock()

    # -- the API ---------------------------------------------------------------------------------------------
    def set(self, org_id: str, name: str, value: str) -> SecretMeta:
        check_name(name)
        return self.backend.put(org_id, name, check_value(value))

    def get(self, org_id: str, name: str) -> SecretMeta:
        meta = self.backend.meta(org_id, check_name(name))
        if meta is None:
            raise ApiError(ErrorCode.SECRET_NOT_FOUND, f"secret {name!r} not found")
        return meta

    def list(self, org_id: str) -> builtins.list[SecretMeta]:
        return self.backend.list(org_id)

    def delete(self, org_id: str, name: str) -> SecretMeta:
        """Refused (409 SECRET_IN_USE) while any sandbox of the organization references the secret."""
        meta = self.get(org_id, name)
        with self._guard:
            users = self.users(org_id, name)
            if users:
                more = f" and {len(users) - 5} more" if len(users) > 5 else ""
                raise ApiError(
                    ErrorCode.SECRET_IN_USE,
                    f"secret {name!r} is used by sandbox(es) {', '.join(users[:5])}{more}: delete them first",
                )
            if not self.backend.delete(org_id, name):
                raise ApiError(ErrorCode.SECRET_NOT_FOUND, f"secret {name!r} not found")
        return meta

    def users(self, org_id: str, name: str) -> builtins.list[str]:
        """Names of the organization's sandboxes that reference the secret `name`."""
        with self.sessions() as s:
            rows = s.execute(select(Sandbox.name, Sandbox.secrets).where(Sandbox.organization_id == org_id))
            return sorted(n for n, refs in rows if name in (refs or {}).values())

    # -- sandbox create --------------------------------------------------------------------------------------
    def references_for_create(
        self, org_id: str, raw: RawReferences | None, env: Mapping[str, str], image: str
    ) -> dict[str, str]:
        """The references a new sandbox keeps: those asked for, else (`secrets` absent) those of the sandbox a
        state snapshot `image` was taken from, so forks and restores keep getting current values."""
        if raw is not None:
            refs = parse_references(raw)
            clash = sorted(set(refs) & set(env))
            if clash:
                raise ApiError(
                    ErrorCode.INVALID_SECRET,
                    f"secrets: {', '.join(clash)} also set in env; set it in one place",
                )
            return refs
        return self._inherited(org_id, image)

    def _inherited(self, org_id: str, image: str) -> dict[str, str]:
        with self.sessions() as s:
            snap = s.scalars(
                select(Image).where(
                    Image.organization_id == org_id, Image.name == image, Image.kind == "state"
                )
            ).first()
            if snap is None:
                return {}
            src: dict[str, Any] = snap.source or {}
            if isinstance(src.get("secrets"), dict):  # recorded by the snapshot itself
                return {str(k): str(v) for k, v in src["secrets"].items()}
            sid = (src.get("sandbox") or {}).get("id")
            box = s.get(Sandbox, sid) if isinstance(sid, str) else None
            if box is None or box.organization_id != org_id:
                return {}
            return dict(box.secrets or {})

    @contextmanager
    def holding(self, org_id: str, refs: Mapping[str, str]) -> Iterator[None]:
        """Check every referenced secret exists (404 SECRET_NOT_FOUND otherwise) and keep deletes out until the
        block (which writes the sandbox row) ends."""
        if not refs:
            yield
            return
        with self._guard:
            known = {m.name for m in self.backend.list(org_id)}
            missing = sorted(set(refs.values()) - known)
            if missing:
                raise ApiError(ErrorCode.SECRET_NOT_FOUND, f"secret(s) not found: {', '.join(missing)}")
            yield

    # -- process start ---------------------------------------------------------------------------------------
    def for_exec(
        self, org_id: str, refs: Mapping[str, str], sandbox_id: str | None = None, *, audit: bool = True
    ) -> Injection:
        """The current values of a sandbox's references, as env, and their redactor; with `audit`, the use is
        recorded (secret names and versions: never a value)."""
        if not refs:
            return NO_SECRETS
        try:
            values = self.backend.values(org_id, set(refs.values()))
        except DecryptError as exc:
            log.error("a secret of organization %s cannot be decrypted: %s", org_id, exc)
            raise ApiError(ErrorCode.INTERNAL_ERROR, f"a secret cannot be decrypted: {exc}") from exc
        missing = sorted(set(refs.values()) - set(values))
        if missing:
            raise ApiError(ErrorCode.SECRET_NOT_FOUND, f"secret(s) not found: {', '.join(missing)}")
        env = {env_name: values[name].decode() for env_name, name in refs.items()}
        if audit and self.audit is not None and self.audit.enabled:
            versions = {m.name: m.version for m in self.backend.list(org_id) if m.name in values}
            used = [{"env": e, "name": n, "version": versions.get(n)} for e, n in sorted(refs.items())]
            self.audit.record("secret", sandbox_id, {"op": "inject", "secrets": used}, tenant=org_id)
        return Injection(env, Redactor(values.values()))
