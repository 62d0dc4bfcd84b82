"""The seccomp profile of the `container` tier.

A deny-list on top of the user namespace and the dropped capabilities: syscalls that reach kernel surface no agent
needs (modules, kexec, keyrings, bpf, perf, io_uring, mount API, namespace creation) fail with EPERM; clone3 fails
with ENOSYS so that libc falls back to clone, whose flags can be inspected. Creating a user namespace (the door to
every other namespace for an unprivileged process) is refused in clone and unshare. Docker's default profile is an
allow-list of ~350 syscalls; this list blocks the same dangerous families while keeping ptrace (debuggers) and
personality (some build tools) usable — see docs/node-runtime.md.
"""

from __future__ import annotations

from typing import Any

EPERM, ENOSYS = 1, 38
CLONE_NEWUSER = 0x10000000

DENIED = [
    "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
    "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "init_module", "io_uring_enter",
    "io_uring_register", "io_uring_setup", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
    "lookup_dcookie", "mount", "mount_setattr", "move_mount", "name_to_handle_at", "nfsservctl",
    "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev",
    "query_module", "quotactl", "quotactl_fd", "reboot", "request_key", "setns", "settimeofday", "stime",
    "swapoff", "swapon", "syslog", "_sysctl", "sysfs", "umount", "umount2", "uselib", "userfaultfd", "ustat",
    "vm86", "vm86old", "fanotify_init", "lsm_set_self_attr",
]  # fmt: skip


def profile() -> dict[str, Any]:
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
            {
                "names": ["clone", "unshare"],
                "action": "SCMP_ACT_ERRNO",
                "errnoRet": EPERM,
                "args": [
                    {
                        "index": 0,
                        "value": CLONE_NEWUSER,
                        "valueTwo": CLONE_NEWUSER,
                        "op": "SCMP_CMP_MASKED_EQ",
                    }
                ],
            },
        ],
    }
