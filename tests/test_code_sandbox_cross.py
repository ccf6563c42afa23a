"""Nothing passes from one chart to a later one: the cross-job corpus on one long-lived engine.

``tests/hostile/cross_cases.py`` pairs a job that plants something with a later job that looks
for it. Each pair runs on one shared engine whose pool has a single worker (so both jobs land on
the same worker, one after the other), within one document and across documents, as a
long-lived process or server would run them. Host-side checks add what a job cannot see: no
process of an earlier job survives it, and no two jobs share a uid.
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import time

import pytest
from code_sandbox_fixtures import GOOD_CHART, _secrets_in_environment, sandbox_tool  # noqa: F401
from hostile.cross_cases import CROSS_CASES, MARK, CrossCase

from llmi.engine import Engine, ToolLimits
from llmi.tags import ImageRequest, serialise
from llmi.tools.sandbox.inside.worker import _as_uid, _kill_all_mine, _live_processes
from llmi.tools.sandbox.tool import CodeSandboxTool, Limits


def tag(code: str) -> str:
    return serialise(ImageRequest("code", "chart", {"code": code}))


@pytest.fixture(scope="module")
def engine():
    """One engine, one worker, one job at a time: every job follows the last on that worker."""
    tool = CodeSandboxTool(workers=1, timeout=30.0, limits=Limits(memory=512 << 20))
    shared = Engine({"code": tool}, limits={"code": ToolLimits(concurrency=1, timeout=90.0)}, cache=False)
    yield shared
    shared.close()


def _printed(segment) -> str:
    assert segment.ok, segment.error
    return segment.info.get("stdout_tail", "")


def test_corpus_is_big_enough():
    assert len(CROSS_CASES) >= 12
    assert len({c.name for c in CROSS_CASES}) == len(CROSS_CASES)
    for case in CROSS_CASES:
        assert MARK not in case.probe  # the probe must assemble what it looks for


@pytest.mark.parametrize("case", CROSS_CASES, ids=[c.name for c in CROSS_CASES])
def test_nothing_passes_to_a_later_job(case: CrossCase, engine):
    if case.machine and platform.machine() != case.machine:
        pytest.skip(f"the case uses {case.machine} system call numbers")
    tool = engine.tools["code"]
    replaced = tool.stats["replaced"]
    # 1. within one document: the plant, then the probe (same worker, back to back)
    doc = engine.run(f"Plant: {tag(case.plant)} Probe: {tag(case.probe)}")
    assert _printed(doc.image_segments[1]).endswith("clean"), _printed(doc.image_segments[1])
    # 2. across documents on the same engine
    engine.run(f"Plant: {tag(case.plant)}")
    assert _printed(engine.run(f"Probe: {tag(case.probe)}").image_segments[0]).endswith("clean")
    # 3. the worker gave every job a clean start without being replaced; the next document is fine
    assert tool.stats["replaced"] == replaced and tool.stats["unhealthy"] == 0
    good = engine.run(f"A good chart: {tag(GOOD_CHART)}").image_segments[0]
    assert good.ok and good.info["figures"] == 1


def _job_uid(engine, code: str) -> int:
    out = engine.run(tag("import os\nprint(os.getuid())\n" + code)).image_segments[0]
    return int(_printed(out).splitlines()[0])


def test_every_job_has_a_uid_of_its_own(engine):
    if os.geteuid() != 0:
        pytest.skip("jobs get uids of their own only when llmi runs as root")
    uids = [_job_uid(engine, "plt.plot([1])") for _ in range(6)]
    assert len(set(uids)) == 6 and os.geteuid() not in uids


def _processes_of(uid: int) -> list[int]:
    return [pid for pid, owner in _live_processes() if owner == uid]


@pytest.mark.parametrize(
    "leave",
    [
        "if os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n",
        # a process that keeps changing its pid, to slip through a sweep
        "if os.fork() == 0:\n    os.setsid()\n    while True:\n        if os.fork():\n            os._exit(0)\n",
        "import subprocess\nsubprocess.Popen(['sleep', '600'], start_new_session=True)\n",
        # stopped: it cannot run to see a signal (SIGKILL needs no running)
        "import signal\nif os.fork() == 0:\n    os.setsid()\n    os.kill(os.getpid(), signal.SIGSTOP)\n",
        # ignores every signal it can, and leaves its own children unreaped
        "import signal\nif os.fork() == 0:\n    os.setsid()\n    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):\n"
        "        signal.signal(s, signal.SIG_IGN)\n    for _ in range(5):\n        if os.fork() == 0:\n            os._exit(0)\n"
        "    time.sleep(600)\n",
        # once the job is gone, stops every process of its uid, again and again (the sweep too)
        "import signal\nparent = os.getpid()\nif os.fork() == 0:\n    os.setsid()\n"
        "    while os.getppid() == parent:\n        time.sleep(0.001)\n    while True:\n"
        "        try:\n            os.kill(-1, signal.SIGSTOP)\n        except OSError:\n            pass\n",
    ],
    ids=["sleeper", "pid hopper", "subprocess", "stopped", "ignores signals, keeps zombies", "stops the sweep"],
)
def test_no_process_of_a_job_survives_it(leave, engine):
    """Seen from the host, which sees every process: none of the job's uid is left."""
    if os.geteuid() != 0:
        pytest.skip("jobs get uids of their own only when llmi runs as root")
    uid = _job_uid(engine, "import time\n" + leave + "plt.plot([1])")
    deadline = time.monotonic() + 5.0
    while _processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _processes_of(uid) == []
    assert engine.run(tag(GOOD_CHART)).image_segments[0].ok


def test_the_sweep_is_out_of_the_job_uids_reach():
    """The throw-away process that kills every process of a job's uid cannot be signalled by
    them: a daemon spinning on ``kill(-1, SIGSTOP)`` would otherwise stop it (and the
    supervisor waiting for it) before its own ``kill(-1)`` ran."""
    if os.geteuid() != 0:
        pytest.skip("jobs get uids of their own only when llmi runs as root")
    job_uid = 2**30 + os.getpid() % 4096 * 2
    to_job, from_sweep = os.pipe()
    to_sweep, from_job = os.pipe()
    job = os.fork()
    if job == 0:  # pragma: no cover - a process of the job's uid
        try:
            os.setgroups([])
            os.setgid(job_uid)
            os.setuid(job_uid)
            sweep = int(os.read(to_job, 32))
            try:
                os.kill(sweep, signal.SIGSTOP)
                os.kill(sweep, signal.SIGCONT)  # undone, so that the test does not hang
                verdict = b"stopped it"
            except PermissionError:
                verdict = b"denied"
            os.write(from_job, verdict)
            time.sleep(60)  # for the sweep to kill
        finally:
            os._exit(1)

    def sweep() -> None:
        os.write(from_sweep, str(os.getpid()).encode())
        verdict.append(os.read(to_sweep, 32))
        _kill_all_mine()
        os.write(from_sweep, b"|" + verdict[0])  # back to the test, through the job's pipe

    verdict: list[bytes] = []
    try:
        _as_uid(job_uid, sweep, job_uid + 1)
        _, status = os.waitpid(job, 0)
    finally:
        for fd in (to_sweep, from_job, from_sweep):
            os.close(fd)
    told = os.read(to_job, 64).decode()
    os.close(to_job)
    assert told.endswith("|denied"), told
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL  # the sweep still kills


def test_cross_cases_also_hold_on_the_shared_two_worker_pool(sandbox_tool):  # noqa: F811
    """Plants and probes from many documents at once on two workers: still nothing passes."""
    engine = Engine({"code": sandbox_tool}, cache=False)  # not closed: the pool is shared
    quick = [c for c in CROSS_CASES if c.name.startswith(("files", "System V", "POSIX", "a daemon"))]
    texts = [f"{tag(case.plant)} {tag(case.probe)}" for case in quick]
    for doc in asyncio.run(engine.arun_many(texts)):
        assert _printed(doc.image_segments[1]).endswith("clean")
