"""OCI runtime config (config.json) for a sandbox: one builder for both tiers.

Pure functions (no I/O) so that every security-relevant setting is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import seccomp
from .agent_endpoint import AGENT_PORT
from .netpolicy import Policy
from .runtime_layer import MOUNT_POINT, agent_argv

GVISOR = "gvisor"
CONTAINER = "container"
ISOLATIONS = (GVISOR, CONTAINER)
CPU_PERIOD_US = 100_000
# The gVisor sandbox's host cgroup holds the Sentry and the Gofer too, not only the workload: measured idle
# overhead is ~35 MiB (docs/node-runtime.md), so the cgroup gets this much on top of the requested memory.
GVISOR_MEMORY_OVERHEAD_MIB = 64

CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP",
    "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip


@dataclass(frozen=True)
class VolumeMountSpec:
    """A volume in a sandbox (node/volumes.py): `source` is a host directory (the server names the volume's
    encrypted directory, `subpath` a directory inside it; the node replaces both by its own bind mount in the
    bundle before writing config.json), `destination` an absolute path inside the sandbox."""

    source: str
    destination: str
    read_only: bool = False
    subpath: str = ""  # walked with O_NOFOLLOW by the node: the sandbox writes that tree


@dataclass(frozen=True)
class SandboxSpec:
    """What the node needs to run one sandbox."""

    id: str
    hostname: str
    isolation: str
    image: str
    cpu: int
    memory_mib: int
    disk_mib: int
    env: dict[str, str] = field(default_factory=dict)
    uid_base: int = 0  # container tier: host uid/gid that root inside maps to
    pids_limit: int = 2048
    workdir: str = "/workspace"
    ip: str = ""  # its address on the node's subnet; "" = a private loopback-only network
    policy: Policy = field(default_factory=lambda: Policy.build("none"))  # egress (netpolicy.py)
    netns: str = ""  # gvisor: set by the node, path of the network namespace it made for the sandbox (net.py)
    agent_token: str = (
        ""  # gvisor with netns: the agent listens on TCP and wants this first (agent_endpoint.py)
    )
    volumes: tuple[VolumeMountSpec, ...] = ()  # persistent volumes, bind-mounted (docs/volumes.md)


@dataclass(frozen=True)
class BundlePaths:
    rootfs: str
    layer: str
    run_dir: str


def memory_limit_bytes(spec: SandboxSpec) -> int:
    extra = GVISOR_MEMORY_OVERHEAD_MIB if spec.isolation == GVISOR else 0
    return (spec.memory_mib + extra) * 1024 * 1024


def build_config(
    spec: SandboxSpec, paths: BundlePaths, cgroup_path: str, image_env: dict[str, str], nofile: int = 1048576
) -> dict[str, Any]:
    """config.json for `spec`. `nofile` must not exceed the caller's own hard limit: raising it needs
    CAP_SYS_RESOURCE in the host's namespace, which a container in a user namespace does not have."""
    env = {**image_env, **spec.env, "HOSTNAME": spec.hostname, "HOME": "/root"}
    env.setdefault("TERM", "xterm-256color")
    env.setdefault("LANG", "C.UTF-8")
    if spec.agent_token:  # the agent scrubs SANDBURG_* from what it passes on to commands
        env["SANDBURG_AGENT_TCP"] = str(AGENT_PORT)
        env["SANDBURG_AGENT_TOKEN"] = spec.agent_token
    mounts: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        # the runtime layer (python, tini, agent), read-only and shared by all sandboxes
        {"destination": MOUNT_POINT, "type": "bind", "source": paths.layer, "options": ["rbind", "ro", "nosuid", "nodev"]},
        # the agent's run dir: its socket (container tier: the host's only way in) and session logs
        {"destination": f"{MOUNT_POINT}/run", "type": "bind", "source": paths.run_dir, "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]},
    ]  # fmt: skip
    for v in spec.volumes:
        # a volume: a bind mount that is no part of the sandbox's root, hence of no snapshot of it
        opts = ["rbind", "ro" if v.read_only else "rw", "nosuid", "nodev"]
        mounts.append({"destination": v.destination, "type": "bind", "source": v.source, "options": opts})
    resources: dict[str, Any] = {
        "memory": {"limit": memory_limit_bytes(spec), "swap": memory_limit_bytes(spec)},
        "cpu": {"quota": spec.cpu * CPU_PERIOD_US, "period": CPU_PERIOD_US},
        "pids": {"limit": spec.pids_limit},
    }
    caps = list(CAPABILITIES)
    linux: dict[str, Any] = {
        "cgroupsPath": cgroup_path,
        "resources": resources,
        "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount", "network")],
        "maskedPaths": [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
            "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
        ],
        "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    }  # fmt: skip
    if spec.isolation == CONTAINER:
        linux["namespaces"].append({"type": "user"})
        linux["uidMappings"] = [{"containerID": 0, "hostID": spec.uid_base, "size": 65536}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": spec.uid_base, "size": 65536}]
        linux["seccomp"] = seccomp.profile()
        # runc makes a new network namespace, owned by the sandbox's user namespace (sysfs cannot be mounted in a
        # user namespace that does not own the network namespace); the node wires it up after start (net.py)
    elif spec.netns:
        # runsc --network=sandbox: gVisor's netstack takes over the veth of the namespace the node made beforehand
        linux["namespaces"] = [{"type": "network", "path": spec.netns} if ns["type"] == "network" else ns
                               for ns in linux["namespaces"]]  # fmt: skip
    else:
        # gVisor's own netstack with loopback only (runsc --network=none)
        linux["namespaces"] = [ns for ns in linux["namespaces"] if ns["type"] != "network"]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": agent_argv(),
            "env": [f"{k}={v}" for k, v in env.items()],
            "cwd": "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": nofile, "soft": nofile}],
            "noNewPrivileges": True,
        },
        "root": {"path": paths.rootfs, "readonly": False},
        "hostname": spec.hostname,
        "mounts": mounts,
        "linux": linux,
    }
