"""The zygote: a warm interpreter that forks one process per job and never sees a job itself.

The supervisor (``worker.py``) forks the zygote before either has read anything from llmi, and
the zygote only ever hears two things from it on a private socket: "spawn a job process for
uid N", and end of file. It never reads a job's code, output or chart, so no object, buffer or
freed memory of an earlier job can be inherited by a later one: each job process is a fork of
a state no job has touched.

1. **Start**: import the plotting libraries (``Renderer.prepare_core``), say ready, then finish
   the rest (pandas, seaborn, preloads, a warm-up chart) one step at a time between requests.
2. **Spawn**: fork a job process with three fresh pipes (job in, result out, output out) and
   hand the supervisor its ends and a pidfd over the socket (``SCM_RIGHTS``).
3. **Reap**: report each job process's exit status to the supervisor.

The job process (``job_main``) makes its clean start (``jail.enter``), says ready on its result
pipe, waits for its job, runs it (``Renderer.run``) and answers with one result frame.
"""

from __future__ import annotations

import gc
import io
import json
import os
import resource
import select
import shutil
import signal
import socket
import sys
import time
import traceback

import frames
import jail
from render import Renderer

_RES_FD, _JOB_FD = 3, 4  # in a job process, after its descriptors are rearranged
_LAZY_VM = 256 << 20  # address space pandas or seaborn take when a job imports them itself


class Zygote:
    def __init__(self, config: dict, sock: socket.socket) -> None:
        self.config = config
        self.sock = sock
        memory = int(config.get("limits", {}).get("memory") or 0)
        self.renderer = Renderer(memory_limit=memory)
        self.rest = None  # the steps of prepare_rest still to run
        self.children: dict[int, int] = {}  # pidfd -> pid of each job process

    # 1. start
    def main(self) -> None:
        try:
            jail.prepare()  # the seccomp filter, built once and inherited by every job
            self._seed_font_cache()
            self.renderer.prepare_core()
            self.rest = self.renderer.prepare_rest()
            if not self.config.get("lazy"):
                while self.rest is not None:
                    self._step()
        except BaseException as exc:  # noqa: BLE001 - told to the supervisor, then we exit
            self._send({"type": "failed", "message": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()[-2000:]})  # fmt: skip
            os._exit(1)
        self._send(
            {
                "type": "ready",
                "cjk_font": self.renderer.cjk_font,
                "python": sys.version.split()[0],
                "machine": os.uname().machine,
            }
        )
        self._serve()

    def _seed_font_cache(self) -> None:
        """Copy the host's matplotlib font list in, so start-up does not rescan every font."""
        target = os.environ.get("MPLCONFIGDIR")
        if not target:
            return
        os.makedirs(target, exist_ok=True)
        for src in self.config.get("font_cache", []):
            try:
                shutil.copyfile(src, os.path.join(target, os.path.basename(src)))
            except OSError:
                pass

    def _step(self) -> None:
        try:
            next(self.rest)
        except StopIteration:
            self.rest = None
            gc.collect()
            gc.freeze()  # keep the forked job processes from copying the zygote's heap pages

    def _serve(self) -> None:
        while True:
            wait = 0 if self.rest is not None else None
            ready, _, _ = select.select([self.sock, *self.children], [], [], wait)
            if not ready:
                self._step()  # nothing asked of us: get on with the warm-up
                continue
            for fd in ready:
                if fd is self.sock:
                    self._request()
                else:
                    self._reap(fd)

    def _request(self) -> None:
        try:
            data = self.sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            os._exit(0)  # the supervisor is gone; our job processes die with us (PDEATHSIG)
        message = json.loads(data)
        if message.get("type") == "spawn":
            self._spawn(message.get("uid"))

    # 2. spawn
    def _spawn(self, uid: int | None) -> None:
        r_job, w_job = os.pipe()
        r_res, w_res = os.pipe()
        r_out, w_out = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the job process
            try:  # every other descriptor of ours is closed there
                job_main(self.renderer, self.config, uid, r_job, w_res, w_out)
            finally:
                os._exit(70)
        for fd in (r_job, w_res, w_out):
            os.close(fd)
        try:
            os.setpgid(pid, pid)  # also done by the child: whichever runs first
        except OSError:
            pass
        pidfd = os.pidfd_open(pid)
        message = json.dumps({"type": "spawned", "pid": pid, "uid": uid}).encode()
        socket.send_fds(self.sock, [message], [w_job, r_res, r_out, pidfd])
        for fd in (w_job, r_res, r_out):
            os.close(fd)
        self.children[pidfd] = pid

    # 3. reap
    def _reap(self, pidfd: int) -> None:
        pid = self.children.pop(pidfd)
        os.close(pidfd)
        _, status = os.waitpid(pid, 0)
        self._send({"type": "exited", "pid": pid, "status": status})

    def _send(self, message: dict) -> None:
        try:
            self.sock.send(json.dumps(message).encode())
        except OSError:
            os._exit(0)


def job_main(  # pragma: no cover - runs in the job process
    renderer: Renderer, config: dict, uid: int | None, r_job: int, w_res: int, w_out: int
) -> None:
    """One job's process: clean start, ready, wait for the job, run it, answer, exit."""
    os.setpgid(0, 0)
    jail.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the zygote
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(w_out, 1)
    os.dup2(w_out, 2)
    moved = [os.dup(w_res), os.dup(r_job)]
    os.dup2(moved[0], _RES_FD)
    os.dup2(moved[1], _JOB_FD)
    os.closerange(_JOB_FD + 1, 1 << 20)  # the zygote's socket and pipes above all
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    for name, fd in (("stdout", 1), ("stderr", 2)):
        raw = io.FileIO(fd, "w", closefd=False)
        setattr(sys, name, io.TextIOWrapper(raw, line_buffering=True, errors="replace"))
    started, cpu = time.perf_counter(), time.process_time()
    try:
        lazy = (renderer.pd is None) + (renderer.sns is None)
        facts = jail.enter(config, uid, extra_vm=lazy * _LAZY_VM)
        _fresh_home(facts["home"])
    except BaseException as exc:  # noqa: BLE001 - no clean start: this process must not run code
        frames.write(_RES_FD, {"type": "jail_failed", "message": f"{type(exc).__name__}: {exc}"})
        os._exit(70)
    facts["setup_ms"] = round((time.perf_counter() - started) * 1000, 3)
    facts["setup_cpu_ms"] = round((time.process_time() - cpu) * 1000, 3)
    frames.write(_RES_FD, {"type": "ready", **facts})
    # Prewarm only when no job is already waiting (a busy pool wants the CPU for jobs), and
    # not in a cold start: there the throw-away chart would cost a whole first render.
    prewarm = config.get("prewarm", True) and renderer.warm
    if prewarm and not select.select([_JOB_FD], [], [], 0.03)[0]:
        renderer.prewarm()
    frame = frames.read(_JOB_FD)
    if frame is None:
        os._exit(0)  # the worker is going away
    os.close(_JOB_FD)
    job = frame[0]
    cpu = int(float(job.get("timeout", 20.0))) + 2
    jail.set_limit(resource.RLIMIT_CPU, cpu)
    gc.disable()  # a short-lived process; the address-space limit still bounds it
    job_pid = os.getpid()
    try:
        header, png = renderer.run(job.get("code", ""), job, job_pid)
    except BaseException as exc:  # noqa: BLE001 - rendering failed (memory, a broken figure)
        header, png = renderer.failure(exc), b""
    if os.getpid() != job_pid:
        os._exit(0)  # a process the code forked got here: only the job's own answer counts
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - the code may have closed them
        pass
    try:
        frames.write(_RES_FD, {"type": "result", **header}, png)
    finally:
        os._exit(0)


def _fresh_home(home: str) -> None:
    """Point HOME, TMPDIR and matplotlib's folders at the job's own empty place and go there."""
    for name, sub in (("MPLCONFIGDIR", ".llmi-mpl"), ("XDG_CACHE_HOME", ".llmi-cache")):
        path = os.path.join(home, sub)
        os.makedirs(path, exist_ok=True)
        os.environ[name] = path
    os.environ["HOME"] = os.environ["TMPDIR"] = home
    os.chdir(home)


def main(config: dict, sock: socket.socket) -> None:
    jail.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the supervisor
    Zygote(config, sock).main()
