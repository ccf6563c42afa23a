"""Judge agreement with OpenING's human verdicts: the three definitions, checked by hand on a
slice of the arena files, and the published IntJudge / GPT-4o figures reproduced in full."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from eval_fixtures import chat_server, opening_data  # noqa: F401

from llmi.cli import main
from llmi.errors import ConfigError
from llmi.evaluate.agreement import (
    ARENA_FILES,
    PairVerdict,
    agreement,
    load_verdicts,
    normalise_verdict,
    pair,
    reference_lines,
)


def test_every_spelling_of_the_four_verdicts():
    assert [normalise_verdict(v) for v in ("A", "b", "A is better", "B IS BETTER", "Tie(A)", "tie(b)",
                                           "Tie(A better)", "Tie( B better )", "Tie")] == [
        "A", "B", "A", "B", "Tie(A)", "Tie(B)", "Tie(A)", "Tie(B)", "Tie"]
    for bad in ("C", "", "A or B", "Tie(C)"):
        with pytest.raises(ConfigError):
            normalise_verdict(bad)


def test_hand_computed_slice_of_the_arena(opening_data):
    """The first twelve human-judged pairs of the arena and IntJudge's verdicts on them:

    ====  ======  ========  =====  ====  ========
    pair  human   IntJudge  FDT    kept  decided
    ====  ======  ========  =====  ====  ========
    1     Tie(B)  B         agree  no    -
    2     Tie(A)  A         agree  no    -
    3     B       B         agree  yes   agree
    4     A       A         agree  yes   agree
    5     B       B         agree  yes   agree
    6     A       Tie(A)    agree  no    -
    7     Tie(B)  Tie(B)    agree  yes   -
    8     Tie(B)  Tie(B)    agree  yes   -
    9     B       B         agree  yes   agree
    10    A       Tie(A)    agree  no    -
    11    A       A         agree  yes   agree
    12    B       B         agree  yes   agree
    ====  ======  ========  =====  ====  ========

    so FDT 12/12, ties kept 8/12, ties excluded 6/6. GPT-4o on the same pairs says
    A A B A B A A A B A A B: FDT 9/12 (pairs 1, 7, 8 differ), ties kept 8/12 (1, 2, 7, 8 differ),
    ties excluded 8/8 (pairs 3-6 and 9-12).
    """
    arena = opening_data / "arena"
    human = load_verdicts(arena / ARENA_FILES["human"])[:12]
    assert [h.winner for h in human] == ["Tie(B)", "Tie(A)", "B", "A", "B", "A", "Tie(B)", "Tie(B)", "B", "A", "A", "B"]
    by_key = {v.key: v for v in load_verdicts(arena / ARENA_FILES["IntJudge"])}
    intjudge = [by_key[h.key] for h in human]
    assert [v.winner for v in intjudge] == ["B", "A", "B", "A", "B", "Tie(A)", "Tie(B)", "Tie(B)", "B", "Tie(A)", "A", "B"]
    a = agreement(intjudge, human, name="IntJudge")
    assert (a.pairs, a.force_divided, a.with_tie, a.without_tie, a.without_tie_pairs) == (12, 1.0, 8 / 12, 1.0, 6)
    gpt = {v.key: v for v in load_verdicts(arena / ARENA_FILES["GPT-4o"])}
    g = agreement([gpt[h.key] for h in human], human, name="GPT-4o")
    assert (g.pairs, g.force_divided, g.with_tie, g.without_tie, g.without_tie_pairs) == (12, 9 / 12, 8 / 12, 1.0, 8)


def test_tiny_case_by_hand():
    human = [pair("1", "m", "n", "A"), pair("2", "m", "n", "Tie(A)"), pair("3", "m", "n", "B"),
             pair("4", "m", "n", "Tie(B)"), pair("5", "m", "n", "A")]
    judge = [pair("1", "m", "n", "A"),        # agree everywhere
             pair("2", "m", "n", "Tie(B)"),   # tie vs tie: kept agrees, forced disagrees
             pair("3", "m", "n", "Tie(B)"),   # B vs Tie(B): forced agrees, kept disagrees, excluded from w/o tie
             pair("4", "M", "N", "A"),        # names match case-insensitively; disagree
             pair("9", "m", "n", "A")]        # no human verdict: ignored
    a = agreement(judge, human)
    assert (a.pairs, a.missing) == (4, 1)
    assert a.force_divided == pytest.approx(2 / 4)
    assert a.with_tie == pytest.approx(2 / 4)
    assert (a.without_tie, a.without_tie_pairs) == (1.0, 1)
    assert a.confusion[("Tie(A)", "Tie(B)")] == 1


def test_later_verdict_on_a_pair_wins_and_a_bare_tie_counts_as_A():
    human = [pair("1", "m", "n", "A")]
    judge = [pair("1", "m", "n", "B"), pair("1", "m", "n", "Tie")]
    a = agreement(judge, human)
    assert a.force_divided == 1.0 and a.with_tie == 0.0 and a.without_tie is None


def test_published_judges_reproduce_the_paper(opening_data):
    lines = {a.judge: a for a in reference_lines(opening_data)}
    ij, gpt = lines["IntJudge"], lines["GPT-4o"]
    assert round(100 * ij.force_divided, 2) == 82.42
    assert round(100 * gpt.force_divided, 2) == 71.08
    assert round(100 * (ij.force_divided - gpt.force_divided), 2) == 11.34
    assert (ij.pairs, gpt.pairs) == (4301, 4302)
    assert round(100 * ij.with_tie, 2) == 66.45 and round(100 * ij.without_tie, 2) == 91.11
    assert round(100 * gpt.with_tie, 2) == 51.93 and round(100 * gpt.without_tie, 2) == 74.58


def test_verdict_files_errors(tmp_path):
    bad = tmp_path / "v.json"
    bad.write_text(json.dumps([{"data_id": "1", "model_A": {"name": "x"}, "winner": "A"}]))
    with pytest.raises(ConfigError, match="entry 0"):
        load_verdicts(bad)
    bad.write_text(json.dumps([{"data_id": "1", "model_A": {"name": "x"}, "model_B": {"name": "y"}, "winner": "Z"}]))
    with pytest.raises(ConfigError, match="unknown pairwise verdict"):
        load_verdicts(bad)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="neither JSON"):
        load_verdicts(bad)
    lines = tmp_path / "v.jsonl"
    lines.write_text(json.dumps(PairVerdict("1", "x", "y", "B").to_dict()) + "\n")
    assert load_verdicts(lines)[0].winner == "B"


def test_cli_reference_lines_and_a_judge(opening_data, tmp_path):
    mine = tmp_path / "mine.json"
    human = json.loads((opening_data / "arena" / ARENA_FILES["human"]).read_text())
    mine.write_text(json.dumps(human[:100]))  # a "judge" that copies the humans on 100 pairs
    result = CliRunner().invoke(main, ["eval", "judge-agreement", "--data", str(opening_data), "--verdicts", str(mine),
                                       "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["judge"]: r for r in json.loads(result.output)}
    assert rows["mine.json"]["force_divided"] == 1.0 and rows["mine.json"]["pairs"] == 100
    assert round(rows["IntJudge"]["force_divided"], 4) == 0.8242
    text = CliRunner().invoke(main, ["eval", "judge-agreement", "--data", str(opening_data)])
    assert "82.42%" in text.output and "71.08%" in text.output
    missing = CliRunner().invoke(main, ["eval", "judge-agreement", "--data", str(tmp_path)])
    assert missing.exit_code == 2 and "judge_modelAB_results.json" in missing.output


def test_cli_judges_the_arena_pairs_then_compares(opening_data, tmp_path, chat_server):
    from llmi.evaluate.opening import Step, load_opening, write_output

    human = load_verdicts(opening_data / "arena" / ARENA_FILES["human"])[:6]
    items = {it.uid: it for it in load_opening(opening_data, keep_missing=True)[0]}
    for v in human:
        for model in (v.model_a, v.model_b):
            write_output(tmp_path / "gen" / f"{model}_output", items[v.data_id], [Step(f"{model} says hi.")])
    server = chat_server(respond=lambda body: json.dumps({"justification": "first is fine", "verdict": "A is better"}))
    result = CliRunner().invoke(main, ["eval", "judge-agreement", "--data", str(opening_data), "--outputs", str(tmp_path / "gen"),
                                       "--judge-base-url", server.base_url, "--out", str(tmp_path / "run"), "--json", "-q"])
    assert result.exit_code == 0, result.output
    rows = {r["judge"]: r for r in json.loads(result.stdout)}
    mine = rows["latency-model"]  # the model the endpoint serves
    forced_a = sum(v.winner in ("A", "Tie(A)") for v in human)  # a judge that always says A agrees on these
    assert mine["pairs"] == 6 and mine["force_divided"] == forced_a / 6
    assert server.calls == 6 and (tmp_path / "run" / "verdicts.json").is_file()
