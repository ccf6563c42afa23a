"""How a chart worker is started: the sandbox layers available on this host, and the command.

Three levels, strongest first (``CodeSandboxTool(sandbox="auto")`` takes the first that works):

``bwrap``
    bubblewrap: new network, PID, IPC and UTS namespaces, an empty root with read-only binds of
    only what the interpreter needs, a private size-capped ``/tmp``, no home directories, a
    cleared environment, ``--die-with-parent``.
``unshare``
    util-linux ``unshare``: new network, PID, IPC, UTS and mount namespaces and private
    tmpfs mounts on ``/tmp``, ``/var/tmp`` and ``/dev/shm``; the rest of the file system stays
    visible (read-only to the job's uid where permissions say so).
``rlimits``
    a plain child process with a scrubbed environment, its own session, a private temporary
    directory and rlimits. **No network isolation.**

At every level the worker's supervisor and zygote keep only the capabilities a clean start
needs (``CAP_SYS_ADMIN`` to give each job its own mount and IPC namespaces and tmpfs,
``CAP_SETUID``/``CAP_SETGID`` to give it a uid, ``CAP_KILL`` to clear it away); when llmi runs
as root each job runs as a uid no earlier job had (so ``RLIMIT_NPROC`` counts only its own
processes, host files are protected by their permissions, and it cannot signal anything of
ours), and every job has rlimits and a seccomp filter. The supervisor's configuration and
bubblewrap's options travel on pipes, not on command lines a job could read. Where the host
lets llmi make one, each worker starts inside a memory cgroup of its own (``memory_cgroup``),
which bounds it with every process its jobs fork.
"""

from __future__ import annotations

import glob
import importlib.util
import itertools
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

__all__ = ["LEVELS", "LaunchPlan", "Launcher", "memory_cgroup", "probe_level", "remove_cgroup"]

log = logging.getLogger("llmi.tools.sandbox")

LEVELS = ("bwrap", "unshare", "rlimits")
INSIDE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inside")
WORKER_PATH = os.path.join(INSIDE_DIR, "worker.py")
_INSIDE = "/.llmi"  # where INSIDE_DIR is bound in the bwrap sandbox
_INSIDE_FONT_CACHE = "/.llmi-fontcache"
_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_SYS_ADMIN")
# each worker's jobs take uids from their own block, so no two jobs of this process share one
_UID_BLOCK = 1 << 16
_FIRST_BLOCK = 2**24 // _UID_BLOCK  # uids from 16M up: far above any account's
_uid_blocks = itertools.count(
    _FIRST_BLOCK + secrets.randbelow(2**31 // _UID_BLOCK - 2 * _FIRST_BLOCK)
)
_uid_lock = threading.Lock()
_cgroup_ids = itertools.count()
# the supervisor, the zygote with its libraries imported and the job process's own start
_WORKER_MEMORY = 768 << 20
_PACKAGES = ("numpy", "pandas", "matplotlib", "seaborn", "PIL")
_ETC = ("/etc/fonts", "/etc/ld.so.cache", "/etc/localtime", "/etc/alternatives")
_SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "TZ": "UTC",
    "MPLBACKEND": "Agg",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMEXPR_MAX_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
}


def _uniq_roots(paths: list[str]) -> list[str]:
    """Existing directories, without those already inside another one or inside /usr."""
    real = sorted({os.path.realpath(p) for p in paths if p and os.path.isdir(p)})
    out: list[str] = []
    for p in real:
        if p == "/usr" or p.startswith("/usr/"):
            continue
        if any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            continue
        out.append(p)
    return out


def interpreter_dirs(python: str = sys.executable) -> list[str]:
    """Directories the chart worker's interpreter reads: prefixes, stdlib, site-packages.

    Found without importing the plotting libraries (``find_spec`` only locates them).
    """
    import site
    import sysconfig

    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    paths += [
        sysconfig.get_paths().get(k, "") for k in ("stdlib", "platstdlib", "purelib", "platlib")
    ]
    try:
        paths += site.getsitepackages()
    except AttributeError:  # pragma: no cover - old virtualenv
        pass
    paths.append(os.path.dirname(os.path.realpath(python)))
    for name in _PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec and spec.origin:
            # the directory holding the package (its site-packages)
            paths.append(os.path.dirname(os.path.dirname(spec.origin)))
    # the python binary's own directory may hold only the interpreter; keep bin dirs small
    return _uniq_roots(paths)


def font_cache_files() -> list[str]:
    """The host's matplotlib font-list caches (found without importing matplotlib)."""
    dirs = []
    if os.environ.get("MPLCONFIGDIR"):
        dirs.append(os.environ["MPLCONFIGDIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    dirs.append(os.path.join(cache, "matplotlib"))
    files: list[str] = []
    for d in dirs:
        files += sorted(glob.glob(os.path.join(d, "fontlist-v*.json")))
    return [f for f in files if os.path.isfile(f) and os.path.getsize(f) < (16 << 20)]


def user_font_dirs() -> list[str]:
    home = os.path.expanduser("~")
    dirs = [
        os.path.join(home, ".local/share/fonts"),
        os.path.join(home, ".fonts"),
        "/usr/local/share/fonts",
    ]
    return [d for d in dirs if os.path.isdir(d)]


@dataclass(frozen=True)
class Limits:
    """Per-job resource limits (bytes, counts, seconds)."""

    memory: int = 1024 << 20  # address space on top of the warm worker's own
    fsize: int = 64 << 20  # largest file a job may write
    tmpfs: int = 256 << 20  # size of each job's own /tmp
    inodes: int = 16384  # files and directories each job's /tmp may hold
    nofile: int = 256
    nproc: int = 64  # processes and threads of the job's uid
    stack: int = 8 << 20  # the main thread's stack (and the default for new threads)
    max_output: int = 1 << 20  # bytes the code may print before it is stopped
    max_pixels: int = 40_000_000

    def worker_memory(self) -> int:
        """What one worker and everything its job forks may use together (its cgroup's cap)."""
        return _WORKER_MEMORY + self.memory + self.tmpfs

    def job_fields(self) -> dict:
        return {
            "memory": self.memory,
            "fsize": self.fsize,
            "nofile": self.nofile,
            "nproc": self.nproc,
            "stack": self.stack,
        }


@dataclass
class LaunchPlan:
    """One worker's command line, environment, configuration and clean-up.

    ``options`` (bubblewrap's) and ``config`` (the supervisor's) are sent on pipes, so neither
    shows on a command line inside the sandbox; ``argv`` puts the pipes' numbers in.
    """

    wrapper: list[str]  # the sandbox command in front of the interpreter
    interpreter: list[str]  # the interpreter and the worker script
    env: dict[str, str]
    cwd: str | None
    config: dict
    options: list[str] = field(default_factory=list)
    pidns: bool = False
    private_dir: str | None = None

    def argv(self, config_fd: int, options_fd: int | None) -> list[str]:
        wrapper = self.wrapper
        if self.options:
            wrapper = [*wrapper, "--args", str(options_fd), "--"]
        return [*wrapper, *self.interpreter, str(config_fd)]

    def cleanup(self) -> None:
        if self.private_dir:
            shutil.rmtree(self.private_dir, ignore_errors=True)


class Launcher:
    """Builds worker commands for one sandbox level."""

    def __init__(
        self, level: str, limits: Limits, python: str = sys.executable, prewarm: bool = True
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown sandbox level {level!r}; use one of {', '.join(LEVELS)}")
        self.level = level
        self.limits = limits
        self.python = python
        self.prewarm = prewarm
        self.is_root = os.geteuid() == 0

    def plan(self, fd_in: int, fd_out: int) -> LaunchPlan:
        plan: LaunchPlan = getattr(self, f"_plan_{self.level}")()
        uid_base = None
        if self.is_root:
            with _uid_lock:
                uid_base = next(_uid_blocks) * _UID_BLOCK
        plan.config.update(
            fd_in=fd_in,
            fd_out=fd_out,
            uid_base=uid_base,
            uid_count=_UID_BLOCK,
            pidns=plan.pidns,
            debug=bool(os.environ.get("LLMI_SANDBOX_DEBUG")),  # workers keep stderr (the log)
            limits=self.limits.job_fields(),
            tmpfs=self.limits.tmpfs,
            inodes=self.limits.inodes,
            prewarm=self.prewarm,
        )
        return plan

    def _keep(self, dirs: list[str]) -> list[str]:
        """Directories under /tmp a job still needs once its own tmpfs covers /tmp."""
        return [d for d in dirs if d.startswith("/tmp/")]

    def _plan_bwrap(self) -> LaunchPlan:
        opts = [
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox",
            "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                opts += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                opts += ["--ro-bind", top, top]
        interpreter = interpreter_dirs(self.python) + user_font_dirs()
        binds = [(p, p) for p in interpreter] + [(INSIDE_DIR, _INSIDE)]
        inside_caches = []
        for i, path in enumerate(font_cache_files()):
            dest = f"{_INSIDE_FONT_CACHE}/{i}/{os.path.basename(path)}"
            binds.append((path, dest))
            inside_caches.append(dest)
        # bwrap would create the missing parents of a mount point with mode 0700, which the
        # job's uid could not traverse: create them first, world-readable and empty.
        parents = {
            os.path.dirname(dest) for _, dest in binds + [(p, p) for p in _ETC if os.path.exists(p)]
        }
        ancestors = set()
        for d in parents:
            while d not in ("/", ""):
                ancestors.add(d)
                d = os.path.dirname(d)
        # The sandbox's /tmp comes before the binds: an interpreter or checkout that lives
        # under the host's /tmp (a CI clone, a venv in /tmp) is then bound on top of it, not
        # hidden. Jobs never write here: each gets its own tmpfs on /tmp.
        opts += ["--size", str(16 << 20), "--perms", "0755", "--tmpfs", "/tmp"]
        for d in sorted(ancestors, key=lambda p: (p.count("/"), p)):
            if d in ("/usr", "/tmp") or d.startswith("/usr/"):
                continue
            opts += ["--perms", "0755", "--dir", d]
        for path in _ETC:
            opts += ["--ro-bind-try", path, path]
        for src, dest in binds:
            opts += ["--ro-bind", src, dest]
        opts += [
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "0755", "--dir", "/tmp/.llmi-mpl",
            "--perms", "0755", "--dir", "/tmp/.llmi-cache",
            "--chdir", "/tmp",
        ]  # fmt: skip
        if self.is_root or _can_unshare_user():
            # Namespaced when rootless; as root, real capabilities, which the supervisor and
            # zygote keep (they never run model code) and every job sheds before it starts.
            for cap in _CAPS:
                opts += ["--cap-add", cap]
        for key, value in _private_env("/tmp").items():
            opts += ["--setenv", key, value]
        config = {"lazy": True, "job_tmp": "/tmp", "keep": self._keep(interpreter),
                  "font_cache": inside_caches, "workdir": "/tmp/job"}  # fmt: skip
        return LaunchPlan(
            wrapper=["bwrap"],
            interpreter=[self.python, "-I", "-B", f"{_INSIDE}/worker.py"],
            env={"PATH": _SANDBOX_ENV["PATH"]},
            cwd="/",
            config=config,
            options=opts,
            pidns=True,
        )

    def _plan_unshare(self) -> LaunchPlan:
        mounts = (
            "mount -t tmpfs -o size=16m,mode=0755 llmi-tmp /tmp && "
            "{ mount -t tmpfs -o size=1m,mode=1777 llmi-vartmp /var/tmp || true; } && "
            "{ mount -t tmpfs -o size=1m,mode=1777 llmi-shm /dev/shm || true; } && "
            'mkdir -m 0755 /tmp/.llmi-mpl /tmp/.llmi-cache && cd /tmp && exec "$@"'
        )
        wrapper = [
            "unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
            "--ipc", "--uts", "--mount", "--propagation", "private",
            "/bin/sh", "-c", mounts, "sh",
        ]  # fmt: skip
        config = {"job_tmp": "/tmp", "keep": [], "font_cache": font_cache_files(),
                  "workdir": "/tmp/job"}  # fmt: skip
        # the host's /tmp is covered by the sandbox's own before the worker starts
        return LaunchPlan(
            wrapper=wrapper,
            interpreter=[self.python, "-I", "-B", WORKER_PATH],
            env=_private_env("/tmp"),
            cwd="/",
            config=config,
            pidns=True,
        )

    def _plan_rlimits(self) -> LaunchPlan:
        private = tempfile.mkdtemp(prefix="llmi-sandbox-")
        env = _private_env(private)
        os.mkdir(env["MPLCONFIGDIR"])
        os.mkdir(env["XDG_CACHE_HOME"])
        os.chmod(private, 0o700 if not self.is_root else 0o711)
        keep = self._keep([*interpreter_dirs(self.python), INSIDE_DIR])
        config = {"job_tmp": "/tmp", "keep": keep, "font_cache": font_cache_files(),
                  "workdir": os.path.join(private, "job")}  # fmt: skip
        return LaunchPlan(
            wrapper=[],
            interpreter=[self.python, "-I", "-B", WORKER_PATH],
            env=env,
            cwd=private,
            config=config,
            private_dir=private,
        )


def memory_cgroup(limit: int) -> str | None:
    """A new memory cgroup for one worker, below this process's own, capped at ``limit`` bytes.

    ``RLIMIT_AS`` bounds each of a job's processes, not all of them; the cgroup bounds the
    worker with every process of its jobs. Returns its directory, or None where none can be
    made: no cgroup file system this process may write, or cgroup v2 without the memory
    controller delegated to it.
    """
    try:
        with open("/proc/self/cgroup") as fh:
            entries = [line.rstrip("\n").split(":", 2) for line in fh]
    except OSError:
        return None
    entries = [e for e in entries if len(e) == 3]
    v1 = [path for _, controllers, path in entries if "memory" in controllers.split(",")]
    v2 = [path for _, controllers, path in entries if controllers == ""]
    if v1:
        parent, limit_file = "/sys/fs/cgroup/memory" + v1[0], "memory.limit_in_bytes"
    elif v2:
        parent, limit_file = "/sys/fs/cgroup" + v2[0], "memory.max"
    else:
        return None
    path = os.path.join(parent, f"llmi-{os.getpid()}-{next(_cgroup_ids)}")
    try:
        os.mkdir(path)
    except OSError:
        return None
    try:
        with open(os.path.join(path, limit_file), "w") as fh:
            fh.write(str(limit))
    except OSError:  # cgroup v2 without the memory controller: no memory.max to write
        remove_cgroup(path)
        return None
    return path


def remove_cgroup(path: str, wait_s: float = 2.0) -> None:
    """Remove a worker's cgroup once its killed processes have finished exiting."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                log.warning("could not remove the sandbox cgroup %s", path)
                return
            time.sleep(0.02)


def in_cgroup(path: str | None, argv: list[str]) -> list[str]:
    """``argv`` started inside the cgroup ``path`` (a shell that moves itself there, then
    execs it, so every process the worker forks is born inside); ``argv`` when None.

    A move the host refuses leaves the worker as it would be without a cgroup, not unable to
    start.
    """
    if path is None:
        return argv
    move = 'echo $$ > "$0/cgroup.procs"; exec "$@"'
    return ["/bin/sh", "-c", move, path, *argv]


def _private_env(home: str) -> dict[str, str]:
    return dict(
        _SANDBOX_ENV,
        HOME=home,
        MPLCONFIGDIR=os.path.join(home, ".llmi-mpl"),
        XDG_CACHE_HOME=os.path.join(home, ".llmi-cache"),
        TMPDIR=home,
    )


def _can_unshare_user() -> bool:
    """Whether this (rootless) host lets bubblewrap create a user namespace, hence caps in it."""
    try:
        with open("/proc/sys/user/max_user_namespaces") as fh:
            return int(fh.read().strip() or 0) > 0
    except (OSError, ValueError):
        return False


def probe_level(level: str, python: str = sys.executable, timeout: float = 20.0) -> str | None:
    """Try to start a trivial interpreter at ``level``; None if it works, else why not."""
    if level == "rlimits":
        return None
    tool = "bwrap" if level == "bwrap" else "unshare"
    if shutil.which(tool) is None:
        return f"{tool} is not installed"
    plan = Launcher(level, Limits(), python).plan(3, 4)
    # Same sandbox, but the interpreter only proves it can start inside.
    argv = [*plan.wrapper, *plan.options, *(["--"] if plan.options else [])]
    argv += [python, "-I", "-S", "-c", "import os"]
    try:
        proc = subprocess.run(
            argv, env=plan.env, cwd=plan.cwd, stdin=subprocess.DEVNULL,
            capture_output=True, timeout=timeout, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{tool} failed: {exc}"
    finally:
        plan.cleanup()
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        return f"{tool} failed: {err[-1] if err else f'exit status {proc.returncode}'}"
    return None
