"""A job's clean start and its confinement (runs inside the sandbox; standard library only).

A job process, freshly forked from the zygote and still privileged, calls ``enter`` once before
it reads its code. In order:

1. **Fresh namespaces** (``fresh_namespaces``): its own mount, IPC and network namespaces (the
   last with nothing in it, not even a loopback that is up, so no abstract socket, port or
   ``TIME_WAIT`` connection of an earlier job is in reach); a new tmpfs on
   ``/tmp`` capped in bytes *and* inodes, owned by the job's uid (also bound on ``/dev/shm`` and
   ``/var/tmp``); ``/proc`` and ``/sys`` covered by an empty read-only tmpfs, so no command
   line, mount table or process of the sandbox is visible. Nothing here needs cleaning
   afterwards: when the job's last process dies the kernel frees the namespaces, the tmpfs
   with every file and inode in it (whatever their modes), every System V and POSIX IPC
   object and every socket.
2. **Limits**: address space, processes, file size, descriptors, a finite stack, no core dumps,
   and the first place in the OOM killer's queue (``first_to_go``).
3. **Privileges**: the job's own uid (one no earlier job ran as) and no capabilities.
4. **A seccomp filter** (``confine``): no new namespaces of any kind (so no nested user
   namespace), no keyrings, no mounts, no ptrace or cross-process memory access, no io_uring,
   BPF, perf events, userfaultfd or module loading, no LDT, file handles or quotas, and no
   execution domain but Linux's own (``personality``).

Where step 1 is impossible (no ``CAP_SYS_ADMIN``: the ``rlimits`` level without root, or a
container that withholds it) the job gets a new directory instead (``fresh_directory``), which
the supervisor removes and checks afterwards; its inodes are then not capped.
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import resource
import struct

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
# every CLONE_NEW* flag; clone() keeps its exit signal in the low byte, so CLONE_NEWTIME (0x80)
# is only checked for unshare()
_NEW_NAMESPACES = 0x7E020000
_NEW_NAMESPACES_UNSHARE = _NEW_NAMESPACES | 0x80
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_RDONLY = 2, 4, 8, 1
_MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP = 1, 38, 22
_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 47, 4

_libc = ctypes.CDLL(None, use_errno=True)


class JailError(OSError):
    """A step of the clean start failed: the job must not run in this process."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise JailError(errno, f"{what}: {os.strerror(errno)}")


def prctl(option: int, arg: int | object = 0) -> None:
    _check(_libc.prctl(option, arg, 0, 0, 0), f"prctl({option})")


# --- 1. fresh namespaces ------------------------------------------------------------------


def fresh_namespaces(
    tmp: str,
    size: int,
    inodes: int,
    uid: int | None,
    keep: list[str],
    shared: list[str],
    hide: list[str],
) -> bool:
    """Enter new mount, IPC and network namespaces with a fresh ``tmp``; False when not permitted.

    ``keep`` are paths below ``tmp`` the job still needs (an interpreter installed under
    /tmp); they are bound read-only into the new tmpfs at the same place. ``shared`` are
    other world-writable directories bound onto the same tmpfs; ``hide`` are directories
    (``/proc``) covered by an empty one.
    """
    if _libc.unshare(CLONE_NEWNS | CLONE_NEWIPC) != 0:
        return False  # no CAP_SYS_ADMIN here: the caller falls back to a fresh directory
    # The worker's network namespace outlives its jobs: a listening socket kept alive in
    # flight (SCM_RIGHTS to itself) or a port in TIME_WAIT would reach the next job there.
    _check(_libc.unshare(CLONE_NEWNET), "new network namespace")
    _check(_libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make mounts private")
    # reachable through these descriptors once the new tmpfs covers their paths
    kept = [(p, os.open(p, os.O_PATH | os.O_DIRECTORY)) for p in keep if os.path.isdir(p)]
    owner = os.getuid() if uid is None else uid
    options = f"size={size},nr_inodes={inodes},mode=0700,uid={owner},gid={owner}"
    flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
    _check(_libc.mount(b"llmi-job", tmp.encode(), b"tmpfs", flags, options.encode()), "mount tmpfs")
    for path, fd in kept:
        os.makedirs(path, mode=0o755, exist_ok=True)
        _bind(f"/proc/self/fd/{fd}", path, read_only=True)
        os.close(fd)
    for path in shared:
        if os.path.isdir(path) and not path.startswith(tmp.rstrip("/") + "/"):
            _bind(tmp, path, read_only=False)
    for path in hide:
        # covered by an empty read-only tmpfs (whatever is mounted there, stacked or not)
        if os.path.isdir(path):
            flags = _MS_RDONLY | _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
            empty = b"size=4k,nr_inodes=1,mode=0555"
            cover = _libc.mount(b"llmi-none", path.encode(), b"tmpfs", flags, empty)
            _check(cover, f"cover {path}")
    return True


def _bind(source: str, target: str, read_only: bool) -> None:
    flags = _MS_BIND | _MS_REC
    _check(_libc.mount(source.encode(), target.encode(), None, flags, None), f"bind {target}")
    if read_only:
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
        _check(_libc.mount(None, target.encode(), None, flags, None), f"read-only {target}")


def fresh_directory(path: str, uid: int | None) -> None:
    """The fallback: a new, empty working directory owned by the job."""
    if os.path.lexists(path):
        raise JailError(17, f"the last job's directory {path} is still there")
    os.makedirs(path, mode=0o700)
    if uid is not None and os.geteuid() == 0:
        os.chown(path, uid, uid)


# --- 2. limits ----------------------------------------------------------------------------


def vm_size() -> int:
    """This process's address-space size in bytes (0 if /proc cannot tell)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return 0


def first_to_go() -> None:
    """Put this process (and all it forks) first in line for the kernel's OOM killer.

    ``RLIMIT_AS`` bounds each process, not the job: a job that forks ``nproc`` processes can
    fill the host's memory, and then it is the job, not llmi or another program, that dies.
    Any process may raise its own score; best effort where ``/proc`` is missing.
    """
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass


def set_limits(limits: dict, base_vm: int) -> None:
    """Hard rlimits (soft = hard): the job cannot raise them again."""
    wanted = {
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_FSIZE: limits.get("fsize"),
        resource.RLIMIT_NOFILE: limits.get("nofile"),
        resource.RLIMIT_NPROC: limits.get("nproc"),
        resource.RLIMIT_STACK: limits.get("stack"),
    }
    if limits.get("memory"):
        wanted[resource.RLIMIT_AS] = base_vm + int(limits["memory"])
    for which, value in wanted.items():
        if value is not None:
            set_limit(which, int(value))


def set_limit(which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    try:
        resource.setrlimit(which, (value, value))
    except (ValueError, OSError):
        pass


# --- 3. privileges ------------------------------------------------------------------------


def drop_privileges(uid: int | None) -> None:
    """Become ``uid`` (when root) and keep no capability either way."""
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # clears every capability set
        if os.getuid() != uid or os.geteuid() != uid:
            raise JailError(1, "the job's uid did not take")
        return
    # no uid of its own (a rootless sandbox): shed the capabilities the worker kept
    header = struct.pack("=Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    _check(_libc.capset(header, bytes(24)), "capset")
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)


# --- 4. seccomp ---------------------------------------------------------------------------

# (audit arch, x32 bit or 0, syscall numbers) per machine; only numbers the kernel has
_ARCHES = {
    "x86_64": (0xC000003E, 0x40000000, {
        "clone": 56, "unshare": 272, "setns": 308, "clone3": 435,
        "add_key": 248, "request_key": 249, "keyctl": 250,
        "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
        "kcmp": 312, "pidfd_getfd": 438, "bpf": 321, "perf_event_open": 298,
        "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "kexec_load": 246, "kexec_file_load": 320,
        "init_module": 175, "finit_module": 313, "delete_module": 176,
        "open_by_handle_at": 304, "acct": 163, "swapon": 167, "swapoff": 168, "syslog": 103,
        "iopl": 172, "ioperm": 173, "reboot": 169, "modify_ldt": 154, "uselib": 134,
        "name_to_handle_at": 303, "lookup_dcookie": 212, "quotactl": 179, "personality": 135,
    }),
    "aarch64": (0xC00000B7, 0, {
        "clone": 220, "unshare": 97, "setns": 268, "clone3": 435,
        "add_key": 217, "request_key": 218, "keyctl": 219,
        "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
        "mount_setattr": 442, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
        "kcmp": 272, "pidfd_getfd": 438, "bpf": 280, "perf_event_open": 241,
        "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "kexec_load": 104, "kexec_file_load": 294,
        "init_module": 105, "finit_module": 273, "delete_module": 106,
        "open_by_handle_at": 265, "acct": 89, "swapon": 224, "swapoff": 225, "syslog": 116,
        "reboot": 142, "name_to_handle_at": 264, "lookup_dcookie": 18, "quotactl": 60,
        "personality": 92,
    }),
}  # fmt: skip

_LD_W_ABS, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO, _KILL = 0x7FFF0000, 0x00050000, 0x80000000
_EPERM, _ENOSYS = 1, 38
_PER_LINUX, _PER_QUERY = 0, 0xFFFFFFFF  # personality(): Linux's own, or asking which is set


def seccomp_program(machine: str | None = None) -> list[tuple[int, int, int, int]] | None:
    """The classic-BPF filter for this machine as (code, jt, jf, k) rows; None if unknown.

    >>> rows = seccomp_program("x86_64")
    >>> rows[0], rows[-1][3] == _KILL
    ((32, 0, 0, 4), True)
    >>> seccomp_program("sparc") is None
    True
    """
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit, x32, nr = arch
    checked = ("clone", "unshare", "clone3", "personality")
    denied = [n for name, n in nr.items() if name not in checked]
    # symbolic program: ("op", k, true-label, false-label); labels resolve to offsets below
    prog: list[tuple] = [("ld", 4), ("jeq", audit, None, "kill"), ("ld", 0)]
    if x32:
        prog.append(("jge", x32, "eperm", None))  # the x32 ABI: another syscall table
    prog += [
        ("jeq", nr["clone"], "clone", None),
        ("jeq", nr["unshare"], "unshare", None),
        # glibc falls back to clone() (whose flags we can see) when clone3 is missing
        ("jeq", nr["clone3"], "enosys", None),
        ("jeq", nr["personality"], "personality", None),
    ]
    prog += [("jeq", n, "eperm", None) for n in denied]
    prog += [
        ("ret", _ALLOW),
        ("label", "clone"), ("ld", 16), ("jset", _NEW_NAMESPACES, "eperm", None), ("ret", _ALLOW),
        ("label", "unshare"), ("ld", 16), ("jset", _NEW_NAMESPACES_UNSHARE, "eperm", None),
        ("ret", _ALLOW),
        # other execution domains change how the kernel treats the process (READ_IMPLIES_EXEC,
        # ADDR_NO_RANDOMIZE ...); only asking, or staying Linux, is allowed
        ("label", "personality"), ("ld", 16), ("jeq", _PER_QUERY, "allow", None),
        ("jeq", _PER_LINUX, "allow", "eperm"),
        ("label", "allow"), ("ret", _ALLOW),
        ("label", "eperm"), ("ret", _ERRNO | _EPERM),
        ("label", "enosys"), ("ret", _ERRNO | _ENOSYS),
        ("label", "kill"), ("ret", _KILL),
    ]  # fmt: skip
    return _assemble(prog)


def _assemble(prog: list[tuple]) -> list[tuple[int, int, int, int]]:
    where: dict[str, int] = {}
    rows: list[tuple] = []
    for item in prog:
        if item[0] == "label":
            where[item[1]] = len(rows)
        else:
            rows.append(item)
    out = []
    for i, (op, k, *jumps) in enumerate(rows):
        if op == "ld":
            out.append((_LD_W_ABS, 0, 0, k))
        elif op == "ret":
            out.append((_RET, 0, 0, k))
        else:
            jt, jf = (0 if j is None else where[j] - i - 1 for j in jumps)
            out.append(({"jeq": _JEQ, "jge": _JGE, "jset": _JSET}[op], jt, jf, k))
    return out


class _Filter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]  # fmt: skip


class _Program(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_Filter))]


@functools.cache
def _compiled() -> tuple[_Program, ctypes.Array] | None:
    """The filter as the kernel takes it, built once (the zygote builds it before any fork)."""
    rows = seccomp_program()
    if rows is None:
        return None
    table = (_Filter * len(rows))(*(_Filter(*row) for row in rows))
    return _Program(len(rows), table), table  # the table must outlive the program


def prepare() -> None:
    """Build what ``confine`` needs now, in the zygote, rather than in every job."""
    _compiled()


def confine() -> bool:
    """Install the seccomp filter on this process and all it forks; False on an unknown machine."""
    compiled = _compiled()
    if compiled is None:
        return False
    prctl(_PR_SET_NO_NEW_PRIVS, 1)
    _check(_libc.prctl(_PR_SET_SECCOMP, 2, ctypes.byref(compiled[0]), 0, 0), "seccomp")
    return True


# --- all of it ----------------------------------------------------------------------------


def enter(config: dict, uid: int | None, extra_vm: int = 0) -> dict:
    """The job's clean start (steps 1-4 above); what it got, and its home directory.

    ``extra_vm`` is address space granted on top of the job's own limit (for libraries it
    will import itself because the zygote had not yet).
    """
    base_vm = vm_size()
    first_to_go()  # while /proc is still there
    home = config.get("job_tmp", "/tmp")
    isolated = False
    if config.get("namespaces", True):
        isolated = fresh_namespaces(
            home,
            int(config.get("tmpfs", 256 << 20)),
            int(config.get("inodes", 16384)),
            uid,
            list(config.get("keep", [])),
            list(config.get("shared", ["/dev/shm", "/var/tmp"])),
            list(config.get("hide", ["/proc", "/sys"])),
        )
    if not isolated:
        home = config["workdir"]
        fresh_directory(home, uid)
    set_limits(config.get("limits", {}), base_vm + extra_vm)
    drop_privileges(uid)
    seccomp = confine()
    return {"isolated": isolated, "seccomp": seccomp, "home": home}
