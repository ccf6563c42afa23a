"""The code tool against real sandboxed workers: charts, LLM-I's contract, errors, the pool."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from code_sandbox_fixtures import (  # noqa: F401
    FAKE_SECRETS,
    GOOD_CHART,
    _secrets_in_environment,
    sandbox_tool,
)

from llmi.errors import SandboxError
from llmi.tags import ImageRequest
from llmi.tools.base import Tool, ToolCall
from llmi.tools.sandbox.launch import Launcher, LaunchPlan
from llmi.tools.sandbox.pool import Pool
from llmi.tools.sandbox.tool import CodeSandboxTool

SINE_EXAMPLE = Path(__file__).resolve().parents[2] / "shared/data/llmi-format/system-prompt-example.txt"


def call(code: str, timeout: float = 60.0) -> ToolCall:
    return ToolCall(ImageRequest("code", "a chart", {"code": code}), timeout=timeout)


def render(tool: CodeSandboxTool, code: str, timeout: float = 60.0):
    return asyncio.run(tool.run(call(code, timeout)))


def fails(tool: CodeSandboxTool, code: str, timeout: float = 60.0) -> str:
    with pytest.raises(SandboxError) as info:
        render(tool, code, timeout)
    return str(info.value)


# --- construction ------------------------------------------------------------------------------


def test_nothing_starts_until_the_first_run():
    tool = CodeSandboxTool(workers=3)
    assert isinstance(tool, Tool)
    assert (tool.source, tool.backend) == ("code", "sandbox")
    assert tool._pool is None and tool._level is None
    with pytest.raises(ValueError):
        CodeSandboxTool(sandbox="chroot")


def test_sandbox_level_is_the_strongest_available(sandbox_tool):  # noqa: F811
    out = render(sandbox_tool, GOOD_CHART)
    assert out.info["sandbox_level"] == sandbox_tool.sandbox_level
    if shutil.which("bwrap") and os.geteuid() == 0:
        assert sandbox_tool.sandbox_level == "bwrap"


# --- charts and LLM-I's contract ---------------------------------------------------------------


def test_renders_a_png_of_the_chart(sandbox_tool):  # noqa: F811
    out = render(sandbox_tool, GOOD_CHART)
    assert out.image.format == "png"
    assert 200 < out.image.width < 2000 and 200 < out.image.height < 2000
    assert out.info["figures"] == 1
    pixels = out.image.to_pil().convert("L")
    assert pixels.getextrema()[0] < 100  # something dark was drawn, not a blank page


def test_plt_pd_sns_np_are_predefined(sandbox_tool):  # noqa: F811
    code = (
        "df = pd.DataFrame({'k': ['a', 'b', 'c'], 'v': np.array([3, 1, 2])})\n"
        "sns.barplot(data=df, x='k', y='v')\nplt.title('bars')"
    )
    assert render(sandbox_tool, code).info["figures"] == 1


def test_llmi_prompt_sine_example_renders(sandbox_tool):  # noqa: F811
    code = (
        "x = np.linspace(0, 4 * np.pi, 200)\ny = np.sin(x)\nplt.figure(figsize=(10, 4))\n"
        'plt.plot(x, y)\nplt.title("Sine Wave from 0 to 4pi")\nplt.xlabel("Angle [rad]")\n'
        "plt.ylabel(\"sin(x)\")\nplt.grid(True)\nplt.axhline(y=0, color='k', linestyle='--')"
    )
    out = render(sandbox_tool, code)
    assert out.image.width > 2 * out.image.height  # the 10x4 figure it asked for


def test_printing_does_not_corrupt_the_image(sandbox_tool):  # noqa: F811
    code = (
        "import sys\nprint('hello from the chart')\n"
        "sys.stdout.buffer.write(b'\\x89PNG\\r\\n\\x1a\\n' * 100)\nsys.stdout.flush()\n"
        "print('to stderr', file=sys.stderr)\n" + GOOD_CHART + "\nprint('done')"
    )
    out = render(sandbox_tool, code)
    assert out.image.format == "png" and out.info["figures"] == 1
    assert out.info["stdout_tail"].endswith("done")
    assert "to stderr" in out.info["stdout_tail"]


def test_show_and_savefig_are_harmless(sandbox_tool):  # noqa: F811
    code = (
        "import os\nplt.plot([1, 3, 2])\nplt.savefig('chart.png')\nplt.gcf().savefig('/tmp/x.png')\n"
        "plt.show()\nprint(os.path.exists('chart.png'), os.path.exists('/tmp/x.png'))"
    )
    out = render(sandbox_tool, code)
    assert out.info["stdout_tail"] == "False False"  # nothing written
    closed = "fig = plt.figure()\nplt.plot([1, 2])\nplt.savefig('a.png')\nplt.close(fig)"
    assert render(sandbox_tool, closed).info["figures"] == 1  # the saved figure is kept


def test_savefig_to_a_buffer_and_backend_switches_work(sandbox_tool):  # noqa: F811
    code = (
        "import io, matplotlib\nmatplotlib.use('TkAgg')\nplt.switch_backend('Qt5Agg')\n"
        "plt.plot([1, 2])\nbuf = io.BytesIO()\nplt.savefig(buf, format='png')\n"
        "print(buf.getvalue()[:4] == b'\\x89PNG')"
    )
    out = render(sandbox_tool, code)
    assert out.info["stdout_tail"] == "True" and out.info["figures"] == 1


def test_several_figures_are_stacked(sandbox_tool):  # noqa: F811
    one = render(sandbox_tool, "plt.plot([1, 2])")
    code = "plt.figure()\nplt.plot([1, 2])\nplt.figure()\nplt.bar(['a'], [1])\nplt.figure()"
    out = render(sandbox_tool, code)
    assert out.info["figures"] == 2  # the third figure is empty and left out
    assert out.image.height > 1.8 * one.image.height


@pytest.mark.parametrize(
    "code",
    [
        "x = 1",
        "plt.figure()",
        "fig, ax = plt.subplots()\nax.set_title('only a title')\nax.set_xlim(0, 1)",
    ],
    ids=["no figure", "empty figure", "axes without data"],
)
def test_a_chart_with_nothing_drawn_fails(sandbox_tool, code):  # noqa: F811
    assert "the code drew nothing" in fails(sandbox_tool, code)


def test_chinese_text_is_drawn_with_real_glyphs(sandbox_tool):  # noqa: F811
    # Missing glyphs all render as the same box ("tofu"): two different characters would
    # then give identical images.
    template = (
        "{setup}fig, ax = plt.subplots(figsize=(2, 2))\nax.axis('off')\n"
        "ax.text(0.5, 0.5, '{char}', fontsize=60, ha='center', va='center')"
    )
    for setup in ("", "plt.rcParams['font.sans-serif'] = ['SimHei']\n", "sns.set_theme()\n"):
        a = render(sandbox_tool, template.format(setup=setup, char="中"))
        b = render(sandbox_tool, template.format(setup=setup, char="国"))
        assert a.image.data != b.image.data, f"tofu with setup {setup!r}"
        for out in (a, b):
            assert "missing from" not in out.info.get("stdout_tail", "")


# --- failures ------------------------------------------------------------------------------------


def test_an_exception_names_its_type_message_and_line(sandbox_tool):  # noqa: F811
    error = fails(sandbox_tool, "x = [1, 2, 3]\ny = [1, 2]\nplt.plot(x, y)")
    assert error.startswith("the code raised ValueError: x and y must have same first dimension")
    assert "(line 3: plt.plot(x, y))" in error


def test_a_syntax_error_is_reported(sandbox_tool):  # noqa: F811
    error = fails(sandbox_tool, "plt.plot([1, 2)\n")
    assert error.startswith("the code is not valid Python") and "line 1" in error


def test_code_past_the_time_limit_is_killed(sandbox_tool):  # noqa: F811
    error = fails(sandbox_tool, "while True:\n    pass", timeout=1.0)
    assert "time limit" in error
    assert render(sandbox_tool, GOOD_CHART).info["figures"] == 1


def test_empty_or_huge_code_fails_without_a_worker():
    tool = CodeSandboxTool()
    with pytest.raises(SandboxError, match="no code"):
        asyncio.run(tool.run(call("   ")))
    with pytest.raises(SandboxError, match="longer than 256 KB"):
        asyncio.run(tool.run(call("x = 1\n" * 100_000)))
    assert tool._pool is None


def test_a_worker_that_cannot_start_is_a_clear_error(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'no python here' >&2\nexit 3\n")
    fake.chmod(0o755)
    tool = CodeSandboxTool(workers=1, sandbox="rlimits", python=str(fake), startup_timeout=10)
    try:
        with pytest.raises(SandboxError, match="failed to start: no python here"):
            asyncio.run(tool.run(call(GOOD_CHART)))
    finally:
        tool.close()


# --- the clean start, the cold start -------------------------------------------------------------


class _NoCleanStart(Launcher):
    """Workers whose job processes cannot make their clean start (the tmpfs has nowhere to go)."""

    def plan(self, fd_in: int, fd_out: int) -> LaunchPlan:
        plan = super().plan(fd_in, fd_out)
        plan.config["job_tmp"] = "/no/such/place"
        return plan


def test_a_worker_that_cannot_give_a_clean_start_is_replaced_and_counted():
    if os.geteuid() != 0 and shutil.which("bwrap") is None:
        pytest.skip("the clean start needs namespaces (root, or bubblewrap with user namespaces)")
    tool = CodeSandboxTool(workers=1, startup_timeout=120)
    tool._pool = Pool(_NoCleanStart(tool.sandbox_level, tool.limits), 1, 120, 500)
    try:
        with pytest.raises(SandboxError, match="could not give the job a clean start: .*mount tmpfs"):
            tool.render(GOOD_CHART)
        # the code never ran; both workers it was offered to were replaced and counted
        assert tool.stats["unhealthy"] == 2 and tool.stats["replaced"] == 2
    finally:
        tool.close()


def test_a_cold_pool_starts_one_worker_then_the_rest():
    """One worker first; its first job may run before pandas and seaborn are imported, and then
    finds stand-ins that import on first use."""
    tool = CodeSandboxTool(workers=3)
    try:
        tool.warm_up(wait=False)  # returns at once: the probe and the start are in the background
        tool.warm_up(wait=False)  # cheap and idempotent
        deadline = time.monotonic() + 60
        while (tool._pool is None or tool._pool._count == 0) and time.monotonic() < deadline:
            time.sleep(0.01)
        pool = tool._pool
        with pool._cond:
            assert pool._count == 1 and pool.started == 0  # one worker starting, none ready yet
        code = (
            "df = pd.DataFrame({'k': ['a', 'b'], 'v': [1, 2]})\nsns.barplot(data=df, x='k', y='v')\n"
            "print(type(sns).__name__, type(pd).__name__)"
        )
        assert render(tool, code).info["stdout_tail"] == "module module"  # the first worker serves
        tool.warm_up()  # then the others start; wait for them
        assert pool.started == 3 and len(pool._idle) == 3
    finally:
        tool.close()


def test_every_job_reports_its_clean_start(sandbox_tool):  # noqa: F811
    info = render(sandbox_tool, GOOD_CHART).info
    assert info["setup_ms"] > 0 and info["setup_cpu_ms"] > 0 and info["clear_ms"] >= 0


# --- isolation between jobs and the pool -------------------------------------------------------------


def test_jobs_start_from_a_clean_state(sandbox_tool):  # noqa: F811
    poison = (
        "import matplotlib\nnp.pi = 3\nmatplotlib.rcParams['lines.linewidth'] = 80\n"
        "leftover = 'x'\nplt.plot([1])\nplt.figure()\nplt.plot([2])"
    )
    probe = (
        "import matplotlib\n"
        "print(np.pi > 3.1, matplotlib.rcParams['lines.linewidth'], 'leftover' in globals(),"
        " len(plt.get_fignums()))\nplt.plot([1])"
    )
    for _ in range(3):  # both workers see both kinds of job
        render(sandbox_tool, poison)
        assert render(sandbox_tool, probe).info["stdout_tail"] == "True 1.5 False 0"


def test_runs_from_different_event_loops(sandbox_tool):  # noqa: F811
    results = [render(sandbox_tool, GOOD_CHART), render(sandbox_tool, GOOD_CHART)]
    box = []
    thread = threading.Thread(target=lambda: box.append(render(sandbox_tool, GOOD_CHART)))
    thread.start()
    thread.join()
    assert [r.info["figures"] for r in results + box] == [1, 1, 1]


def test_concurrent_calls_share_the_pool(sandbox_tool):  # noqa: F811
    async def many():
        codes = [f"plt.bar(['a', 'b'], [{i}, 2])" for i in range(6)]
        return await asyncio.gather(*(sandbox_tool.run(call(c)) for c in codes))

    outs = asyncio.run(many())
    assert len({o.image.sha256 for o in outs}) == 6


def test_a_worker_killed_from_outside_is_replaced(sandbox_tool):  # noqa: F811
    render(sandbox_tool, GOOD_CHART)
    pool = sandbox_tool._pool
    before = pool.replaced
    with pool._cond:
        victims = pool._idle[:1]
    for worker in victims:
        os.killpg(worker.proc.pid, signal.SIGKILL)
    for _ in range(3):
        assert render(sandbox_tool, GOOD_CHART).info["figures"] == 1
    assert pool.replaced >= before + len(victims)
    assert pool._count == pool.size


def test_a_cancelled_call_frees_its_worker(sandbox_tool):  # noqa: F811
    async def cancel_one():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(sandbox_tool.run(call("while True:\n    pass")), 0.5)
        return await sandbox_tool.run(call(GOOD_CHART))

    assert asyncio.run(cancel_one()).info["figures"] == 1
    pool = sandbox_tool._pool
    assert pool._count == pool.size  # the killed worker is being replaced


# --- through the engine ------------------------------------------------------------------------------


def test_engine_renders_code_tags_and_carries_on_after_hostile_ones(sandbox_tool):  # noqa: F811
    from llmi.engine import Engine
    from llmi.tags import serialise

    def tag(code: str) -> str:
        return serialise(ImageRequest("code", "chart", {"code": code}))

    text = "Intro.\n"
    text += SINE_EXAMPLE.read_text() if SINE_EXAMPLE.exists() else tag(GOOD_CHART)
    text += "\nA Chinese chart:" + tag("plt.bar(['甲', '乙'], [3, 5])\nplt.title('销售额')")
    text += "\nHostile:" + tag("import os\nos.kill(os.getppid(), 9)")
    text += tag("while True:\n    print('spam')")
    text += "\nAfterwards:" + tag(GOOD_CHART)
    engine = Engine({"code": sandbox_tool})
    doc = asyncio.run(engine.arun(text))
    statuses = [s.status for s in doc.image_segments]
    assert statuses == ["ok", "ok", "failed", "failed", "ok"]
    errors = [s.error for s in doc.image_segments if s.error]
    # rootless, the job shares its worker's uid: killing it is possible, and contained
    assert re.search("PermissionError" if os.geteuid() == 0 else "PermissionError|killed|drew nothing", errors[0])
    assert "printed more than" in errors[1]
    assert doc.stats()["code"]["success"] == 3


# --- weaker sandbox levels ------------------------------------------------------------------------


@pytest.mark.parametrize("level", [pytest.param("unshare", marks=pytest.mark.slow), "rlimits"])
def test_degraded_levels_still_scrub_secrets_and_say_so(level, caplog):
    if level == "unshare" and (shutil.which("unshare") is None or os.geteuid() != 0):
        pytest.skip("unshare needs root here")
    code = (
        "import os, socket\nprint(sorted(k for k in os.environ if k.endswith('_KEY')))\n"
        "try:\n    socket.create_connection(('1.1.1.1', 80), timeout=1)\n    print('online')\n"
        "except OSError:\n    print('offline')\nplt.plot([1, 2])"
    )
    with caplog.at_level(logging.WARNING, logger="llmi.tools.sandbox.tool"):
        tool = CodeSandboxTool(workers=1, sandbox=level, timeout=10)
        try:
            out = render(tool, code)
        finally:
            tool.close()
    assert tool.sandbox_level == level and out.info["sandbox_level"] == level
    assert out.info["stdout_tail"].startswith("[]")  # no key of the parent's is visible
    if level == "unshare":
        assert out.info["stdout_tail"].endswith("offline")
    assert any("DEGRADED" in r.getMessage() and level in r.getMessage() for r in caplog.records)
    assert not any(v in out.info["stdout_tail"] for v in FAKE_SECRETS.values())


def test_a_worker_starts_even_where_its_cgroup_cannot_be_entered(monkeypatch, tmp_path):
    """The memory cgroup is a bound where the host allows one, never a reason not to start."""
    from llmi.tools.sandbox import pool as pool_module

    missing = str(tmp_path / "no-such-cgroup")
    monkeypatch.setattr(pool_module, "memory_cgroup", lambda limit: missing)
    tool = CodeSandboxTool(workers=1, timeout=10.0)
    try:
        out = tool.render("plt.plot([1, 2])")
        assert out.info["figures"] == 1 and tool._pool._idle[0].cgroup == missing
    finally:
        tool.close()
