"""The node runtime: turns a SandboxSpec into a running sandbox and back, idempotently.

Create: btrfs snapshot of the image (+ size limit) → bundle dir (config.json, run dir, hosts) → for `container`,
an idmapped mount of the root → runc/runsc run → wait for the agent. Stop undoes the last three; delete also removes
the snapshot and the bundle. Every step can be repeated after a crash; `inventory()` lists what exists on the host
and `collect()` removes what no sandbox owns. docs/node-runtime.md lists the steps and why each is privileged.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import stat
import threading
from dataclasses import dataclass, field, replace

from . import cgroups, crash, idmap, priv, reaper, rootfs, runtime_layer, volumes
from .activity import ActivityMonitor
from .agent_client import AgentClient, AgentUnavailable, wait_ready
from .agent_endpoint import AGENT_PORT, Endpoint
from .errors import AgentStartError, BundleError, MountError, NetworkError, NodeError, RuntimeError_
from .images import ImageConfig, ImageStore
from .net import NetConfig, Network
from .oci import OciRuntime, pid_alive, runc, runsc, wait_pid_exit
from .spec import CONTAINER, GVISOR, BundlePaths, SandboxSpec, build_config
from .store import Store

AGENT_TOKEN_FILE = "agent.token"  # in a checkpoint image's directory: the token its agent holds


@dataclass
class NodeConfig:
    data_dir: str
    cache_dir: str = "/var/cache/sandburg"
    store_size_bytes: int = 256 << 30  # sparse: costs only what is written
    cgroup_parent: str = "sandburg"
    agent_start_timeout: float = 30.0
    run_limit_bytes: int = 512 << 20  # the agent's run dir: its socket and session logs
    net: NetConfig | None = None  # None: sandboxes get a loopback-only network (no namespace of sandburg's)


@dataclass
class Inventory:
    """Everything of sandburg's that exists on the host for one data dir."""

    subvolumes: set[str] = field(default_factory=set)
    bundles: set[str] = field(default_factory=set)
    mounts: set[str] = field(default_factory=set)
    containers: dict[str, set[str]] = field(default_factory=dict)
    cgroups: set[str] = field(default_factory=set)
    networks: set[str] = field(default_factory=set)  # network namespaces and nftables chains

    def ids(self) -> set[str]:
        ids = set(self.subvolumes) | self.bundles | self.cgroups | self.networks
        ids |= {os.path.basename(os.path.dirname(m)) for m in self.mounts}
        for cs in self.containers.values():
            ids |= cs
        return ids


class Node:
    def __init__(self, cfg: NodeConfig) -> None:
        self.cfg = cfg
        self.store = Store(cfg.data_dir, cfg.store_size_bytes)
        self.images = ImageStore(self.store, cfg.cache_dir)
        self.bundles_dir = os.path.join(cfg.data_dir, "sandboxes")
        self.runtimes: dict[str, OciRuntime] = {
            CONTAINER: runc(os.path.join(cfg.data_dir, "runc")),
            GVISOR: runsc(os.path.join(cfg.data_dir, "runsc"), network="sandbox" if cfg.net else "none"),
        }
        self.net = Network(cfg.net) if cfg.net else None
        self.layer = ""
        self._agents: dict[str, AgentClient] = {}
        self._agents_lock = threading.Lock()
        self.activity: ActivityMonitor | None = None  # host-side activity recording, set by the server

    # -- setup -----------------------------------------------------------------------------------------------
    def prepare(self, images: tuple[str, ...] = ()) -> None:
        """Mount the store, build the runtime layer, make sure `images` exist. Idempotent."""
        reaper.enable()
        os.makedirs(self.cfg.data_dir, mode=0o711, exist_ok=True)
        os.makedirs(self.bundles_dir, mode=0o711, exist_ok=True)
        self.store.ensure()
        self.images.remove_partial()
        self.images.layers.remove_partial()
        self.layer = runtime_layer.ensure(os.path.join(self.cfg.data_dir, "runtime"))
        if self.net:
            self.net.ensure()
        for name in images:
            self.images.ensure(name, log=True)

    def cgroup_path(self, sid: str) -> str:
        return f"/{self.cfg.cgroup_parent}/{sid}"

    def root_path(self, sid: str) -> str:
        return self.store.path("sandboxes", sid)

    def run_path(self, sid: str) -> str:
        """The sandbox's run dir (mounted at /.sandburg/run): the agent's socket and session logs.

        A subvolume of its own with a size limit, because the sandbox can write into it: on the host's own disk it
        would let a sandbox fill that disk. The host only reads it through O_NOFOLLOW walks."""
        return self.store.path("run", sid)

    def bundle_paths(self, sid: str) -> tuple[str, BundlePaths]:
        bundle = os.path.join(self.bundles_dir, sid)
        return bundle, BundlePaths(
            rootfs=os.path.join(bundle, "rootfs"), layer=self.layer, run_dir=self.run_path(sid)
        )

    # -- lifecycle -------------------------------------------------------------------------------------------
    def create(self, spec: SandboxSpec, memory: str = "", run_layer: str = "") -> int:
        """Make the sandbox's root and run it; return the runtime's host pid. Undone by delete() on failure.
        `memory`, `run_layer`: a gvisor memory snapshot's checkpoint image and run-dir layer (a memory fork:
        its processes are restored; hostname and /etc/hosts stay the parent's, as the restored kernel state)."""
        image = self.images.path(spec.image)
        root = self.root_path(spec.id)
        if run_layer and not self.store.is_subvolume(self.run_path(spec.id)):
            # open session logs must be where the restored processes left them
            self.store.snapshot(self.images.layers.require(run_layer), self.run_path(spec.id),
                                limit_bytes=self.cfg.run_limit_bytes)  # fmt: skip
        if not self.store.is_subvolume(root):
            # The sandbox's root: a writable snapshot of the image, capped at its disk size (5 ms, no copy).
            self.store.snapshot(image, root, limit_bytes=spec.disk_mib * 1024 * 1024)
            # Name resolution of its own hostname (sudo, many tools), written once into the sandbox's own root.
            hosts = f"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{spec.hostname}\n"
            if not memory:
                rootfs.write_file(root, "etc/hosts", hosts.encode())
                rootfs.write_file(root, "etc/hostname", (spec.hostname + "\n").encode())
            if self.net and spec.ip:
                # DNS goes to the node's resolver on the gateway, which answers only names the policy allows
                resolv = f"nameserver {self.net.cfg.gateway}\noptions ndots:0 timeout:2 attempts:2\n"
                rootfs.write_file(root, "etc/resolv.conf", resolv.encode())
        crash.point("create.subvolume")
        self._ensure_run_dir(spec, keep_sessions=bool(memory))
        if self.net and spec.ip:
            # the rules first: the sandbox's first packet already meets its policy
            self.net.set_policy(spec.id, spec.ip, spec.policy)
        crash.point("create.network")
        return self.start(spec, _creating=True, memory=memory)

    def start(self, spec: SandboxSpec, _creating: bool = False, memory: str = "") -> int:
        """Run an existing sandbox root (after create or stop); return the runtime's host pid. `memory`: the path
        of a checkpoint image (gvisor) whose processes to restore instead of booting (statesnap.py)."""
        rt = self.runtimes[spec.isolation]
        st = rt.state(spec.id)
        if st and st.get("status") == "running" and pid_alive(int(st.get("pid", 0))) and not memory:
            self.agent_ready(spec.id)
            if self.activity and spec.isolation == CONTAINER:
                self.activity.watch_container(spec.id, int(st["pid"]))
            return int(st["pid"])
        if st:
            rt.delete(spec.id, force=True)  # a stopped/created leftover from a crash
        self._ensure_run_dir(spec, keep_sessions=bool(memory))
        if self.net and spec.ip and spec.isolation == GVISOR:
            # before every run and restore: runsc moves the address and route from eth0 into its netstack
            self.net.plug(spec.id, spec.ip)
            token = self._agent_token(spec.id, memory)
            spec = replace(spec, netns=self.net.netns_path(spec.id), agent_token=token)
            self._write_endpoint(spec.id, Endpoint(host=spec.ip, port=AGENT_PORT, token=token))
        elif self.net and spec.isolation == GVISOR:
            # without a namespace of its own runsc's netstack would refuse to start (or see the host's)
            raise NetworkError("a gVisor sandbox on a networked node needs an address", path=spec.id)
        if spec.volumes:  # bind mounts made on the host first, so that config.json names them (volumes.py)
            spec = volumes.attach(spec, self.bundle_paths(spec.id)[0])
        bundle, paths = self._write_bundle(spec)
        if _creating:
            crash.point("create.bundle")
        if spec.isolation == CONTAINER:
            self._mount_root(spec, paths.rootfs)
        if _creating:
            crash.point("create.mount")
        sock = os.path.join(paths.run_dir, "agent.sock")
        if os.path.lexists(sock):
            os.unlink(sock)
        log = os.path.join(bundle, "agent.log")
        act = self.activity
        extra = tuple(act.runsc_flags(spec.id, bundle)) if act and spec.isolation == GVISOR else ()
        try:
            if memory:
                pid = rt.restore(spec.id, bundle, memory, log, extra)
            else:
                pid = rt.run(spec.id, bundle, log, extra)
        except BaseException:
            if self.activity:
                self.activity.unwatch(spec.id)
            raise
        if self.activity and spec.isolation == CONTAINER:
            self.activity.watch_container(spec.id, pid)
        if _creating:
            crash.point("create.runtime")
        try:
            if self.net and spec.ip and spec.isolation == CONTAINER:
                # wire the network while the agent starts: neither waits for the other
                failed: list[NetworkError] = []
                plug = threading.Thread(target=self._plug, args=(spec, pid, failed), name="sandburg-plug")
                plug.start()
                try:
                    self.agent_ready(spec.id)
                finally:
                    plug.join()
                if failed:
                    raise failed[0]
            else:
                self.agent_ready(spec.id)
        except (AgentStartError, NetworkError):
            self.stop(spec.id, spec.isolation)
            raise
        return pid

    def adopt_activity(self, sid: str, isolation: str) -> None:
        """Record the activity of a sandbox that was already running when the server started (node/activity.py)."""
        running, pid = self.is_running(sid, isolation)
        if self.activity and running and not self.activity.watching(sid):
            if isolation == CONTAINER:
                self.activity.watch_container(sid, pid)
            else:
                self.activity.attach_gvisor(sid, self.bundle_paths(sid)[0], self.runtimes[GVISOR])

    def _plug(self, spec: SandboxSpec, pid: int, failed: list[NetworkError]) -> None:
        assert self.net is not None
        try:
            self.net.plug(spec.id, spec.ip, pid=pid)
        except NetworkError as exc:
            failed.append(exc)

    def agent_ready(self, sid: str) -> None:
        _, paths = self.bundle_paths(sid)
        try:
            wait_ready(self.agent_endpoint(sid), self.cfg.agent_start_timeout)
        except AgentUnavailable as exc:
            log = os.path.join(os.path.dirname(paths.run_dir), "agent.log")
            raise AgentStartError("the toolbox agent did not come up", path=log, detail=_tail(log)) from exc

    def stop(self, sid: str, isolation: str) -> None:
        """Stop the sandbox's processes and release its runtime resources; keep its root and bundle."""
        self._drop_agent(sid)  # its pooled connections die with it (over TCP nothing would tell the host)
        rt = self.runtimes[isolation]
        st = rt.state(sid)
        if st is not None:
            pid = max(0, int(st.get("pid") or 0))
            if st.get("status") in ("running", "created", "paused") or pid_alive(pid):
                if st.get("status") == "paused":
                    try:  # frozen processes would not act on the SIGKILL until thawed
                        rt.resume(sid)
                    except RuntimeError_:
                        pass
                try:
                    rt.kill(sid, "KILL")
                except RuntimeError_:
                    # e.g. runsc's control server already gone after a crash; the processes may linger anyway
                    pass
                if not wait_pid_exit(pid, 5):
                    cgroups.kill_all(self.cgroup_path(sid))
                    if not wait_pid_exit(pid, 10):
                        raise RuntimeError_("sandbox process did not exit after SIGKILL", path=str(pid))
            crash.point("delete.kill")
            try:
                rt.delete(sid)
            except RuntimeError_:
                rt.delete(sid, force=True)
        crash.point("delete.runtime")
        if self.activity:
            self.activity.unwatch(sid)
        if self.net:
            self.net.unplug(sid)
        self._unmount_root(sid)
        crash.point("delete.umount")

    def delete(self, sid: str, isolation: str, ip: str | None = None) -> None:
        """Remove every trace of the sandbox: processes, runtime state, network, mounts, root, bundle, cgroups."""
        self._drop_agent(sid)
        self.stop(sid, isolation)
        if self.net:
            self.net.detach(sid, ip)
        crash.point("delete.network")
        self.store.delete_subvolume(self.root_path(sid))
        self.store.delete_subvolume(self.run_path(sid))
        crash.point("delete.subvolume")
        bundle, _ = self.bundle_paths(sid)
        shutil.rmtree(bundle, ignore_errors=True)
        crash.point("delete.bundle")
        cgroups.remove(self.cgroup_path(sid))

    def is_running(self, sid: str, isolation: str) -> tuple[bool, int]:
        st = self.runtimes[isolation].state(sid)
        if not st:
            return False, 0
        pid = int(st.get("pid") or 0)
        return st.get("status") == "running" and pid_alive(pid), pid

    def death_reason(self, sid: str) -> str | None:
        return cgroups.death_reason(self.cgroup_path(sid))

    def agent(self, sid: str) -> AgentClient:
        with self._agents_lock:
            client = self._agents.get(sid)
            if client is None:
                client = self._agents[sid] = AgentClient(self.agent_endpoint(sid))
            return client

    def _drop_agent(self, sid: str) -> None:
        with self._agents_lock:
            client = self._agents.pop(sid, None)
        if client is not None:
            client.close_threadsafe()

    def agent_endpoint(self, sid: str) -> Endpoint:
        """TCP with a token for a networked gVisor sandbox (written at its start), else the run dir's socket."""
        bundle, paths = self.bundle_paths(sid)
        try:
            with open(os.path.join(bundle, "agent.json")) as fh:
                return Endpoint(**json.load(fh))
        except FileNotFoundError:
            return Endpoint(path=os.path.join(paths.run_dir, "agent.sock"))

    def _write_endpoint(self, sid: str, ep: Endpoint) -> None:
        bundle, _ = self.bundle_paths(sid)
        os.makedirs(bundle, mode=0o700, exist_ok=True)
        tmp = os.path.join(bundle, "agent.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": ep.host, "port": ep.port, "token": ep.token}, fh)
        os.replace(tmp, os.path.join(bundle, "agent.json"))

    def _agent_token(self, sid: str, memory: str) -> str:
        """The token a restored agent already holds (saved next to its checkpoint image), else the sandbox's own
        (made at its first start, kept across restarts)."""
        if memory:
            with open(os.path.join(memory, AGENT_TOKEN_FILE)) as fh:
                return fh.read().strip()
        ep = self.agent_endpoint(sid)
        return ep.token or secrets.token_hex(16)

    # -- inventory and garbage collection ---------------------------------------------------------------------
    def inventory(self) -> Inventory:
        inv = Inventory()
        inv.subvolumes = set(self.store.subvolumes("sandboxes")) | set(self.store.subvolumes("run"))
        try:
            inv.bundles = set(os.listdir(self.bundles_dir))
        except FileNotFoundError:
            pass
        inv.mounts = set(priv.mounts_under(self.bundles_dir))
        for tier, rt in self.runtimes.items():
            inv.containers[tier] = {c["id"] for c in rt.list()}
        inv.cgroups = cgroups.children(self.cfg.cgroup_parent)
        if self.net:
            inv.networks = self.net.sandbox_ids() | self.net.chain_ids()
        return inv

    def collect(self, keep: set[str]) -> list[str]:
        """Remove everything on the host whose sandbox id is not in `keep`; return the ids removed."""
        inv = self.inventory()
        removed = []
        for sid in sorted(inv.ids() - keep):
            tier = GVISOR if sid in inv.containers.get(GVISOR, set()) else CONTAINER
            for t in {tier, CONTAINER, GVISOR}:
                if sid in inv.containers.get(t, set()):
                    self.stop(sid, t)
            self.delete(sid, tier)
            removed.append(sid)
        return removed

    # -- steps ------------------------------------------------------------------------------------------------
    def _write_bundle(self, spec: SandboxSpec) -> tuple[str, BundlePaths]:
        bundle, paths = self.bundle_paths(spec.id)
        root = paths.rootfs if spec.isolation == CONTAINER else self.root_path(spec.id)
        paths = BundlePaths(root, paths.layer, paths.run_dir)
        try:
            os.makedirs(os.path.join(bundle, "rootfs"), mode=0o700, exist_ok=True)
            nofile = min(1048576, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
            config = build_config(spec, paths, self.cgroup_path(spec.id), ImageConfig().env, nofile)
            tmp = os.path.join(bundle, "config.json.tmp")
            with open(tmp, "w") as fh:
                json.dump(config, fh)
            os.replace(tmp, os.path.join(bundle, "config.json"))
        except OSError as exc:
            raise BundleError("writing the bundle failed", path=bundle, detail=exc.strerror) from exc
        return bundle, paths

    def _ensure_run_dir(self, spec: SandboxSpec, keep_sessions: bool = False) -> None:
        run = self.run_path(spec.id)
        if not self.store.is_subvolume(run):
            self.store.create_subvolume(run)
            self.store.limit(run, self.cfg.run_limit_bytes)
        # The agent (root inside = uid_base on the host in the container tier) creates its socket and logs here.
        owner = spec.uid_base if spec.isolation == CONTAINER else 0
        os.chown(run, owner, owner)
        os.chmod(run, 0o700)
        # sessions do not outlive their processes: a (re)started sandbox begins without stale ones (a restored
        # checkpoint has its processes back, and their open session logs)
        if not keep_sessions:
            shutil.rmtree(os.path.join(run, "sessions"), ignore_errors=True)

    def _mount_root(self, spec: SandboxSpec, target: str) -> None:
        if priv.is_mountpoint(target):
            return
        # The container's root must show on-disk uid 0 as the sandbox's unprivileged host uid (idmap.py).
        idmap.idmapped_mount(self.root_path(spec.id), target, spec.uid_base)

    def _unmount_root(self, sid: str) -> None:
        bundle, _ = self.bundle_paths(sid)
        for mp in priv.mounts_under(bundle):
            # Lazy unmount: the runtime is gone, but a racing reader of the tree must not keep it busy.
            priv.run(["umount", "-l", mp], MountError, path=mp)


def check_socket(path: str) -> None:
    """Refuse an agent socket path that is not a socket (the sandbox controls that directory)."""
    st = os.lstat(path)
    if not stat.S_ISSOCK(st.st_mode):
        raise NodeError("agent socket is not a socket", path=path)


def _tail(path: str, n: int = 1500) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - n))
            return fh.read().decode(errors="replace")
    except OSError:
        return ""
