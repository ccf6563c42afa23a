"""OpenING: its items, its answer layout (written and read back), its seven-criterion score and
published table, and the pairwise mode with win rates and agreement."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections import defaultdict

import pytest
from eval_fixtures import ScriptedJudge, opening_data  # noqa: F401
from PIL import Image

from llmi.engine import Engine
from llmi.errors import ConfigError
from llmi.evaluate.agreement import ARENA_FILES, load_verdicts, pair
from llmi.evaluate.answers import GivenAnswers
from llmi.evaluate.job import aevaluate
from llmi.evaluate.opening import (
    CRITERIA,
    TABLE_CRITERIA,
    Step,
    load_opening,
    overall_row,
    published_rows,
    read_output,
    read_scores,
    steps_of,
    write_output,
)
from llmi.evaluate.opening_score import OpeningBenchmark
from llmi.evaluate.pairwise import PairwiseBenchmark, parse_verdict, win_rates
from llmi.image import ImageData
from llmi.testing import LatencyTool

ANSWER = ("Here is a diagram.\n<imgen>{'source': 'search', 'description': 'diagram', 'params': {'query': 'q'}}</imgen>\n"
          "It shows the steps.<imgen>{'source': 'diffusion', 'description': 'x', 'params': {'prompt': 'p'}}</imgen> Done.")


def _scores(value=7):
    return json.dumps({c: {"Score": value, "Justification": f"{c} ok"} for c in CRITERIA})


def test_items_text_only_by_default(opening_data):
    items, skipped = load_opening(opening_data)
    assert len(items) == 997 and skipped == 0
    assert all(it.text_only for it in items)
    assert all("<BEGIN>" not in it.prompt and "<image>" not in it.prompt and it.prompt for it in items)
    first = next(it for it in items if it.uid == "1502010")
    assert first.prompt.startswith("How do temperature and concentration gradients")
    with_images, skipped = load_opening(opening_data, with_images=True)
    assert len(with_images) == 997 and skipped == 2160 - 997  # no input image of the test split is public
    everything, _ = load_opening(opening_data, keep_missing=True)
    assert len(everything) == 2160
    with pytest.raises(ConfigError, match="test_data.jsonl"):
        load_opening(opening_data / "arena")


def test_layout_written_as_opening_reads_it(tmp_path, opening_data):
    items, _ = load_opening(opening_data)
    item = items[0]
    engine = Engine({"search": LatencyTool("search", latency=0.0)})
    doc = engine.run(ANSWER)
    engine.close()
    steps = steps_of(doc)
    assert [(s.text, s.image is not None) for s in steps] == [("Here is a diagram.", True), ("It shows the steps. Done.", False)]
    files = write_output(tmp_path / "Mine_output", item, steps)
    assert [f.name for f in files] == [f"{item.uid}.json", f"{item.uid}-o-0.jpg"]
    data = json.loads(files[0].read_text())
    assert data["conversations"][0]["input"] == [dict(s) for s in item.inputs]
    assert data["conversations"][1]["output"] == [{"text": "Here is a diagram.", "image": f"{item.uid}-o-0.jpg"},
                                                  {"text": "It shows the steps. Done.", "image": None}]
    for key in ("meta_task_id", "meta_task_name", "subtask_id", "subtask_name", "data_id"):
        assert data[key] == item.meta[key]
    assert Image.open(files[1]).format == "JPEG"
    back = read_output(tmp_path / "Mine_output", item.uid)
    assert [(s.text, s.image is not None) for s in back] == [(s.text, s.image is not None) for s in steps]


def test_reading_answers_stays_in_their_folder(tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(ImageData.blank(2, 2).data)
    folder = tmp_path / "X_output"
    folder.mkdir()
    (folder / "u.json").write_text(json.dumps({"conversations": [{"input": []}, {"output": [
        {"text": "a <image>", "image": "../secret.png"}, {"text": "b", "image": "C:\\\\pics\\\\missing.jpg"}, "junk"]}]}))
    steps = read_output(folder, "u")
    assert [(s.text, s.image) for s in steps] == [("a", None), ("b", None)]
    (folder / "v.jsonl").write_text("{}")
    with pytest.raises(ConfigError, match="not an OpenING answer"):
        read_output(folder, "v")
    with pytest.raises(ConfigError, match="no answer"):
        read_output(folder, "w")


def test_reading_the_seven_scores():
    rows = read_scores(json.loads(_scores(8)))
    assert [r["score"] for r in rows] == [8] * 7
    wrapped = read_scores({"scores": {"Correctness": {"Score": 3, "Justification": "meh"}}})
    assert wrapped[0]["score"] == 3 and sum(r["score"] is None for r in wrapped) == 6
    odd = read_scores({"Correctness": {"Score": 11}, "Completeness": {"Score": "7"}, "Content Quality": 5})
    by = {r["name"]: r for r in odd}
    assert by["Correctness"]["score"] is None and "0-10" in by["Correctness"]["error"]
    assert by["Completeness"]["score"] is None and by["Content Quality"]["score"] == 5
    assert all(r["score"] is None for r in read_scores(None))


def test_the_published_table_is_reproduced_from_the_arena_scores(opening_data):
    """OpenING's summary: per-criterion means rounded to 2, Overall the mean of those."""
    scores = json.loads((opening_data / "arena" / "gpt-score_results.json").read_text())
    lists: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    names = {}
    for entry in scores:
        names[entry["model"]["id"]] = entry["model"]["name"]
        for criterion, value in entry["score"].items():
            lists[entry["model"]["id"]][criterion].append(value["Score"])
    published = {r["Model_ID"]: r for r in published_rows(opening_data)}
    assert len(published) == 11
    for model_id, by_criterion in lists.items():
        row = overall_row(by_criterion, name=names[model_id], model_id=model_id)
        expected = published[model_id]
        assert [row[c] for c in TABLE_CRITERIA] == [expected[c] for c in TABLE_CRITERIA], names[model_id]
        assert row["Overall"] == expected["Overall"], names[model_id]
    assert overall_row({"Correctness": [1]}, name="partial") is None


def _given(uids_to_text, engine):
    return GivenAnswers.parse([{"total_uid": u, "answer": t} for u, t in uids_to_text.items()], engine=engine)


def test_scoring_a_writer_beside_the_published_systems(tmp_path, opening_data):
    items, _ = load_opening(opening_data)
    uids = [it.uid for it in items[:3]]

    def reply(system, user, schema):
        text = "".join(p.get("text", "") for p in user) if isinstance(user, list) else user
        if "Another." in text:
            return '{"Correctness": {"Score": 9, "Justification": "cut short"'  # truncated reply
        return _scores(6)

    judge = ScriptedJudge(reply)
    engine = Engine({"search": LatencyTool("search", latency=0.0)})
    bench = OpeningBenchmark(opening_data, name="My model (v1)")
    answers = _given({uids[0]: ANSWER, uids[1]: "Plain text.", uids[2]: "Another."}, engine)
    result = asyncio.run(aevaluate(bench, tmp_path / "run", answers=answers, judge=judge, limit=3))
    engine.close()
    recs = {r["uid"]: r for r in result.records}
    assert recs[uids[0]]["score"] == 6.0 and recs[uids[1]]["score"] == 6.0
    assert recs[uids[2]]["score"] is None  # the judge's reply on it was cut off
    folder = tmp_path / "run" / "gen_outputs" / "My-model-v1_output"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{u}.json" for u in uids] + [f"{uids[0]}-o-0.jpg"])
    assert recs[uids[0]]["files"][0] == f"gen_outputs/My-model-v1_output/{uids[0]}.json"
    # what the judge saw: OpenING's markers and 512x512 pictures
    first = next(c["user"] for c in judge.calls if isinstance(c["user"], list))  # the one with a picture
    assert sum(isinstance(c["user"], str) for c in judge.calls) == 2  # the others are text only
    text = "".join(p.get("text", "") for p in first)
    assert text.startswith("INPUT: ") and "\nOUTPUT: " in text and "<IMG_0>" in text and "</IMG_0>" in text
    url = next(p["image_url"]["url"] for p in first if p["type"] == "image_url")
    assert Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size == (512, 512)
    # the table: published rows and the new one, ranked; written as OpenING's csv
    table = next(t for t in result.summary.tables if t.title.startswith("OpenING"))
    assert len(table.rows) == 12 and table.columns[0] == "Rank" and table.columns[-1] == "Overall"
    mine = next(r for r in table.rows if r[2] == "My model (v1)")
    assert mine[-1] == 6.0 and mine[0] == 4  # between Gemini1.5+Flux (7.23) and SEED-X (5.84)
    csv_lines = (tmp_path / "run" / "model_score_summaries.csv").read_text().splitlines()
    assert csv_lines[0].startswith("Rank,Model_ID,Model_Name,Completeness") and len(csv_lines) == 13
    scores = json.loads((tmp_path / "run" / "score_results.json").read_text())
    assert len(scores) == 2 and scores[0]["score"]["Correctness"]["Score"] == 6
    assert dict(result.summary.headline)["judge failures (items excluded)"] == "1"


def test_scoring_answers_already_in_the_layout(tmp_path, opening_data):
    items, _ = load_opening(opening_data)
    folder = tmp_path / "gen_outputs" / "Other_output"
    for it in items[:2]:
        write_output(folder, it, [Step("An answer with a picture.", ImageData.blank(10, 6, "blue")), Step("End.")])
    judge = ScriptedJudge(lambda *a: _scores(5), images=False)
    bench = OpeningBenchmark(opening_data, name="Other", outputs=folder)
    result = asyncio.run(aevaluate(bench, tmp_path / "run", judge=judge, limit=3))
    assert [r["status"] for r in result.records] == ["ok", "ok", "error"]  # the third has no answer
    assert "no answer" in result.records[2]["error"]
    user = judge.calls[0]["user"]
    assert isinstance(user, str) and "<IMG_0></IMG_0>" in user  # a text-only judge gets the markers
    assert result.records[0]["images"] == {"tags": 1, "made": 1}


def test_verdicts_in_any_spelling():
    assert parse_verdict('{"justification": "x", "verdict": "A is better"}') == "A"
    assert parse_verdict("Tie(B better)") == "Tie(B)"
    assert parse_verdict("tie, but A is slightly better") == "Tie(A)"
    assert parse_verdict("B. Because it has pictures.") == "B"
    assert parse_verdict("I cannot decide.") is None


def test_win_rates_as_opening_counts_them():
    verdicts = [pair("1", "x", "y", "A"), pair("2", "x", "y", "Tie(B)"), pair("3", "y", "x", "B"), pair("4", "x", "z", "Tie(A)")]
    rows = {r[0]: r for r in win_rates(verdicts).rows}
    # x: 4 pairs; FDT wins 1, 3, 4 -> 75%; decided pairs 1 and 3, both won -> 100%; ties as 0: 2/4; as 0.5: 3/4
    assert rows["x"] == ("x", 4, "75.00%", "100.00%", "50.00%", "75.00%")
    assert rows["y"] == ("y", 3, "33.33%", "0.00%", "0.00%", "16.67%")
    assert rows["z"] == ("z", 1, "0.00%", "—", "0.00%", "50.00%")


def test_pairwise_on_arena_pairs_with_agreement(tmp_path, opening_data):
    human = load_verdicts(opening_data / "arena" / ARENA_FILES["human"])[:4]
    items = {it.uid: it for it in load_opening(opening_data, keep_missing=True)[0]}
    outputs = tmp_path / "gen_outputs"
    for v in human:
        for model in (v.model_a, v.model_b):
            write_output(outputs / f"{model}_output", items[v.data_id], [Step(f"{model}'s answer.")])
    spoken = {"A": "A is better", "B": "B is better", "Tie(A)": "Tie(A better)", "Tie(B)": "Tie(B better)"}
    truth = {v.data_id: v.winner for v in human}

    def reply(system, user, schema):
        uid = next(u for u in truth if items[u].prompt[:40] in user)
        return json.dumps({"justification": "compared", "verdict": spoken[truth[uid]]})  # agrees with humans

    bench = PairwiseBenchmark(opening_data, outputs)
    assert len(bench.pairs) == 4 and bench.asked == 4320
    judge = ScriptedJudge(reply, images=False)
    result = asyncio.run(aevaluate(bench, tmp_path / "run", judge=judge))
    assert [r["verdict"] for r in result.records] == [v.winner for v in human]
    headline = dict(result.summary.headline)
    assert headline["agreement with humans, ties force-divided"] == "100.00%"
    agreement = next(t for t in result.summary.tables if t.title.startswith("Agreement"))
    assert [r[0] for r in agreement.rows] == ["scripted", "IntJudge", "GPT-4o"]
    written = json.loads((tmp_path / "run" / "verdicts.json").read_text())
    assert [w["winner"] for w in written] == [v.winner for v in human]
    first = judge.calls[0]["user"]
    assert first.startswith("<INPUT>: ") and first.index("<OUTPUT_A>:") < first.index("<OUTPUT_B>:")
    assert f"{human[0].model_a}'s answer." in first and judge.calls[0]["schema"]["properties"]["verdict"]["enum"]


def test_pairwise_needs_answers(tmp_path, opening_data):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="none of the"):
        PairwiseBenchmark(opening_data, tmp_path / "empty")
    with pytest.raises(ConfigError, match="both systems"):
        PairwiseBenchmark(opening_data, tmp_path / "empty", a="x")
