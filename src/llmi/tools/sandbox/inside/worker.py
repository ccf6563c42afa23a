"""The supervisor: the sandbox's first process, between llmi and the job processes.

Started as ``python -I -B worker.py CONFIG_FD`` (the configuration arrives on a pipe, so no
command line shows it). Standard library only, and small: it forks the zygote (``zygote.py``)
*before* reading anything from llmi, then for each job

1. takes the job process the zygote prepared (forked, in its clean start, waiting) and checks
   that it made its clean start; a second one is tried, and a worker that cannot give a job a
   clean start says so (``unhealthy``) and is replaced by llmi;
2. writes the job to it and watches it: the time limit, the output cap, the result cap;
3. reads its one result frame and trusts none of it: exactly one well-formed frame, only the
   fields it expects, of the types it expects, the message shortened, the payload a PNG
   (which llmi checks again, fully);
4. answers llmi, then clears the job away: its process group, every process of its uid (a
   uid no other job had; without one, every process in the sandbox but ours), and where the job
   had no namespace of its own, its directory; then asks the zygote for the next job process.
"""

from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import socket
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run as a script, with -I
import frames  # noqa: E402 - the sibling frames.py

# the kinds of failure a job may report of itself (never "unhealthy": only we can say that)
_KINDS = frozenset({"syntax", "exit", "exception", "memory", "empty", "too_large"})
_MAX_MESSAGE = 2000
_READY_TIMEOUT = 30.0  # a job process's clean start takes milliseconds; this is a hang
_CLEAR_TIMEOUT = 15.0  # killed processes take milliseconds to go, seconds on a loaded host


class Spare:
    """A job process the zygote forked: its pid, uid, our ends of its pipes and a pidfd."""

    def __init__(self, pid: int, uid: int | None, fds: list[int]) -> None:
        self.pid, self.uid = pid, uid
        self.job_w, self.res_r, self.out_r, self.pidfd = fds
        self.setup: dict = {}

    def close(self) -> None:
        for fd in (self.job_w, self.res_r, self.out_r, self.pidfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.job_w = self.res_r = self.out_r = self.pidfd = -1


class Supervisor:
    def __init__(self, config: dict, sock: socket.socket, zygote: int) -> None:
        self.config = config
        self.sock = sock
        self.zygote = zygote
        self.fd_in, self.fd_out = int(config["fd_in"]), int(config["fd_out"])
        self.pidns = bool(config.get("pidns"))
        self.pid1 = os.getpid() == 1  # then we reap the sandbox's orphans
        base = config.get("uid_base")
        count = int(config.get("uid_count", 1 << 20))
        self.uids = iter(range(base + 1, base + count)) if base is not None else None
        self.sweeper = base  # the block's first uid, which no job ever has (see _as_uid)
        self.spare: Spare | None = None  # the next job's process, once the zygote forked it
        self.next_uid: int | None = None  # the uid asked for it
        self.pending = False  # asked the zygote for it, no answer yet
        self.exits: dict[int, int] = {}  # wait statuses the zygote reported
        self.problem: str | None = None  # why the next job could not get a clean start
        self.cleared = {"clear_ms": 0.0, "clear_cpu_ms": 0.0}  # clearing the last job away took

    # --- the serving loop -----------------------------------------------------------------

    def serve(self) -> None:
        startup = float(self.config.get("startup", 120))
        ready = self._from_zygote("ready", time.monotonic() + startup)
        if ready is None or ready.get("type") != "ready":
            frames.write(self.fd_out, ready or {"type": "failed", "message": "the zygote died"})
            return
        self._ask_for_spare()  # forked while llmi sends the first job
        frames.write(self.fd_out, {**ready, "pid": os.getpid(), "next_uid": self.next_uid})
        while True:
            frame = frames.read(self.fd_in)
            if frame is None:  # llmi closed the pipe: we are done
                self._clear(self._take_spare(wait=False))
                return
            header, _ = frame
            if header.get("type") == "job":
                started = time.monotonic()
                spare, result, png = self.run_job(header)
                wall_s = round(time.monotonic() - started, 4)
                result.update(type="result", id=header.get("id"), next_uid=self.next_uid,
                              wall_s=wall_s, **self.cleared)  # fmt: skip
                if self.problem:  # known already: llmi replaces us now, not at the next job
                    result["unhealthy"] = self.problem
                frames.write(self.fd_out, result, png)
                self._timed_clear(spare)  # off the critical path: llmi has its answer
                self._ask_for_spare()

    # --- 1. a job process in its clean start ------------------------------------------------

    def _ask_for_spare(self) -> None:
        if self.pending or self.spare is not None or self.problem:
            return
        uid = None
        if self.uids is not None:
            uid = next(self.uids, None)
            if uid is None:
                self.problem = "this worker has used up its block of fresh uids"
                return
        try:
            self.sock.send(json.dumps({"type": "spawn", "uid": uid}).encode())
        except OSError:
            self.problem = "the zygote is gone"
            return
        self.pending, self.next_uid = True, uid

    def _take_spare(self, wait: bool = True) -> Spare | None:
        if self.spare is None and self.pending and wait:
            if self._from_zygote("spawned", time.monotonic() + 60.0) is None:
                self.problem = "the zygote did not fork a job process"
        spare, self.spare = self.spare, None
        return spare

    def _from_zygote(self, wanted: str, deadline: float) -> dict | None:
        """Messages from the zygote until one of type ``wanted`` (others are recorded)."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.sock], [], [], left)[0]:
                return None
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 65536, 8)
            except OSError:
                data, fds = b"", []
            if not data:
                return None  # the zygote died
            message = json.loads(data)
            kind = message.get("type")
            if kind == "exited":
                self.exits[message["pid"]] = message["status"]
                while len(self.exits) > 16:  # statuses nobody asked for (jobs that answered)
                    del self.exits[next(iter(self.exits))]
            elif kind == "spawned" and len(fds) == 4:
                self.pending = False
                self.spare = Spare(message["pid"], message.get("uid"), fds)
            if kind in (wanted, "failed"):
                return message

    def _ready_spare(self) -> tuple[Spare | None, list[str]]:
        """The prepared job process once it reports its clean start (two tries)."""
        reasons = [self.problem] if self.problem else []
        for _ in range(2 if not reasons else 0):
            self._ask_for_spare()
            spare = self._take_spare()
            if spare is None:
                reasons.append(self.problem or "no job process was forked")
                break
            why = self._await_ready(spare)
            if why is None:
                return spare, reasons
            reasons.append(why)
            self._clear(spare)
        return None, reasons

    def _await_ready(self, spare: Spare) -> str | None:
        """None once the job process said it made its clean start, else why not."""
        deadline = time.monotonic() + _READY_TIMEOUT
        buf = b""
        try:
            want = 8
            while len(buf) < want:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([spare.res_r], [], [], left)[0]:
                    return "its job process did not make its clean start in time"
                chunk = os.read(spare.res_r, want - len(buf))
                if not chunk:
                    return "its job process died during its clean start"
                buf += chunk
                if len(buf) == 8:
                    want = 8 + sum(frames.lengths(buf))
            header, _ = frames.parse(buf)
        except (frames.FrameError, OSError) as exc:
            return f"its job process broke the protocol ({exc})"
        if header.get("type") != "ready":
            return str(header.get("message") or "its job process made no clean start")[:300]
        spare.setup = header
        return None

    # --- 2. the job -------------------------------------------------------------------------

    def run_job(self, job: dict) -> tuple[Spare | None, dict, bytes]:
        spare, reasons = self._ready_spare()
        if spare is None:
            why = "the sandbox worker could not give the job a clean start: " + "; ".join(reasons)
            return None, _fail("unhealthy", why), b""
        try:
            frames.write(spare.job_w, {k: job.get(k) for k in ("code", "timeout", "max_pixels")})
        except OSError:
            pass  # it died after saying ready: its exit status tells the story
        os.close(spare.job_w)
        spare.job_w = -1
        timeout = float(job.get("timeout") or 20.0)
        result, png = self._supervise(spare, timeout, int(job.get("max_output") or 1 << 20))
        result.update({k: spare.setup.get(k) for k in ("setup_ms", "setup_cpu_ms")},
                      isolated=bool(spare.setup.get("isolated")))  # fmt: skip
        return spare, result, png

    def _supervise(self, spare: Spare, timeout: float, max_output: int) -> tuple[dict, bytes]:
        deadline = time.monotonic() + timeout
        for fd in (spare.res_r, spare.out_r):
            os.set_blocking(fd, False)
        res, tail = bytearray(), bytearray()
        printed = 0
        failure: dict | None = None
        open_fds = {spare.res_r, spare.out_r}
        while failure is None:
            left = deadline - time.monotonic()
            if left <= 0:
                late = f"the code ran longer than the {timeout:.3g} s time limit and was killed"
                failure = _fail("timeout", late)
                break
            ready = select.select([*open_fds, spare.pidfd], [], [], left)[0]
            gone = spare.pidfd in ready
            # once the process is gone, whatever it wrote is already in the pipes: drain them
            for fd in list(open_fds if gone else (f for f in ready if f != spare.pidfd)):
                while (chunk := _read_some(fd)) is not None:
                    if not chunk:
                        open_fds.discard(fd)
                        break
                    if fd == spare.res_r:
                        res += chunk
                        if len(res) > 8 + frames.MAX_JSON + frames.MAX_BINARY:
                            failure = _fail("protocol", "the job's result was too large")
                    else:
                        printed += len(chunk)
                        tail += chunk
                        del tail[:-4096]
                        if printed > max_output:
                            printed_too_much = f"the code printed more than {_size(max_output)}"
                            failure = _fail("output", f"{printed_too_much} and was stopped")
                    if failure or not gone:
                        break
            if gone:
                break
        if failure is not None:
            self._kill(spare)
        output = tail.decode("utf-8", "replace")
        if failure is not None:
            return {**failure, "output": output}, b""
        if res:  # its answer is all we need: no waiting for the zygote to report its exit
            header, png = _checked(bytes(res))
        else:
            header, png = _describe_exit(self._exit_status(spare)), b""
        return {**header, "output": output}, png

    def _exit_status(self, spare: Spare) -> int:
        """The job process's wait status, as the zygote (its parent, which reaps it) reports it."""
        deadline = time.monotonic() + 10.0
        while spare.pid not in self.exits:
            if self._from_zygote("exited", deadline) is None:
                self.problem = "the zygote stopped reporting its job processes"
                return signal.SIGKILL
        return self.exits.pop(spare.pid)

    # --- 4. clearing the job away -----------------------------------------------------------

    def _timed_clear(self, spare: Spare | None) -> None:
        """``_clear``, with its wall and CPU time (ours and the throw-away children's) kept."""
        wall, before = time.perf_counter(), _cpu()
        self._clear(spare)
        self.cleared = {"clear_ms": round((time.perf_counter() - wall) * 1000, 3),
                        "clear_cpu_ms": round((_cpu() - before) * 1000, 3)}  # fmt: skip

    def _clear(self, spare: Spare | None) -> None:
        """Kill everything the job left and remove what it could not take with it."""
        if spare is None:
            return
        self._kill(spare)
        if spare.uid is not None:
            # one sweep no process of the uid can fork past, or stop
            _as_uid(spare.uid, _kill_all_mine, self.sweeper)
        # A killed process still holds its sockets and memory until it has finished exiting,
        # which on a loaded host can take a while: the next job starts only once all are gone.
        # Without a uid of its own, every process in our PID namespace but ours is the job's;
        # without either, nothing tells its processes apart.
        if (spare.uid is not None or self.pidns) and not _killed_and_gone(
            {1, os.getpid(), self.zygote}, spare.uid
        ):
            self.problem = "processes of the last job could not be killed"
        if self.pid1:
            _reap_orphans()
        home = spare.setup.get("home")
        if spare.setup and not spare.setup.get("isolated") and home:
            if spare.uid is not None:
                # its owner may always chmod
                _as_uid(spare.uid, lambda: _remove_tree(home), self.sweeper)
            else:
                _remove_tree(home)
            if os.path.lexists(home):
                self.problem = f"the last job's directory {home} could not be removed"
        spare.close()

    @staticmethod
    def _kill(spare: Spare) -> None:
        try:
            os.killpg(spare.pid, signal.SIGKILL)
        except OSError:
            pass


# --- helpers --------------------------------------------------------------------------------


def _checked(buf: bytes) -> tuple[dict, bytes]:
    """The job's answer, believed only as far as it checks out."""
    try:
        header, png = frames.parse(buf)
    except frames.FrameError as exc:
        return _malformed(str(exc))
    if header.get("type") != "result":
        return _malformed("not a result frame")
    if header.get("ok") is True:
        figures = header.get("figures")
        if not isinstance(figures, int) or isinstance(figures, bool) or not 1 <= figures <= 1000:
            return _malformed("no figure count")
        if not png.startswith(b"\x89PNG\r\n\x1a\n"):
            return _fail("protocol", "the job sent something that is not a PNG"), b""
        return {"ok": True, "figures": figures}, png
    kind = header.get("kind")
    message = header.get("message")
    out = {
        "ok": False,
        "kind": kind if isinstance(kind, str) and kind in _KINDS else "exception",
        "message": (message if isinstance(message, str) and message else "the code failed")[
            :_MAX_MESSAGE
        ],
    }
    return out, b""


def _malformed(why: str) -> tuple[dict, bytes]:
    return _fail("protocol", f"the job sent a malformed result ({why})"), b""


def _fail(kind: str, message: str) -> dict:
    return {"ok": False, "kind": kind, "message": message}


def _size(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def _read_some(fd: int) -> bytes | None:
    """Bytes available now; b"" at end of file; None when nothing is waiting."""
    try:
        return os.read(fd, 1 << 16)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def _cpu() -> float:
    """CPU seconds used by this process and its reaped children (microsecond resolution)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _as_uid(uid: int, action, real: int) -> None:
    """Run ``action`` in a throw-away child whose effective uid is ``uid`` (and only that).

    Its real and saved uids are ``real``, one no process has: it may signal and remove what
    ``uid`` owns, but nothing of ``uid`` may signal it. With the job's uid as its real uid too,
    a job's daemon spinning on ``kill(-1, SIGSTOP)`` could stop it before its own
    ``kill(-1)``, and the supervisor waiting for it with it.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(real, uid, real)  # every capability goes with uid 0
            action()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _kill_all_mine() -> None:
    # kill(-1) reaches every process this effective uid may signal: only the job's, which had
    # this uid alone; never init, never the caller
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass


def _killed_and_gone(ours: set[int], uid: int | None, deadline_s: float = _CLEAR_TIMEOUT) -> bool:
    """Kill every live process but ``ours`` (of ``uid``, if given) until none is left (zombies
    hold nothing: their files and memory are freed before they become zombies)."""
    deadline = time.monotonic() + deadline_s
    while True:
        alive = [pid for pid, owner in _live_processes(ours) if uid is None or owner == uid]
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap_orphans()
        time.sleep(0.002)


def _live_processes(skip: set[int] | frozenset[int] = frozenset()) -> list[tuple[int, int]]:
    """(pid, real uid) of every process in /proc but ``skip`` that is neither a zombie nor gone."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            state, uid = fields["State"].split()[0], int(fields["Uid"].split()[0])
        except (OSError, KeyError, ValueError, IndexError):
            continue  # it exited while we looked
        if state not in ("Z", "X"):
            found.append((int(name), uid))
    return found


def _remove_tree(path: str) -> None:
    """Remove ``path`` whatever modes the job set on it (run as their owner)."""
    if not os.path.lexists(path):
        return

    def allow(func, target, _exc) -> None:
        parent = os.path.dirname(target)
        for p in (parent, target):
            try:
                if not os.path.islink(p):
                    os.chmod(p, stat.S_IRWXU)
            except OSError:
                pass
        try:
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target, onerror=allow)
            else:
                os.unlink(target)
        except OSError:
            pass

    try:
        os.chmod(path, stat.S_IRWXU)
    except OSError:
        pass
    shutil.rmtree(path, onerror=allow)


def _reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


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
            "SIGSYS": "it made a forbidden system call",
        }.get(name, "")
        kind = "cpu" if name == "SIGXCPU" else "signal"
        extra = f": {reason}" if reason else ""
        return _fail(kind, f"the code was killed by {name}{extra}")
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else status
    return _fail("exit", f"the code exited (status {code}) before the chart was rendered")


def main() -> None:
    with os.fdopen(int(sys.argv[1]), "rb") as fh:  # the configuration, then the pipe is gone
        config = json.loads(fh.read())
    for name in ("SIGINT", "SIGPIPE", "SIGHUP"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)  # llmi ends us with SIGKILL or EOF
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    zygote = os.fork()
    if zygote == 0:  # the zygote: it has seen nothing of llmi's and never will
        ours.close()
        for fd in (int(config["fd_in"]), int(config["fd_out"])):
            os.close(fd)
        for name in ("SIGINT", "SIGPIPE", "SIGHUP"):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
        import zygote as zygote_module

        try:
            zygote_module.main(config, theirs)
        finally:
            os._exit(1)
    theirs.close()
    # After start-up nothing of ours writes to the inherited stderr (kept when debugging).
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    if not config.get("debug"):
        os.dup2(null, 2)
    Supervisor(config, ours, zygote).serve()


if __name__ == "__main__":
    main()
