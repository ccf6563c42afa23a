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

At every level, when llmi runs as root, each job drops to a dedicated random uid (so
``RLIMIT_NPROC`` counts only the job's processes, host files are protected by their
permissions, and the job cannot signal its worker) and the worker sets rlimits on each job.
"""

from __future__ import annotations

import glob
import importlib.util
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass

__all__ = ["LEVELS", "LaunchPlan", "Launcher", "probe_level"]

log = logging.getLogger("llmi.tools.sandbox")

LEVELS = ("bwrap", "unshare", "rlimits")
_HERE = os.path.dirname(os.path.abspath(__file__))
WORKER_PATH = os.path.join(_HERE, "worker.py")
RENDER_PATH = os.path.join(_HERE, "render.py")  # imported by the worker
_INSIDE_WORKER = "/.llmi/worker.py"
_INSIDE_RENDER = "/.llmi/render.py"
_INSIDE_FONT_CACHE = "/.llmi/fontcache"
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
    tmpfs: int = 256 << 20  # size of the private /tmp (bwrap, unshare)
    nofile: int = 256
    nproc: int = 64  # processes and threads of the job's uid
    max_output: int = 1 << 20  # bytes the code may print before it is stopped
    max_pixels: int = 40_000_000

    def job_fields(self) -> dict:
        return {
            "memory": self.memory,
            "fsize": self.fsize,
            "nofile": self.nofile,
            "nproc": self.nproc,
        }


@dataclass
class LaunchPlan:
    """One worker's command line, environment and clean-up."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    uid: int | None
    private_dir: str | None = None

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

    def _new_uid(self) -> int | None:
        # A uid no account uses: the job's processes are then the only ones with it.
        return 1_000_000 + secrets.randbelow(900_000_000) if self.is_root else None

    def plan(self, fd_in: int, fd_out: int) -> LaunchPlan:
        uid = self._new_uid()
        return getattr(self, f"_plan_{self.level}")(uid, fd_in, fd_out)

    def _config(self, uid: int | None, fd_in: int, fd_out: int, **extra) -> str:
        debug = bool(os.environ.get("LLMI_SANDBOX_DEBUG"))  # workers keep stderr (to the log file)
        return json.dumps(
            {
                "uid": uid,
                "fd_in": fd_in,
                "fd_out": fd_out,
                "debug": debug,
                "limits": self.limits.job_fields(),
                "prewarm": self.prewarm,
                **extra,
            }
        )

    def _plan_bwrap(self, uid: int | None, fd_in: int, fd_out: int) -> LaunchPlan:
        argv = [
            "bwrap",
            "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--hostname", "sandbox",
            "--die-with-parent", "--new-session", "--clearenv",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                argv += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                argv += ["--ro-bind", top, top]
        binds = [(p, p) for p in interpreter_dirs(self.python) + user_font_dirs()]
        binds += [(WORKER_PATH, _INSIDE_WORKER), (RENDER_PATH, _INSIDE_RENDER)]
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
        # The private /tmp comes before the binds: an interpreter or checkout that lives under
        # the host's /tmp (a CI clone, a venv in /tmp) is then bound on top of it, not hidden.
        argv += ["--size", str(self.limits.tmpfs), "--perms", "1777", "--tmpfs", "/tmp"]
        for d in sorted(ancestors, key=lambda p: (p.count("/"), p)):
            if d in ("/usr", "/tmp") or d.startswith("/usr/"):
                continue
            argv += ["--perms", "0755", "--dir", d]
        for path in _ETC:
            argv += ["--ro-bind-try", path, path]
        for src, dest in binds:
            argv += ["--ro-bind", src, dest]
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--perms", "0755", "--dir", "/tmp/.llmi-mpl",
            "--perms", "0755", "--dir", "/tmp/.llmi-cache",
            "--chdir", "/tmp",
        ]  # fmt: skip
        if self.is_root:
            # The worker stays root only to fork jobs that drop to ``uid`` and to kill them.
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_KILL"]
        env = dict(
            _SANDBOX_ENV,
            HOME="/tmp",
            MPLCONFIGDIR="/tmp/.llmi-mpl",
            XDG_CACHE_HOME="/tmp/.llmi-cache",
            TMPDIR="/tmp",
        )
        for key, value in env.items():
            argv += ["--setenv", key, value]
        config = self._config(
            uid,
            fd_in,
            fd_out,
            pidns=True,
            private_tmp=True,
            workdir="/tmp/job",
            font_cache=inside_caches,
        )
        argv += ["--", self.python, "-I", "-B", _INSIDE_WORKER, config]
        return LaunchPlan(argv=argv, env={"PATH": _SANDBOX_ENV["PATH"]}, cwd="/", uid=uid)

    def _plan_unshare(self, uid: int | None, fd_in: int, fd_out: int) -> LaunchPlan:
        size = self.limits.tmpfs
        mounts = (
            f"mount -t tmpfs -o size={size},mode=1777 llmi-tmp /tmp && "
            "{ mount -t tmpfs -o size=1m,mode=1777 llmi-vartmp /var/tmp || true; } && "
            "{ mount -t tmpfs -o size=1m,mode=1777 llmi-shm /dev/shm || true; } && "
            'mkdir -m 0755 /tmp/.llmi-mpl /tmp/.llmi-cache && cd /tmp && exec "$@"'
        )
        config = self._config(
            uid,
            fd_in,
            fd_out,
            pidns=True,
            private_tmp=True,
            workdir="/tmp/job",
            font_cache=font_cache_files(),
        )
        argv = [
            "unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
            "--ipc", "--uts", "--mount", "--propagation", "private",
            "/bin/sh", "-c", mounts, "sh",
            self.python, "-I", "-B", WORKER_PATH, config,
        ]  # fmt: skip
        env = dict(
            _SANDBOX_ENV,
            HOME="/tmp",
            MPLCONFIGDIR="/tmp/.llmi-mpl",
            XDG_CACHE_HOME="/tmp/.llmi-cache",
            TMPDIR="/tmp",
        )
        return LaunchPlan(argv=argv, env=env, cwd="/", uid=uid)

    def _plan_rlimits(self, uid: int | None, fd_in: int, fd_out: int) -> LaunchPlan:
        private = tempfile.mkdtemp(prefix="llmi-sandbox-")
        mpl = os.path.join(private, ".llmi-mpl")
        cache = os.path.join(private, ".llmi-cache")
        os.mkdir(mpl)
        os.mkdir(cache)
        if uid is not None:
            os.chown(private, uid, uid)
        os.chmod(private, 0o700 if uid is None else 0o755)
        config = self._config(
            uid,
            fd_in,
            fd_out,
            pidns=False,
            workdir=os.path.join(private, "job"),
            font_cache=font_cache_files(),
        )
        env = dict(
            _SANDBOX_ENV, HOME=private, MPLCONFIGDIR=mpl, XDG_CACHE_HOME=cache, TMPDIR=private
        )
        argv = [self.python, "-I", "-B", WORKER_PATH, config]
        return LaunchPlan(argv=argv, env=env, cwd=private, uid=uid, private_dir=private)


def probe_level(level: str, python: str = sys.executable, timeout: float = 20.0) -> str | None:
    """Try to start a trivial interpreter at ``level``; None if it works, else why not."""
    if level == "rlimits":
        return None
    tool = "bwrap" if level == "bwrap" else "unshare"
    if shutil.which(tool) is None:
        return f"{tool} is not installed"
    launcher = Launcher(level, Limits(), python)
    plan = launcher.plan(3, 4)
    # Same command, but the interpreter only proves it can start inside.
    argv = plan.argv[: plan.argv.index(python)] + [python, "-I", "-S", "-c", "import os"]
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
