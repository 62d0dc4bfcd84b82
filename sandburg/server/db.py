"""The store: SQLAlchemy models over SQLite (WAL). Every row belongs to an organization."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Organization(Base):
    __tablename__ = "organizations"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    # quotas (quotas.py): None = no limit
    max_sandboxes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_cpu: Mapped[int | None] = mapped_column(Integer, nullable=True)  # vCPU of sandboxes not stopped
    max_memory_mib: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the same, memory
    max_disk_mib: Mapped[int | None] = mapped_column(Integer, nullable=True)  # every sandbox's disk
    max_snapshots: Mapped[int | None] = mapped_column(Integer, nullable=True)  # images, templates, snapshots


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings; the key itself is only stored hashed
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16), default="admin")  # access.py: admin | member | read-only
    scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # None: every area of the role
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the key that made it
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)  # None: never
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Sandbox(Base):
    __tablename__ = "sandboxes"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_sandbox_org_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(20), index=True)
    error_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    isolation: Mapped[str] = mapped_column(String(20))
    image: Mapped[str] = mapped_column(String(200))
    cpu: Mapped[int] = mapped_column(Integer)
    memory_mib: Mapped[int] = mapped_column(Integer)
    disk_mib: Mapped[int] = mapped_column(Integer)
    env: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    labels: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    user: Mapped[str] = mapped_column(String(32), default="root")
    uid_slot: Mapped[int] = mapped_column(Integer, unique=True)
    public: Mapped[bool] = mapped_column(Boolean, default=False)
    network_block_all: Mapped[bool] = mapped_column(Boolean, default=False)
    ip: Mapped[str | None] = mapped_column(String(15), unique=True, nullable=True)  # on the node's subnet
    network: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # egress policy (node/netpolicy.py)
    # Daytona fields stored and echoed until the issues that enforce them land (network, lifecycle, volumes)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # env name -> secret name (docs/secrets.md): references only, values are resolved at each exec
    secrets: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Secret(Base):
    """A named secret of an organization; its values are `SecretVersion` rows, the highest `version` in use."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_secret_org_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)  # the latest
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class SecretVersion(Base):
    """One value of a secret, encrypted (secretcrypto.py): never the plaintext, never the data key unwrapped."""

    __tablename__ = "secret_versions"
    __table_args__ = (UniqueConstraint("secret_id", "version", name="uq_secret_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    secret_id: Mapped[str] = mapped_column(ForeignKey("secrets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    key_id: Mapped[str] = mapped_column(String(16))  # the master key that wrapped the data key
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Image(Base):
    """A named image of an organization: built here (`image`), a Daytona snapshot/template (`template`), or a
    sandbox's saved state (`state`, the snapshots issue). All share one namespace per organization.

    `layer` is its root in the layer store (node/layers.py); `layers` the chain of layer keys its build went
    through, kept as the build cache and as what garbage collection must not delete."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_image_org_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # image | template | state
    state: Mapped[str] = mapped_column(String(20))  # pending | building | active | error | inactive
    error_reason: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    source: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # what it was made from
    layer: Mapped[str | None] = mapped_column(String(64), nullable=True)
    layers: Mapped[list[str]] = mapped_column(JSON, default=list)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # env, workdir, user, entrypoint, cmd
    size_bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class Event(Base):
    """One record of the event pipeline (events.py): DNS answers, connection attempts, connections with bytes.

    No foreign key: a sandbox's record outlives the sandbox (an audit trail must)."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ts: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    organization_id: Mapped[str] = mapped_column(String(36), index=True)
    sandbox_id: Mapped[str] = mapped_column(String(36), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # dns | allow | deny | conn | ...
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AuditRecord(Base):
    """One record of the audit log (audit.py): a hash chain per organization, written by the server only.

    `seq` is global and assigned by the single writer; `prev_hash` is the hash of the organization's previous
    record, `hash` covers every other column (auditchain.py). No foreign keys: records outlive what they name."""

    __tablename__ = "audit_records"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(DateTime, index=True)
    organization_id: Mapped[str] = mapped_column(String(36), index=True)
    actor: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the API key's id
    type: Mapped[str] = mapped_column(String(16))
    sandbox_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The HMAC anchor of an organization's chain: its head, its length and where it starts (after pruning)."""

    __tablename__ = "audit_heads"
    organization_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    head_seq: Mapped[int] = mapped_column(Integer)
    head_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer)
    start_prev: Mapped[str] = mapped_column(String(64))  # prev_hash the first kept record must carry
    mac: Mapped[str] = mapped_column(String(64))


class AuditCursor(Base):
    """How far the audit writer has copied another table into the chain (`events`: the network records)."""

    __tablename__ = "audit_cursors"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer)


class Volume(Base):
    """A persistent volume of an organization: an encrypted ext4 filesystem in a file (node/volumes.py)."""

    __tablename__ = "volumes"
    __table_args__ = (UniqueConstraint("organization_id", "name", name="uq_volume_org_name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    state: Mapped[str] = mapped_column(String(20))  # creating | ready | error
    size_mib: Mapped[int] = mapped_column(Integer)
    error_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class SandboxVolume(Base):
    """A volume mounted in a sandbox. The foreign key to `volumes` has no ON DELETE: the store itself refuses
    to delete a volume that a sandbox (started or stopped) still mounts."""

    __tablename__ = "sandbox_volumes"
    sandbox_id: Mapped[str] = mapped_column(ForeignKey("sandboxes.id", ondelete="CASCADE"), primary_key=True)
    mount_path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    volume_id: Mapped[str] = mapped_column(ForeignKey("volumes.id"), index=True)
    subpath: Mapped[str] = mapped_column(String(1024), default="")
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    position: Mapped[int] = mapped_column(Integer, default=0)  # mount order: as given at create


def make_engine(db_path: str) -> Engine:
    os.makedirs(os.path.dirname(db_path), exist_ok=True)
    engine = create_engine(
        f"sqlite:///{db_path}",
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=20,  # lifecycle routes run in a 40-thread pool; each holds a connection only briefly
        max_overflow=20,
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(
            "PRAGMA synchronous=NORMAL"
        )  # WAL: a commit survives a process crash; fsync at checkpoints
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    # WAL (readers never block the writer) is a property of the database file: set it once, here. Setting it on
    # every new connection races with other connections and fails with "disk I/O error".
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=WAL")
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Any]:
    return sessionmaker(engine, expire_on_commit=False)
