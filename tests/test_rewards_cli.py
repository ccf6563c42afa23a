"""``llmi score``: breakdowns, the summary, judges not configured, resuming, killed runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmi.cli import main

from rewards_fixtures import LLM_OK, MLLM_OK, Reply, judge_server, search_tag  # noqa: F401

def info(image_num: int, question: str = "q", tools=(), split: str = "train") -> dict:
    return {"image_num": image_num, "question": question, "tools": list(tools), "split": split}


ROWS = [
    {"answer": "Owls hunt at night.", "extra_info": info(-1, "What do owls do?"), "id": "a"},
    {"response": "Owls. " + search_tag("owl"), "extra_info": info(1, "Show an owl", ["search"])},
    {"answer": "Two owls.", "extra_info": info(2, "Two owls", split="test")},
]


def write_rows(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read_out(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def no_judges(monkeypatch):
    for name in ("LLM_JUDGE_BASE_URL", "MLLM_JUDGE_BASE_URL", "LLM_JUDGE_MODEL_NAME", "MLLM_JUDGE_MODEL_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LLMI_SEARCH_BACKEND", "none")


def test_without_judges_rules_are_scored_and_judges_marked(tmp_path, no_judges):
    answers = write_rows(tmp_path / "answers.jsonl", ROWS)
    result = CliRunner().invoke(main, ["score", str(answers), "-q"])
    assert result.exit_code == 0, result.output
    out = read_out(tmp_path / "answers.scores.jsonl")
    assert [r["row"] for r in sorted(out, key=lambda r: r["row"])] == [0, 1, 2]
    by_row = {r["row"]: r for r in out}
    assert by_row[0]["status"] == "incomplete" and by_row[0]["score"] is None and by_row[0]["id"] == "a"
    assert by_row[0]["img_num_score"] == 1.0 and by_row[0]["llm"]["status"] == "not_configured"
    assert by_row[1]["img_num_score"] == 0.0 and by_row[1]["stats"]["search"]["total"] == 1
    assert {f["kind"] for f in by_row[1]["fallbacks"]} >= {"not_configured"}
    assert "no llm judge configured" in result.output and "incomplete" in result.output


def test_with_judges_resume_and_never_duplicate(tmp_path, judge_server, no_judges):
    llm = judge_server.script("cli-llm", LLM_OK)
    mllm = judge_server.script("cli-mllm", MLLM_OK)
    answers = write_rows(tmp_path / "answers.jsonl", ROWS)
    out = tmp_path / "scores.jsonl"
    args = ["score", str(answers), "--out", str(out), "--llm-judge", llm, "--mllm-judge", mllm, "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    first = read_out(out)
    assert len(first) == 3 and all(r["status"] == "ok" for r in first)
    assert {r["row"]: r["score"] for r in first}[0] == pytest.approx(0.2 + 0.3 + 0.5 * ((1.4 * 4 + 0.6 * 5) / 2 - 1) / 4)
    assert len(judge_server.bodies("cli-llm")) == 3
    summary = json.loads((tmp_path / "scores.jsonl.summary.json").read_text())
    assert summary["rows"] == 3 and summary["statuses"] == {"ok": 3} and sum(summary["histogram"]) == 3
    assert "R:" in result.output
    # a killed run left half a line; a new row was added; rerun: only the new row is scored
    with open(out, "a", encoding="utf-8") as fh:
        fh.write('{"row": 3, "score": 0.')
    write_rows(answers, ROWS + [{"answer": "Another.", "extra_info": info(0)}])
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    second = read_out(out)
    assert sorted(r["row"] for r in second) == [0, 1, 2, 3] and second[:3] == first
    assert len(judge_server.bodies("cli-llm")) == 4
    assert "already scored" in result.output
    # other settings: refused rather than mixed in one file
    result = CliRunner().invoke(main, args + ["--factor", "tool_factor=0.5"])
    assert result.exit_code != 0 and "--restart" in result.output
    # the input changed under an old output: refused too
    write_rows(answers, [{"answer": "Changed.", "extra_info": info(0)}] + ROWS[1:])
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0 and "another input" in result.output


def test_bad_rows_are_failed_rows_and_can_be_retried(tmp_path, judge_server, no_judges):
    llm = judge_server.script("bad-llm", LLM_OK)
    answers = write_rows(tmp_path / "answers.jsonl", ["{not json", {"answer": "x", "extra_info": {"question": "q"}}, ROWS[0]])
    out = tmp_path / "s.jsonl"
    args = ["score", str(answers), "--out", str(out), "--llm-judge", llm, "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    rows = {r["row"]: r for r in read_out(out)}
    assert rows[0]["status"] == rows[1]["status"] == "failed" and "image_num" in rows[1]["error"]
    assert rows[2]["status"] == "ok"
    write_rows(answers, [ROWS[0], {"answer": "y", "extra_info": info(-1)}, ROWS[0]])
    assert CliRunner().invoke(main, args + ["--retry", "failed"]).exit_code == 0
    rows = read_out(out)
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)


def test_option_flags_reach_the_reward(tmp_path, judge_server, no_judges):
    llm = judge_server.script("flags-llm", LLM_OK)
    answers = write_rows(tmp_path / "answers.jsonl", [ROWS[1]])
    out = tmp_path / "s.jsonl"
    result = CliRunner().invoke(main, ["score", str(answers), "--out", str(out), "--llm-judge", llm, "--no-images", "neutral",
                                       "--factor", "tool_factor=0.5", "--on-error", "exclude", "-q"])
    assert result.exit_code == 0, result.output
    (row,) = read_out(out)
    assert row["mllm"]["skip_reason"] == "no_images" and row["mllm"]["scores"]["quality"] == 3
    settings = json.loads((tmp_path / "s.jsonl.meta.json").read_text())["settings"]
    assert settings["options"]["no_images"] == "neutral" and settings["factors"]["tool_factor"] == 0.5
    assert row["r_tool"] == 0.5 and row["score"] == pytest.approx(0.5 * ((1.4 * 4 + 0.6 * 5) / 2 - 1) / 4 + 0.5 * 0.5)
    bad = CliRunner().invoke(main, ["score", str(answers), "--factor", "llm_factr=1"])
    assert bad.exit_code != 0 and "unknown reward factor" in bad.output


def test_a_killed_run_loses_only_rows_in_flight(tmp_path, judge_server, no_judges):
    llm = judge_server.script("kill-llm", Reply(LLM_OK, delay=0.4))
    rows = [{"answer": f"Owls {i}.", "extra_info": info(-1)} for i in range(12)]
    answers = write_rows(tmp_path / "answers.jsonl", rows)
    out = tmp_path / "s.jsonl"
    cmd = [sys.executable, "-m", "llmi", "score", str(answers), "--out", str(out), "--llm-judge", llm,
           "--concurrency", "2", "-q"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = read_out(out)
    assert 3 <= len(partial) < 12
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    final = read_out(out)
    assert sorted(r["row"] for r in final) == list(range(12))
    assert final[: len(partial)] == partial
    assert len(judge_server.bodies("kill-llm")) <= 12 + 2  # at most the rows in flight were asked twice


def test_compat_rows_need_all_of_llmis_fields(tmp_path, judge_server, no_judges):
    llm = judge_server.script("fields-llm", LLM_OK)
    answers = write_rows(tmp_path / "answers.jsonl", [{"answer": "Hi.", "extra_info": {"image_num": -1, "question": "q"}}])
    for profile, status in (("llmi-compat", "failed"), ("llmi", "ok")):
        out = tmp_path / f"{profile}.jsonl"
        assert CliRunner().invoke(main, ["score", str(answers), "--out", str(out), "--llm-judge", llm,
                                         "--profile", profile, "--factor", "mllm_factor=0", "-q"]).exit_code == 0
        (row,) = read_out(out)
        assert row["status"] == status, row["error"]
    assert "no 'tools'" in read_out(tmp_path / "llmi-compat.jsonl")[0]["error"]
