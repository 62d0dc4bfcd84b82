"""Where the SDK finds its API URL and key.

Each setting is resolved on its own, first match wins:

1. the explicit argument (``Sandburg(api_url=..., api_key=...)``);
2. the environment: ``SANDBURG_API_URL`` / ``SANDBURG_API_KEY``;
3. ``$SANDBURG_DATA_DIR/credentials.json`` (data dir defaults to ``/var/lib/sandburg``), a JSON object with
   ``api_url`` and ``api_key``; the server writes it on first start;
4. for the URL only, ``http://127.0.0.1:3000/api``.

The credentials file is only read when the arguments and the environment leave something unresolved.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ._errors import ConfigurationError, CredentialsNotFoundError

__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_DATA_DIR",
    "ClientConfig",
    "credentials_path",
    "resolve_config",
]

DEFAULT_API_URL = "http://127.0.0.1:3000/api"
DEFAULT_DATA_DIR = "/var/lib/sandburg"
ENV_API_URL = "SANDBURG_API_URL"
ENV_API_KEY = "SANDBURG_API_KEY"
ENV_DATA_DIR = "SANDBURG_DATA_DIR"


@dataclass(frozen=True)
class ClientConfig:
    """The resolved connection settings (``api_url`` without a trailing slash)."""

    api_url: str
    api_key: str

    def __repr__(self) -> str:
        # never echo the key into logs or tracebacks
        return f"ClientConfig(api_url={self.api_url!r}, api_key='***')"


def credentials_path(env: Mapping[str, str] | None = None) -> Path:
    """The path of ``credentials.json`` under ``$SANDBURG_DATA_DIR`` (default ``/var/lib/sandburg``)."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_DATA_DIR) or DEFAULT_DATA_DIR) / "credentials.json"


def _read_credentials(path: Path) -> tuple[dict[str, str], str | None]:
    """The file's string values, plus why it could not be used (None when it was fine or absent)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        # typically a non-root user and the server's root-owned data dir: tell them, don't crash
        return {}, f"could not read {path}: {exc.strerror or exc}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigurationError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path} must hold a JSON object with 'api_url' and 'api_key'")
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str) and v}, None


def resolve_config(
    api_url: str | None = None, api_key: str | None = None, env: Mapping[str, str] | None = None
) -> ClientConfig:
    """Resolve the API URL and key (see the module docstring for the order).

    Raises :class:`CredentialsNotFoundError` when no key is found anywhere, and
    :class:`ConfigurationError` when ``credentials.json`` exists but is malformed.
    """
    env = os.environ if env is None else env
    url = api_url or env.get(ENV_API_URL) or None
    key = api_key or env.get(ENV_API_KEY) or None
    problem: str | None = None
    path = credentials_path(env)
    if url is None or key is None:
        stored, problem = _read_credentials(path)
        url = url or stored.get("api_url")
        key = key or stored.get("api_key")
    if key is None:
        hint = f" ({problem})" if problem else ""
        raise CredentialsNotFoundError(
            f"no API key found: pass api_key=..., set {ENV_API_KEY}, or provide {path} "
            f"(written by `sandburg server start`; set {ENV_DATA_DIR} to look elsewhere){hint}"
        )
    return ClientConfig(api_url=(url or DEFAULT_API_URL).rstrip("/"), api_key=key)
