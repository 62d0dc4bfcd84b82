"""Secrets at rest (sandburg/server/secretcrypto.py, secretstore.py) and the masking of output (redact.py): no
server, no root."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import stat
from dataclasses import replace
from pathlib import Path

import pytest

from sandburg.server.db import make_engine, make_sessionmaker
from sandburg.server.migrate import upgrade
from sandburg.server.redact import Redactor
from sandburg.server.secretcrypto import (
    KEY_BYTES,
    DecryptError,
    MasterKey,
    MasterKeyError,
    decode_key,
    load_master_key,
)
from sandburg.server.secretstore import KEEP_VERSIONS, SqlSecretBackend

AAD = b"org\0id\0NAME\x001"


def key() -> MasterKey:
    return MasterKey(os.urandom(KEY_BYTES))


def test_seal_and_open_round_trip_without_plaintext_in_the_sealed_form() -> None:
    k = key()
    sealed = k.seal(b"sk-live-0123456789", AAD)
    assert k.open(sealed, AAD) == b"sk-live-0123456789"
    assert b"sk-live" not in sealed.ciphertext + sealed.wrapped_key + sealed.nonce
    assert len(sealed.wrapped_key) == KEY_BYTES + 8 and len(sealed.nonce) == 12
    # a fresh data key and nonce per value: the same value never seals to the same bytes
    again = k.seal(b"sk-live-0123456789", AAD)
    assert again.ciphertext != sealed.ciphertext and again.wrapped_key != sealed.wrapped_key
    assert str(k.key_id) in repr(k) and "sk" not in repr(k)


def test_the_wrong_master_key_fails_with_a_clear_error() -> None:
    sealed = key().seal(b"value", AAD)
    with pytest.raises(DecryptError, match="master key"):
        key().open(sealed, AAD)


def test_a_wrong_key_with_a_forged_key_id_fails_the_unwrap() -> None:
    k, other = key(), key()
    sealed = replace(k.seal(b"value", AAD), key_id=other.key_id)
    with pytest.raises(DecryptError, match="integrity"):
        other.open(sealed, AAD)


@pytest.mark.parametrize("field", ["ciphertext", "wrapped_key", "nonce"])
def test_tampering_is_detected(field: str) -> None:
    k = key()
    sealed = k.seal(b"a secret value", AAD)
    raw = bytearray(getattr(sealed, field))
    raw[len(raw) // 2] ^= 0x01
    with pytest.raises(DecryptError, match="integrity"):
        k.open(replace(sealed, **{field: bytes(raw)}), AAD)


def test_a_ciphertext_moved_to_another_row_does_not_decrypt() -> None:
    k = key()
    sealed = k.seal(b"value", AAD)
    with pytest.raises(DecryptError, match="integrity"):
        k.open(sealed, b"org\0id\0OTHER\x001")


def test_key_encodings() -> None:
    raw = os.urandom(KEY_BYTES)
    assert decode_key(raw.hex(), "x") == raw
    assert decode_key(base64.b64encode(raw).decode() + "\n", "x") == raw
    assert decode_key(base64.urlsafe_b64encode(raw).decode().rstrip("="), "x") == raw
    for bad in ("", "abc", base64.b64encode(raw[:16]).decode(), "zz" * KEY_BYTES):
        with pytest.raises(MasterKeyError, match="32-byte"):
            decode_key(bad, "SANDBURG_MASTER_KEY")
    with pytest.raises(MasterKeyError):
        MasterKey(raw[:31])


def test_master_key_file_is_generated_0600_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "master.key"
    k1, where = load_master_key(str(path), env={})
    assert where == str(path)
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == KEY_BYTES
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temporary file left
    k2, _ = load_master_key(str(path), env={})
    assert k2.key_id == k1.key_id


def test_env_key_wins_over_the_file(tmp_path: Path) -> None:
    raw = os.urandom(KEY_BYTES)
    k, where = load_master_key(str(tmp_path / "master.key"), env={"SANDBURG_MASTER_KEY": raw.hex()})
    assert where == "SANDBURG_MASTER_KEY" and k.key_id == MasterKey(raw).key_id
    assert not (tmp_path / "master.key").exists()


def test_a_text_key_file_is_accepted(tmp_path: Path) -> None:
    raw = os.urandom(KEY_BYTES)
    path = tmp_path / "k"
    path.write_text(raw.hex() + "\n")
    path.chmod(0o600)
    assert load_master_key(str(path), env={})[0].key_id == MasterKey(raw).key_id


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(os.urandom(KEY_BYTES))
    path.chmod(mode)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key(str(path), env={})


def test_a_key_file_of_the_wrong_length_or_a_symlink_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(os.urandom(KEY_BYTES - 1))
    path.chmod(0o600)
    with pytest.raises(MasterKeyError, match="32-byte"):
        load_master_key(str(path), env={})
    link = tmp_path / "link.key"
    link.symlink_to(path)
    with pytest.raises(MasterKeyError, match="cannot open"):
        load_master_key(str(link), env={})


def test_sql_backend_versions_and_ciphertext(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "db.sqlite"))
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO organizations (id, name, created_at) VALUES ('o1', 'o', '2026-01-01')"
        )
    k = key()
    store = SqlSecretBackend(sessions, k)
    assert store.put("o1", "TOKEN", b"first-value").version == 1
    assert store.put("o1", "TOKEN", b"second-value").version == 2
    assert store.values("o1", ["TOKEN", "MISSING"]) == {"TOKEN": b"second-value"}
    assert store.values("o2", ["TOKEN"]) == {}  # organizations do not see each other's secrets
    assert [m.name for m in store.list("o1")] == ["TOKEN"] and store.list("o2") == []
    for i in range(KEEP_VERSIONS + 3):
        store.put("o1", "TOKEN", f"v{i}-value".encode())
    with engine.connect() as conn:
        kept = conn.exec_driver_sql("SELECT count(*) FROM secret_versions").scalar()
    assert kept == KEEP_VERSIONS
    # another master key cannot read the store
    with pytest.raises(DecryptError):
        SqlSecretBackend(sessions, key()).values("o1", ["TOKEN"])
    assert store.delete("o1", "TOKEN") and not store.delete("o1", "TOKEN")
    engine.dispose()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("db.sqlite"))
    assert b"-value" not in data


def test_redaction_whole_and_streamed() -> None:
    r = Redactor([b"sk-SECRET-123", b"abc", b"hunter2"])  # "abc" is too short to be masked
    assert r.mask(b"key=sk-SECRET-123 abc hunter2!") == b"key=*** abc ***!"
    assert not Redactor([b"abc"]) and Redactor([b"abcd"])
    values = [b"sk-SECRET-123", b"aaaa", b"xyzxyzq"]
    r = Redactor(values)
    rnd = random.Random(7)
    for _ in range(2000):
        data = b"".join(
            rnd.choice([*values, b"a", b"sk-SE", b"xyz", b"\n", b"zz"]) for _ in range(rnd.randint(0, 8))
        )
        cuts = sorted(rnd.sample(range(len(data) + 1), min(len(data) + 1, rnd.randint(0, 5))))
        stream, out, prev = r.stream(), b"", 0
        for c in [*cuts, len(data)]:
            out += stream.feed(data[prev:c])
            prev = c
        assert out + stream.flush() == r.mask(data), data
    # a value fed one byte at a time is held back, then masked whole
    stream = r.stream()
    assert b"".join(stream.feed(bytes([b])) for b in b"<sk-SECRET-123>") + stream.flush() == b"<***>"


@pytest.mark.parametrize(
    "content, mode", [(os.urandom(KEY_BYTES), 0o644), (b"short", 0o600)], ids=["group-readable", "short"]
)
def test_the_server_refuses_to_start_with_a_bad_key_file(
    tmp_path: Path,
    content: bytes,
    mode: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before it touches anything: no database, no runtime."""
    from sandburg.server.app import create_app
    from sandburg.server.config import Settings

    monkeypatch.delenv("SANDBURG_MASTER_KEY", raising=False)
    path = tmp_path / "master.key"
    path.write_bytes(content)
    path.chmod(mode)
    app = create_app(Settings(data_dir=str(tmp_path / "data"), master_key_file=str(path)))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(MasterKeyError):
        asyncio.run(start())
    assert "cannot start: secrets master key" in caplog.text and str(path) in caplog.text
    assert not (tmp_path / "data").exists()


def test_sdk_and_cli_send_references_and_read_values(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from sandburg import _core
    from sandburg._secrets import set_request
    from sandburg.cli.main import build_parser
    from sandburg.cli.secret import read_value

    assert _core.create_request(secrets=["A", "B"]).json == {"secrets": ["A", "B"]}
    assert _core.create_request(secrets={"ENV": "A"}).json == {"secrets": {"ENV": "A"}}
    assert "secrets" not in (_core.create_request().json or {})
    with pytest.raises(TypeError):
        _core.create_request(secrets="A")
    assert (
        set_request("TOKEN", "v").json == {"value": "v"}
        and set_request("TOKEN", "v").path == "/secrets/TOKEN"
    )
    args = build_parser().parse_args(["create", "--secret", "A", "--secret", "GH=TOKEN"])
    assert dict(args.secret) == {"A": "A", "GH": "TOKEN"}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["create", "--secret", "=X"])
    monkeypatch.setattr("sys.stdin", io.StringIO("tok-en\n"))
    assert read_value(None) == "tok-en" and read_value("given") == "given"
