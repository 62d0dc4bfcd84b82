"""Server settings, read once from the environment (SANDBURG_*), with the defaults a single host wants."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

GIB_MIB = 1024


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"sandburg: {name} must be an integer, got {raw!r}") from None


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"sandburg: {name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SystemExit(f"sandburg: {name} must be positive, got {raw!r}")
    return value


def _host_memory_mib() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 4096


@dataclass
class Settings:
    data_dir: str = "/var/lib/sandburg"
    cache_dir: str = "/var/cache/sandburg"
    host: str = "127.0.0.1"
    port: int = 3000
    public_url: str | None = None  # base URL clients use; default: the one each request came in on
    cgroup_parent: str = "sandburg"
    images: tuple[str, ...] = ("busybox", "debian-12")
    default_image: str = "debian-12"
    default_isolation: str = "gvisor"
    default_cpu: int = 2
    default_memory_mib: int = 4 * GIB_MIB
    default_disk_mib: int = 10 * GIB_MIB
    max_cpu: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_memory_mib: int = field(default_factory=_host_memory_mib)
    max_disk_mib: int = 200 * GIB_MIB
    min_memory_mib: int = 64
    min_disk_mib: int = 64
    pids_limit: int = 2048
    exec_max_timeout: int = 3600  # seconds a toolbox command may run when the caller sets no timeout
    max_output_bytes: int = 10 * 1024 * 1024  # per command (exec) / per session command (both streams)
    run_limit_mib: int = 512  # the sandbox's run dir (agent socket, session logs), a quota'd subvolume
    agent_start_timeout: float = 30.0
    # networking (docs/network.md): the node's bridge, subnet, nftables table and name tag; the resolver's upstreams
    net_bridge: str = "sandburg0"
    net_subnet: str = "10.213.0.0/16"
    net_table: str = "sandburg"
    net_tag: str = "sb"
    dns_upstream: str = ""  # "ip[:port],..."; empty: the host's /etc/resolv.conf
    network_default_allow: tuple[str, ...] = ()  # what a sandbox created without a `network` may reach
    # image builds (docs/images.md): package sources ("" = the public registries), isolation, per-step timeout
    apt_mirror: str = ""  # a flat repository URL: `deb [trusted=yes] URL ./`
    pip_index: str = ""  # a PEP 503 index URL
    npm_registry: str = ""
    build_isolation: str = "container"
    build_step_timeout: int = 1800
    master_key_file: str = ""  # the secrets' master key (docs/secrets.md); default <data_dir>/master.key
    # the audit log (docs/audit.md): on/off (off only for benchmarks), retention (0 = keep all), its HMAC key file
    audit: bool = True
    audit_retention_days: int = 90
    audit_key_file: str = ""  # default <data_dir>/audit.key
    activity: bool = True  # host-side recording of what sandboxes' processes exec and write (docs/audit.md)
    # lifecycle automation (docs/lifecycle.md): server defaults in minutes, for sandboxes that set none
    auto_stop_minutes: int = 15  # idle → stopped; 0 = never
    auto_archive_minutes: int = 7 * 24 * 60  # stopped → archived; 0 = never
    auto_delete_minutes: int = -1  # stopped → deleted; -1 = never, 0 = right after a stop
    reaper_interval: float = 30.0  # seconds between two passes of the reaper
    test_mode: bool = False  # allows SANDBURG_CRASH_AT and SANDBURG_TEST_CLOCK; refused otherwise
    crash_at: str | None = None
    test_clock: bool = False  # an adjustable clock (POST /api/_test/clock), for lifecycle tests

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "sandburg.db")

    @property
    def credentials_path(self) -> str:
        return os.path.join(self.data_dir, "credentials.json")

    @property
    def preview_key_path(self) -> str:
        return os.path.join(self.data_dir, "preview.key")

    @property
    def master_key_path(self) -> str:
        return self.master_key_file or os.path.join(self.data_dir, "master.key")

    @property
    def audit_key_path(self) -> str:
        return self.audit_key_file or os.path.join(self.data_dir, "audit.key")

    @property
    def pid_path(self) -> str:
        return os.path.join(self.data_dir, "server.pid")

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, "server.log")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        env = os.environ
        s = cls(
            data_dir=env.get("SANDBURG_DATA_DIR") or cls.data_dir,
            cache_dir=env.get("SANDBURG_CACHE_DIR") or cls.cache_dir,
            host=env.get("SANDBURG_HOST") or cls.host,
            port=_int("SANDBURG_PORT", cls.port),
            public_url=env.get("SANDBURG_PUBLIC_URL") or None,
            cgroup_parent=env.get("SANDBURG_CGROUP_PARENT") or cls.cgroup_parent,
            images=tuple(i for i in (env.get("SANDBURG_IMAGES") or ",".join(cls.images)).split(",") if i),
            default_image=env.get("SANDBURG_DEFAULT_IMAGE") or cls.default_image,
            default_isolation=env.get("SANDBURG_DEFAULT_ISOLATION") or cls.default_isolation,
            default_cpu=_int("SANDBURG_DEFAULT_CPU", cls.default_cpu),
            default_memory_mib=_int("SANDBURG_DEFAULT_MEMORY_MIB", cls.default_memory_mib),
            default_disk_mib=_int("SANDBURG_DEFAULT_DISK_MIB", cls.default_disk_mib),
            pids_limit=_int("SANDBURG_PIDS_LIMIT", cls.pids_limit),
            exec_max_timeout=_int("SANDBURG_EXEC_MAX_TIMEOUT", cls.exec_max_timeout),
            max_output_bytes=_int("SANDBURG_MAX_OUTPUT_BYTES", cls.max_output_bytes),
            run_limit_mib=_int("SANDBURG_RUN_LIMIT_MIB", cls.run_limit_mib),
            net_bridge=env.get("SANDBURG_NET_BRIDGE") or cls.net_bridge,
            net_subnet=env.get("SANDBURG_NET_SUBNET") or cls.net_subnet,
            net_table=env.get("SANDBURG_NET_TABLE") or cls.net_table,
            net_tag=env.get("SANDBURG_NET_TAG") or cls.net_tag,
            dns_upstream=env.get("SANDBURG_DNS_UPSTREAM") or "",
            network_default_allow=tuple(
                e.strip() for e in (env.get("SANDBURG_NETWORK_DEFAULT_ALLOW") or "").split(",") if e.strip()
            ),
            apt_mirror=env.get("SANDBURG_APT_MIRROR") or "",
            pip_index=env.get("SANDBURG_PIP_INDEX") or "",
            npm_registry=env.get("SANDBURG_NPM_REGISTRY") or "",
            build_isolation=env.get("SANDBURG_BUILD_ISOLATION") or cls.build_isolation,
            build_step_timeout=_int("SANDBURG_BUILD_STEP_TIMEOUT", cls.build_step_timeout),
            master_key_file=env.get("SANDBURG_MASTER_KEY_FILE") or "",
            audit=(env.get("SANDBURG_AUDIT") or "on").lower() not in ("off", "0", "false", "no"),
            audit_retention_days=_int("SANDBURG_AUDIT_RETENTION_DAYS", cls.audit_retention_days),
            audit_key_file=env.get("SANDBURG_AUDIT_KEY_FILE") or "",
            activity=(env.get("SANDBURG_ACTIVITY") or "on").lower() not in ("off", "0", "false", "no"),
            auto_stop_minutes=_int("SANDBURG_AUTO_STOP_MINUTES", cls.auto_stop_minutes),
            auto_archive_minutes=_int("SANDBURG_AUTO_ARCHIVE_MINUTES", cls.auto_archive_minutes),
            auto_delete_minutes=_int("SANDBURG_AUTO_DELETE_MINUTES", cls.auto_delete_minutes),
            reaper_interval=_float("SANDBURG_REAPER_INTERVAL", cls.reaper_interval),
            test_mode=env.get("SANDBURG_TEST_MODE") == "1",
            crash_at=env.get("SANDBURG_CRASH_AT") or None,
            test_clock=env.get("SANDBURG_TEST_CLOCK") == "1",
        )
        if env.get("SANDBURG_MAX_CPU"):
            s.max_cpu = _int("SANDBURG_MAX_CPU", s.max_cpu)
        if env.get("SANDBURG_MAX_MEMORY_MIB"):
            s.max_memory_mib = _int("SANDBURG_MAX_MEMORY_MIB", s.max_memory_mib)
        if env.get("SANDBURG_MAX_DISK_MIB"):
            s.max_disk_mib = _int("SANDBURG_MAX_DISK_MIB", s.max_disk_mib)
        for k, v in overrides.items():
            if v is not None:
                setattr(s, k, v)
        if s.crash_at and not s.test_mode:
            raise SystemExit("sandburg: SANDBURG_CRASH_AT is a test hook; it needs SANDBURG_TEST_MODE=1")
        if s.test_clock and not s.test_mode:
            raise SystemExit(
                "sandburg: a production server refuses the test clock (SANDBURG_TEST_CLOCK needs SANDBURG_TEST_MODE=1)"
            )
        return s
