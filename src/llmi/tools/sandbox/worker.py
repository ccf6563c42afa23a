"""The chart worker that runs inside the sandbox (a standalone script; it never imports llmi).

One worker is a *zygote*: it imports numpy, pandas, matplotlib (Agg) and seaborn once, warms
matplotlib's font and renderer caches with a throw-away chart, and then serves jobs from the
parent over a private pipe (fd 3 in, fd 4 out). For each job it ``fork``s a child that

1. leaves the zygote's process group and closes every descriptor but its own two pipes
   (so the code can never write on the parent's protocol pipe),
2. drops to the worker's unprivileged uid (when the zygote is root), sets rlimits (CPU,
   address space, processes, file size, open files, no core dumps),
3. points fds 1 and 2 at an output pipe the zygote drains (a bounded tail is kept for error
   messages), so ``print`` never touches the image,
4. runs the code in fresh globals holding ``plt``, ``pd``, ``sns`` and ``np``, with
   ``plt.show`` a no-op and ``savefig`` writing nothing (the figure is kept instead),
5. renders every figure that has something drawn on it to PNG (several are stacked
   vertically) and sends one result frame back to the zygote.

Because every job runs in a fresh fork, nothing a job does to module state, threads, signal
handlers or the working directory survives it. After each job the zygote kills the job's
process group and, where it may (own PID namespace, or a dedicated uid), every other process
left in the sandbox.

Frames on every pipe: 8 bytes (JSON length, binary length, both big-endian uint32), the JSON
header, then the binary payload.
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
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script, with -I
from render import Renderer  # the sibling render.py

FD_IN, FD_OUT = 3, 4  # replaced from the config at start-up
MAX_JSON = 1 << 20
MAX_BINARY = 64 << 20


# --- framing ------------------------------------------------------------------------------


def write_frame(fd: int, header: dict, payload: bytes = b"") -> None:
    data = json.dumps(header).encode()
    buf = struct.pack(">II", len(data), len(payload)) + data + payload
    view = memoryview(buf)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int) -> tuple[dict, bytes] | None:
    head = _read_exact(fd, 8)
    if head is None:
        return None
    jlen, blen = struct.unpack(">II", head)
    if jlen > MAX_JSON or blen > MAX_BINARY:
        raise ValueError("frame too large")
    data = _read_exact(fd, jlen)
    payload = _read_exact(fd, blen) if blen else b""
    if data is None or payload is None:
        return None
    return json.loads(data), payload


def parse_frame(buf: bytes) -> tuple[dict, bytes]:
    """Decode one complete frame held in memory (what a job's child sent)."""
    if len(buf) < 8:
        raise ValueError("short frame")
    jlen, blen = struct.unpack(">II", buf[:8])
    if jlen > MAX_JSON or blen > MAX_BINARY or len(buf) != 8 + jlen + blen:
        raise ValueError("malformed frame")
    return json.loads(buf[8 : 8 + jlen]), buf[8 + jlen :]


# --- the zygote ---------------------------------------------------------------------------


class Zygote:
    def __init__(self, config: dict) -> None:
        self.config = config
        self.uid = config.get("uid")  # drop to this uid in each job (None: stay as we are)
        self.pidns = bool(config.get("pidns"))  # we run in our own PID namespace
        self.pid1 = os.getpid() == 1  # we reap orphans ourselves
        self.renderer: Renderer | None = None
        self.prctl = None
        self.base_vm_kb = 0
        self.spare: tuple[int, int, int, int] | None = None

    # 1. imports and warm-up, once
    def prepare(self) -> None:
        os.environ.setdefault("MPLBACKEND", "Agg")
        self._seed_font_cache()
        try:
            import ctypes

            self.prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (ImportError, OSError, AttributeError):
            self.prctl = None
        memory = int(self.config.get("limits", {}).get("memory") or 0)
        self.renderer = Renderer(memory_limit=memory)
        self.renderer.prepare()
        self.base_vm_kb = _vm_size_kb()
        gc.collect()
        gc.freeze()  # keep the forked children from copying the zygote's heap pages

    def _seed_font_cache(self) -> None:
        """Copy the host's matplotlib font list in, so start-up does not rescan every font."""
        import shutil

        target = os.environ.get("MPLCONFIGDIR")
        if not target:
            return
        os.makedirs(target, exist_ok=True)
        for src in self.config.get("font_cache", []):
            try:
                shutil.copyfile(src, os.path.join(target, os.path.basename(src)))
            except OSError:
                pass

    # 2. the serving loop
    def serve(self) -> None:
        self._prefork()
        write_frame(
            FD_OUT,
            {
                "type": "ready",
                "pid": os.getpid(),
                "cjk_font": self.renderer.cjk_font,
                "python": sys.version.split()[0],
                "uid": os.getuid(),
            },
        )
        while True:
            frame = read_frame(FD_IN)
            if frame is None:  # the parent went away
                return
            header, _ = frame
            if header.get("type") == "job":
                started = time.monotonic()
                pid, result, png = self.run_job(header)
                result["id"] = header.get("id")
                result["recycle"] = self._tmp_filling()
                result["wall_s"] = round(time.monotonic() - started, 4)
                write_frame(FD_OUT, result, png)
                # Off the critical path: clear what the job left, fork the next job's process.
                self._clean_up(pid)
                self._prefork()
            elif header.get("type") == "ping":
                write_frame(FD_OUT, {"type": "pong", "id": header.get("id")})

    def _prefork(self) -> None:
        """Fork (and set up) the process that will run the next job, before it arrives."""
        r_job, w_job = os.pipe()
        r_res, w_res = os.pipe()
        r_out, w_out = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            try:
                for fd in (w_job, r_res, r_out):
                    os.close(fd)
                self.child(r_job, w_res, w_out)
            except BaseException:
                try:  # set-up failed before the code ran: say why on the output pipe
                    os.write(2, traceback.format_exc()[-2000:].encode("utf-8", "replace"))
                except BaseException:
                    pass
            finally:
                os._exit(70)
        for fd in (r_job, w_res, w_out):
            os.close(fd)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass
        self.spare = (pid, w_job, r_res, r_out)

    def run_job(self, job: dict) -> tuple[int, dict, bytes]:
        if self.pid1:
            _reap_all()  # orphans killed after the last job, now dead
        timeout = float(job.get("timeout", 20.0))
        max_output = int(job.get("max_output", 1 << 20))
        message = {
            "code": job.get("code", ""),
            "timeout": timeout,
            "max_pixels": job.get("max_pixels"),
        }
        for attempt in range(2):
            if self.spare is None:
                self._prefork()
            pid, w_job, r_res, r_out = self.spare
            self.spare = None
            try:
                write_frame(w_job, message)
                break
            except OSError:  # the spare died while it waited: use a fresh one
                _kill_group(pid)
                os.waitpid(pid, 0)
                os.close(r_res)
                os.close(r_out)
                if attempt:
                    raise
            finally:
                os.close(w_job)
        try:
            result, png = self._supervise(pid, r_res, r_out, timeout, max_output)
            return pid, result, png
        finally:
            os.close(r_res)
            os.close(r_out)

    def _supervise(
        self, pid: int, r_res: int, r_out: int, timeout: float, max_output: int
    ) -> tuple[dict, bytes]:
        deadline = time.monotonic() + timeout
        pidfd = os.pidfd_open(pid)
        for fd in (r_res, r_out):
            os.set_blocking(fd, False)
        res = bytearray()
        tail = bytearray()
        printed = 0
        status = None
        failure: dict | None = None
        open_fds = {r_res, r_out}
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    failure = {
                        "kind": "timeout",
                        "message": f"the code ran longer than the {timeout:.3g} s time limit "
                        "and was killed",
                    }
                    break
                ready, _, _ = select.select([*open_fds, pidfd], [], [], left)
                for fd in ready:
                    if fd == pidfd:
                        continue
                    chunk = _read_some(fd)
                    if chunk is None:
                        continue
                    if not chunk:
                        open_fds.discard(fd)
                    elif fd == r_res:
                        res += chunk
                        if len(res) > MAX_BINARY + MAX_JSON:
                            failure = {"kind": "protocol", "message": "the result was too large"}
                    else:
                        printed += len(chunk)
                        tail += chunk
                        del tail[:-4096]
                        if printed > max_output:
                            failure = {
                                "kind": "output",
                                "message": f"the code printed more than {_size(max_output)} "
                                "and was stopped",
                            }
                if failure:
                    break
                if pidfd in ready:
                    # The child is gone: what it wrote is already in the pipes.
                    for fd in open_fds:
                        while chunk := _read_some(fd):
                            if fd == r_res:
                                res += chunk
                            else:
                                printed += len(chunk)
                                tail += chunk
                                del tail[:-4096]
                    break
        finally:
            os.close(pidfd)
        if failure:
            _kill_group(pid)
        _, status = os.waitpid(pid, 0)
        out_tail = tail.decode("utf-8", "replace")
        if failure:
            failure.update(type="result", ok=False, output=out_tail)
            return failure, b""
        if res:
            try:
                header, png = parse_frame(bytes(res))
            except (ValueError, json.JSONDecodeError):
                return (
                    {
                        "type": "result",
                        "ok": False,
                        "kind": "protocol",
                        "message": "the job sent a malformed result",
                        "output": out_tail,
                    },
                    b"",
                )
            header.update(type="result", output=out_tail)
            if header.get("ok") and (not png.startswith(b"\x89PNG") or len(png) < 32):
                return (
                    {
                        "type": "result",
                        "ok": False,
                        "kind": "protocol",
                        "message": "the job sent something that is not a PNG",
                        "output": out_tail,
                    },
                    b"",
                )
            return header, png
        return {"type": "result", "ok": False, "output": out_tail, **_describe_exit(status)}, b""

    def _tmp_filling(self) -> bool:
        """True when the private /tmp is over half full (files a job could not delete)."""
        if not self.config.get("private_tmp"):
            return False
        try:
            st = os.statvfs("/tmp")
        except OSError:
            return False
        return st.f_blocks > 0 and st.f_bfree < st.f_blocks // 2

    def _clean_up(self, pid: int) -> None:
        """Kill whatever the job left running (daemons that left its process group too)."""
        _kill_group(pid)
        if self.pidns:
            # In our own PID namespace kill(-1) reaches every process in the sandbox except
            # its init and us, and nothing outside it.
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
            # SIGKILL is delivered asynchronously: wait until the killed processes are dead
            # (zombies at most), so the next job never sees the last one's leftovers.
            _wait_for_others_to_die(deadline=time.monotonic() + 2.0)
        elif self.uid is not None and os.geteuid() == 0:
            # No PID namespace: a throw-away process with the jobs' dedicated uid kills every
            # process of that uid (only job processes have it); kill(-1) as root here would
            # reach the whole host.
            sweeper = os.fork()
            if sweeper == 0:  # pragma: no cover - runs in the sweeper
                try:
                    os.setgroups([])
                    os.setgid(self.uid)
                    os.setuid(self.uid)
                    os.kill(-1, signal.SIGKILL)
                finally:
                    os._exit(0)
            os.waitpid(sweeper, 0)
        if self.pid1 or self.pidns:
            _reap_all()

    # 3. the job itself (in the forked child)
    def child(self, r_job: int, w_res: int, w_out: int) -> None:  # pragma: no cover
        """The next job's process: set up now, then wait for the code and run it."""
        os.setpgid(0, 0)
        self.job_pid = os.getpid()
        if self.prctl is not None:
            self.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the zygote
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 0)
        os.dup2(w_out, 1)
        os.dup2(w_out, 2)
        res_fd, job_fd = 3, 4
        moved = [os.dup(w_res), os.dup(r_job)]
        os.dup2(moved[0], res_fd)
        os.dup2(moved[1], job_fd)
        # everything else goes, the parent's protocol pipes above all
        os.closerange(job_fd + 1, 1 << 20)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        sys.stdout = io.TextIOWrapper(
            io.FileIO(1, "w", closefd=False), line_buffering=True, errors="replace"
        )
        sys.stderr = io.TextIOWrapper(
            io.FileIO(2, "w", closefd=False), line_buffering=True, errors="replace"
        )
        self._drop_privileges()
        self._set_limits()
        self._fresh_workdir()
        # Prewarm only when no job is already waiting (a busy pool wants the CPU for jobs).
        if self.config.get("prewarm", True) and not select.select([job_fd], [], [], 0.03)[0]:
            self.renderer.prewarm()
        frame = read_frame(job_fd)
        if frame is None:
            os._exit(0)  # the worker is going away
        os.close(job_fd)
        job = frame[0]
        cpu = int(float(job.get("timeout", 20.0))) + 2
        _set_limit(resource.RLIMIT_CPU, cpu, cpu + 1)
        gc.disable()  # a short-lived process; the address-space limit still bounds it
        try:
            header, png = self.renderer.run(job.get("code", ""), job, self.job_pid)
        except BaseException as exc:  # noqa: BLE001 - rendering failed (memory, a broken figure)
            header, png = self.renderer.failure(exc), b""
        if os.getpid() != self.job_pid:
            os._exit(0)  # a process the code forked got here: only the job's own answer counts
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException:
            pass
        try:
            write_frame(res_fd, header, png)
        finally:
            os._exit(0)

    def _drop_privileges(self) -> None:
        if self.uid is None or os.geteuid() != 0:
            return
        os.setgroups([])
        os.setgid(self.uid)
        os.setuid(self.uid)

    def _set_limits(self) -> None:
        limits = self.config.get("limits", {})
        wanted = {
            resource.RLIMIT_CORE: 0,
            resource.RLIMIT_FSIZE: limits.get("fsize"),
            resource.RLIMIT_NOFILE: limits.get("nofile"),
            resource.RLIMIT_NPROC: limits.get("nproc"),
        }
        if limits.get("memory"):
            wanted[resource.RLIMIT_AS] = self.base_vm_kb * 1024 + int(limits["memory"])
        for which, value in wanted.items():
            if value is not None:
                _set_limit(which, value, value)

    def _fresh_workdir(self) -> None:
        # Only the job directory itself is recreated: never scan and delete elsewhere (at the
        # weaker levels /tmp may be the host's).
        base = self.config.get("workdir") or "/tmp/job"
        shutil.rmtree(base, ignore_errors=True)
        if self.config.get("private_tmp") and self.uid is not None:
            # /tmp is this sandbox's own tmpfs and the uid is ours alone: what earlier jobs
            # left there goes, so one job never sees another's files.
            for entry in os.scandir("/tmp"):
                try:
                    if entry.stat(follow_symlinks=False).st_uid != self.uid:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                except OSError:
                    pass
        os.makedirs(base, exist_ok=True)
        os.chdir(base)
        os.environ["TMPDIR"] = base


# --- helpers ------------------------------------------------------------------------------


def _size(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def _read_some(fd: int) -> bytes | None:
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _set_limit(which: int, soft: int, hard: int) -> None:
    _, cur_hard = resource.getrlimit(which)
    if cur_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, cur_hard), min(hard, cur_hard)
    try:
        resource.setrlimit(which, (soft, hard))
    except (ValueError, OSError):
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _wait_for_others_to_die(deadline: float) -> None:
    """In the sandbox's PID namespace: poll until only init, this worker and zombies remain."""
    me = os.getpid()
    while time.monotonic() < deadline:
        alive = False
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in (1, me):
                continue
            try:
                with open(f"/proc/{name}/stat") as fh:
                    state = fh.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue  # gone already
            if state not in ("Z", "X"):
                alive = True
                break
        if not alive:
            return
        _reap_all()
        time.sleep(0.002)


def _reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            # something survived the sweep (no permission to kill it); leave it for now
            return


def _vm_size_kb() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _describe_exit(status: int) -> dict:
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        reason = {
            "SIGXCPU": "it used up its CPU time limit",
            "SIGKILL": "killed (perhaps out of memory, or by the code itself)",
            "SIGSEGV": "it crashed (segmentation fault)",
            "SIGXFSZ": "it exceeded the file size limit",
            "SIGABRT": "it aborted",
        }.get(name, "")
        kind = "cpu" if name == "SIGXCPU" else "signal"
        extra = f": {reason}" if reason else ""
        return {"kind": kind, "message": f"the code was killed by {name}{extra}"}
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return {
        "kind": "exit",
        "message": f"the code exited (status {code}) before the chart was rendered",
    }


def main() -> None:
    global FD_IN, FD_OUT
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    FD_IN, FD_OUT = int(config.get("fd_in", FD_IN)), int(config.get("fd_out", FD_OUT))
    for name in ("SIGINT", "SIGTERM", "SIGPIPE", "SIGHUP"):
        # the parent ends us with SIGKILL or by closing the job pipe
        signal.signal(
            getattr(signal, name), signal.SIG_IGN if name != "SIGTERM" else signal.SIG_DFL
        )
    zygote = Zygote(config)
    try:
        zygote.prepare()
    except BaseException as exc:
        write_frame(
            FD_OUT,
            {
                "type": "failed",
                "message": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()[-2000:],
            },
        )
        raise SystemExit(1)
    # After start-up nothing of ours should write to the inherited stderr.
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    if not config.get("debug"):
        os.dup2(null, 2)
    zygote.serve()


if __name__ == "__main__":
    main()
