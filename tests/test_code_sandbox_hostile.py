"""The hostile corpus (``tests/hostile/cases.py``) against the real sandbox.

Each case must be contained: the image fails with a clear reason (or renders harmlessly), the
parent's API keys never show, the loopback listener sees nothing, nothing is written outside,
and the pool renders a good chart right afterwards.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
from pathlib import Path

import pytest
from code_sandbox_fixtures import (  # noqa: F401
    FAKE_SECRETS,
    GOOD_CHART,
    _secrets_in_environment,
    listener,
    sandbox_tool,
)
from hostile.cases import CASES, FORGE, Case

from llmi.errors import SandboxError
from llmi.tags import ImageRequest
from llmi.tools.base import ToolCall

REPO = Path(__file__).resolve().parents[1]


def _call(code: str, timeout: float = 120.0) -> ToolCall:
    return ToolCall(ImageRequest("code", "hostile", {"code": code}), timeout=timeout)


def _render(tool, code: str):
    """(output, error message) of one run."""
    try:
        return asyncio.run(tool.run(_call(code))), None
    except SandboxError as exc:
        return None, str(exc)


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    base = tmp_path_factory.mktemp("outside")
    secret = base / "secret.txt"
    secret.write_text("llmi-test-secret-file-contents-0d6f")
    return base


def _params(cases):
    return [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.slow else []) for c in cases]


def test_corpus_is_big_enough():
    assert len(CASES) >= 80
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", _params(CASES))
def test_hostile_code_is_contained(
    case: Case,
    sandbox_tool,  # noqa: F811
    listener,  # noqa: F811
    outside,
    monkeypatch,
):
    if case.host_risk and sandbox_tool.sandbox_level == "rlimits" and os.geteuid() != 0:
        pytest.skip("needs a PID namespace or a dedicated uid, which this host lacks")
    if case.machine and platform.machine() != case.machine:
        pytest.skip(f"the case uses {case.machine} machine code or system call numbers")
    code = (
        case.code.replace("@PORT@", str(listener.port))
        .replace("@SECRET_FILE@", str(outside / "secret.txt"))
        .replace("@HOST_DIR@", str(outside))
        .replace("@REPO@", str(REPO))
        .replace("@FORGE@", FORGE)
    )
    # Only the cases meant to run into the time limit meet it: on a loaded host the others
    # (a memory creep touching 512 MB page by page) may need far longer than usual to fail
    # the way they should.
    monkeypatch.setattr(sandbox_tool, "timeout", sandbox_tool.timeout if case.slow else 90.0)
    hits_before = len(listener.hits)
    unhealthy = sandbox_tool.stats["unhealthy"]
    out, error = _render(sandbox_tool, code)

    # 1. the outcome the case expects, with a clear, short reason
    if case.expect == "fail":
        assert out is None, f"expected a failed image, got {out.info}"
        assert re.search(case.reason, error), error
    elif case.expect == "ok":
        assert error is None, error
        assert out.image.format == "png" and out.image.width > 10
        if case.shows:
            assert re.search(case.shows, out.info.get("stdout_tail", "")), out.info
    else:
        assert out is not None or re.search(case.reason, error), error
    assert len(error or "") < 2500
    # what the code says cannot drive a terminal: control characters arrive as escapes
    shown = (error or "") + (out.info.get("stdout_tail", "") if out else "")
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", shown), repr(shown)
    # 2. no secret leaked into anything the caller sees
    seen = (error or "") + repr(out.info if out else {})
    for secret in [*FAKE_SECRETS.values(), "llmi-test-secret-file-contents"]:
        assert secret not in seen
    # 3. nothing reached the host's loopback, nothing was written outside
    assert listener.hits[hits_before:] == []
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    # 4. the pool still serves good charts, from workers that could give every job a clean start
    good, error = _render(sandbox_tool, GOOD_CHART)
    assert error is None, f"after {case.name!r}: {error}"
    assert good.info["figures"] == 1
    if os.geteuid() == 0:  # rootless, a job has the worker's uid and can kill it (then replaced)
        assert sandbox_tool.stats["unhealthy"] == unhealthy


def test_pool_keeps_its_size_after_the_corpus(sandbox_tool):  # noqa: F811
    async def batch():
        return await asyncio.gather(*(sandbox_tool.run(_call(GOOD_CHART)) for _ in range(4)))

    outs = asyncio.run(batch())
    assert [o.info["figures"] for o in outs] == [1] * 4
    pool = sandbox_tool._pool
    assert pool is not None and pool._count == pool.size == 2


def test_no_daemon_survives_a_job(sandbox_tool):  # noqa: F811
    if sandbox_tool.sandbox_level != "bwrap":
        pytest.skip("finding processes by pid needs the sandbox's own PID namespace")
    leave = (
        "import os, time\npid = os.fork()\nif pid == 0:\n    os.setsid()\n    time.sleep(600)\n"
        "    os._exit(0)\nprint(pid)\nplt.plot([1])"
    )
    # /proc is hidden from jobs: signal 0 tells whether a pid exists
    probe = "import os\ntry:\n    os.kill({pid}, 0)\n    print('alive')\nexcept ProcessLookupError:\n    print('gone')\nexcept PermissionError:\n    print('alive')\nplt.plot([1])"
    for _ in range(4):  # both workers, twice
        out, error = _render(sandbox_tool, leave)
        assert error is None, error
        pid = int(out.info["stdout_tail"])
        verdicts = {_render(sandbox_tool, probe.format(pid=pid))[0].info["stdout_tail"] for _ in range(2)}
        assert verdicts == {"gone"}


def test_jobs_do_not_see_each_others_files(sandbox_tool):  # noqa: F811
    write = "open('/tmp/note.txt', 'w').write('from an earlier job')\nplt.plot([1])"
    read = "print(open('/tmp/note.txt').read())\nplt.plot([1])"
    for _ in range(3):
        out, error = _render(sandbox_tool, write)
        assert error is None, error
        out, error = _render(sandbox_tool, read)
        assert out is None and "FileNotFoundError" in error


# The weaker levels (hosts without bubblewrap) still contain the worst of the corpus.
DEGRADED = {
    "print the environment",
    "raise with the keys",
    "read /etc/shadow",
    "read root's files",
    "fork bomb",
    "memory bomb",
    "endless output",
    "leave a daemon behind",
    "signal the parent",
}  # not the cases writing to /tmp: at the rlimits level that is the host's /tmp


@pytest.mark.slow
@pytest.mark.parametrize("level", ["unshare", "rlimits"])
def test_degraded_levels_contain_the_worst_cases(level, listener):  # noqa: F811
    if os.geteuid() != 0:
        pytest.skip("without root these levels share the caller's uid; not run here")
    from llmi.tools.sandbox.tool import CodeSandboxTool

    tool = CodeSandboxTool(workers=1, sandbox=level, timeout=5.0)
    try:
        for case in (c for c in CASES if c.name in DEGRADED):
            code = case.code.replace("@PORT@", str(listener.port))
            out, error = _render(tool, code)
            if case.expect == "fail":
                assert out is None and re.search(case.reason, error), (case.name, error)
            seen = (error or "") + repr(out.info if out else {})
            assert not any(secret in seen for secret in FAKE_SECRETS.values()), case.name
            good, error = _render(tool, GOOD_CHART)
            assert error is None, (case.name, error)
    finally:
        tool.close()


def test_memory_spread_over_processes_stays_within_the_worker(sandbox_tool):  # noqa: F811
    """``RLIMIT_AS`` bounds each process: six children touching 350 MB each under a 512 MB limit
    would take 2.1 GB. The worker's memory cgroup bounds them all; the OOM killer takes job
    processes (first in its queue), never the worker."""
    _render(sandbox_tool, GOOD_CHART)
    if not any(w.cgroup for w in sandbox_tool._pool._idle):
        pytest.skip("this host lets llmi make no memory cgroup")
    spread = (
        "import os\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n    if pid == 0:\n"
        "        block = bytearray(350 << 20)\n        for at in range(0, len(block), 4096):\n"
        "            block[at] = 1\n        os._exit(0)\n    kids.append(pid)\n"
        "print([os.waitpid(pid, 0)[1] & 0x7F for pid in kids])\nplt.plot([1])"
    )
    replaced = sandbox_tool.stats["replaced"]
    out, error = _render(sandbox_tool, spread)
    assert error is None or re.search(r"SIGKILL|out of memory", error), error
    if out is not None:
        assert "9" in out.info["stdout_tail"], out.info  # some child was killed (SIGKILL)
    good, error = _render(sandbox_tool, GOOD_CHART)
    assert error is None and good.info["figures"] == 1
    assert sandbox_tool.stats["replaced"] == replaced
