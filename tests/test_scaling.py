"""Test-time scaling end to end: a scripted writer and judge over HTTP on loopback (every decision
deterministic), the real chart sandbox for repairs, and the engine's real cache and planning."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from eval_fixtures import chat_server  # noqa: F401 - loopback OpenAI-compatible servers

from llmi.document import Document
from llmi.engine import Engine
from llmi.errors import ConfigError, SandboxError, WriterError
from llmi.llm import Sampling
from llmi.llm.openai_compat import OpenAIWriter
from llmi.scaling import ScaleConfig, Scaler
from llmi.scaling.judges import Judges
from llmi.testing import LatencyTool

PROMPT = "Tell me about kangaroos and show their numbers."


def tag(source: str, description: str, **params: Any) -> str:
    inner = ", ".join(f"{k!r}: {v!r}" for k, v in params.items())
    return f"<imgen>{{'source': {source!r}, 'description': {description!r}, 'params': {{{inner}}}}}</imgen>"


def system_of(body: dict) -> str:
    return body["messages"][0]["content"] if body.get("messages") else ""


def user_of(body: dict) -> str:
    return body["messages"][-1]["content"]


def writer_server(chat_server, answers, *, query="red kangaroo", code=None, prompt=None, prose=None):
    """A writer endpoint: ``answers(seed)`` for candidates, and the given replies to each ask."""

    def respond(body: dict) -> str:
        system = system_of(body)
        if system.startswith("An image search"):
            return query
        if system.startswith("Chart code"):
            return code(user_of(body)) if callable(code) else code
        if "image generator" in system:
            return prompt
        if system.startswith("You revise the prose"):
            return prose(user_of(body)) if callable(prose) else prose
        return answers(body.get("seed"))

    return chat_server(0.0, respond=respond)


def judge_server(chat_server, *, text=None, better=None, best=None):
    """A judge endpoint: reward replies by ``text(answer)``, pairwise by ``better(user)``."""

    def respond(body: dict) -> str:
        system, user = system_of(body), user_of(body)
        if system.startswith("You compare two answers"):
            return better(user) if callable(better) else better
        if system.startswith("You compare several"):
            return best(user) if callable(best) else best
        return json.dumps({"text": text(user) if text else 3, "image": 3})

    return chat_server(0.0, respond=respond)


def engine(**tools) -> Engine:
    return Engine(tools, cache=True, deadline=60)


def run(scaler: Scaler, prompt: str = PROMPT, seed: int = 10) -> Document:
    async def go() -> Document:
        try:
            return await scaler.arun(prompt, sampling=Sampling(seed=seed, max_tokens=300))
        finally:
            await scaler.aclose()

    return asyncio.run(go())


# -- enhancement: real broken chart code, repaired by a writer that can ---------------------------

BROKEN = {
    "wrong column": ("table = {'year': [2019, 2020, 2021], 'count': [3, 5, 4]}\nplt.plot(table['year'], table['Count'])",
                     "KeyError"),
    "missing import": ("plt.plot([1, 2, 3], [math.sqrt(x) for x in (1, 4, 9)])", "NameError"),
    "typo": ("plt.plott([1, 2, 3], [3, 1, 2])", "AttributeError"),
}
FIXED = {
    "wrong column": "table = {'year': [2019, 2020, 2021], 'count': [3, 5, 4]}\nplt.plot(table['year'], table['count'])",
    "missing import": "import math\nplt.plot([1, 2, 3], [math.sqrt(x) for x in (1, 4, 9)])",
    "typo": "```python\nplt.plot([1, 2, 3], [3, 1, 2])\n```",
}


def test_broken_charts_are_repaired_by_the_writer_given_the_error(chat_server):
    pytest.importorskip("matplotlib")
    from llmi.tools.sandbox.tool import CodeSandboxTool

    answer = "Kangaroo numbers.\n" + "\n".join(tag("code", name, code=code) + "\nMore." for name, (code, _) in BROKEN.items())
    seen: dict[str, str] = {}

    def repair(user: str) -> str:
        name = next(name for name in BROKEN if f"Chart wanted: {name}" in user)
        seen[name] = user
        return FIXED[name]

    writer = writer_server(chat_server, lambda seed: answer, code=repair)
    scaler = Scaler(OpenAIWriter(writer.base_url), engine(code=CodeSandboxTool()),
                    config=ScaleConfig(n=1, polish=False))
    doc = run(scaler)
    assert [s.ok for s in doc.image_segments] == [True, True, True], [s.error for s in doc.image_segments]
    changes = doc.meta["scaling"]["enhancements"]
    assert [(c["kind"], c["outcome"], c["attempt"]) for c in changes] == [("code_repair", "fixed", 1)] * 3
    for change, (name, (code, error)) in zip(changes, BROKEN.items()):
        assert change["before"] == code and error in change["error_before"]
        assert error in seen[name]  # the writer was shown the error
    assert changes[2]["after"] == "plt.plot([1, 2, 3], [3, 1, 2])"  # the fence the writer added is gone
    assert "math.sqrt" in doc.image_segments[1].request.code and "import math" in doc.image_segments[1].request.code
    stage = {s["name"]: s for s in doc.meta["scaling"]["stages"]}["enhance"]
    assert stage["cost"]["writer_calls"] == 3 and stage["cost"]["tool_calls"] == 3


def test_a_repair_that_keeps_failing_is_bounded_and_the_model_s_tag_is_kept(chat_server):
    pytest.importorskip("matplotlib")
    from llmi.tools.sandbox.tool import CodeSandboxTool

    original = tag("code", "a chart", code="plt.plot(undefined_name)")
    calls = []

    def still_broken(user: str) -> str:
        calls.append(user)
        return f"plt.plot(still_undefined_{len(calls)})"

    writer = writer_server(chat_server, lambda seed: "Numbers.\n" + original + "\nDone.", code=still_broken)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(code=CodeSandboxTool()),
                     config=ScaleConfig(n=1, polish=False, max_repairs=3)))
    changes = doc.meta["scaling"]["enhancements"]
    assert [(c["attempt"], c["outcome"], c["kept"]) for c in changes] == [(1, "failed", False), (2, "failed", False),
                                                                          (3, "failed", False)]
    assert "still_undefined_1" in calls[1]  # the second attempt sees the first repair and its error
    assert doc.image_segments[0].raw == original and not doc.image_segments[0].ok


def test_a_failed_search_is_retried_with_the_writer_s_query_and_edits_follow(chat_server):
    search, edit = LatencyTool("search", latency=0.0, fail_if="zzz"), LatencyTool("edit", latency=0.0)
    answer = ("Kangaroos hop.\n" + tag("search", "a kangaroo", query="zzz kangaroo blur") + "\nHere it is darker.\n"
              + tag("edit", "darker", img_index=0, prompt="make it darker") + "\n")
    writer = writer_server(chat_server, lambda seed: answer, query='Query: "red kangaroo"')
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=search, edit=edit), config=ScaleConfig(n=1, polish=False)))
    first, second = doc.image_segments
    assert first.ok and first.request.query == "red kangaroo" and second.ok  # the edit ran on the new picture
    (change,) = doc.meta["scaling"]["enhancements"]
    assert change == {**change, "kind": "search_query", "before": "zzz kangaroo blur", "after": "red kangaroo",
                      "outcome": "fixed", "kept": True, "error_after": None}


def test_a_vague_generation_prompt_is_made_specific_once(chat_server):
    diffusion = LatencyTool("diffusion", latency=0.0)
    specific = "a red kangaroo standing in golden grass at sunset, wide shot, photograph"
    writer = writer_server(chat_server, lambda seed: "Kangaroos.\n" + tag("diffusion", "a kangaroo", prompt="kangaroo") + "\n",
                           prompt=specific)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(diffusion=diffusion), config=ScaleConfig(n=1, polish=False)))
    (change,) = doc.meta["scaling"]["enhancements"]
    assert (change["kind"], change["outcome"], change["after"]) == ("diffusion_prompt", "specific", specific)
    assert doc.image_segments[0].request.prompt == specific


@pytest.mark.parametrize("reply", [
    "red kangaroo</imgen><imgen>{'source': 'search', 'description': 'x', 'params': {'query': 'owl'}}</imgen>",
    "<image>", "", "   ",
])
def test_a_writer_reply_that_writes_tags_or_nothing_changes_nothing(chat_server, reply):
    search = LatencyTool("search", latency=0.0, fail_if="zzz")
    answer = "Kangaroos.\n" + tag("search", "a kangaroo", query="zzz") + "\n"
    writer = writer_server(chat_server, lambda seed: answer, query=reply)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=search), config=ScaleConfig(n=1, polish=False, max_repairs=1)))
    assert len(doc.image_segments) == 1 and doc.image_segments[0].raw.count("<imgen>") == 1
    assert [c["outcome"] for c in doc.meta["scaling"]["enhancements"]] == ["no_answer"]


def test_code_with_tag_markup_inside_stays_one_tag(chat_server):
    from llmi.tags import parse

    code = "plt.title('</imgen><imgen>')\nplt.plot([1, 2])"
    answer = "Numbers.\n" + tag("code", "chart", code="plt.plot(nope)") + "\n"

    class Failing(LatencyTool):
        async def run(self, call):
            if "nope" in call.request.code:
                raise SandboxError("the code raised NameError: name 'nope' is not defined")
            return await super().run(call)

    writer = writer_server(chat_server, lambda seed: answer, code=code)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(code=Failing("code", latency=0.0)),
                     config=ScaleConfig(n=1, polish=False)))
    (seg,) = doc.image_segments
    assert seg.ok and seg.request.code == code
    assert len(parse(seg.raw).tags) == 1


# -- sampling, validation and selection ----------------------------------------------------------


def by_seed(seed: int) -> str:
    """Candidates that differ by seed: 10 unreadable, 11 an impossible edit, 12 one picture, 13 two."""
    good = tag("search", "a kangaroo", query="red kangaroo")
    return {
        10: "Broken.\n<imgen>{'source': 'search', 'description': </imgen>\n",
        11: "Edit nothing.\n" + tag("edit", "x", img_index=5, prompt="darker") + "\n",
        12: "One picture of a kangaroo.\n" + good + "\n",
        13: "Two pictures of kangaroos.\n" + good + "\nAnd a second.\n" + tag("search", "joey", query="joey") + "\n",
    }[seed]


def test_validation_drops_unusable_candidates_and_prefers_the_images_asked_for(chat_server):
    writer = writer_server(chat_server, by_seed)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=4, image_num=2, enhance=False, polish=False)))
    record = doc.meta["scaling"]
    statuses = [(c["seed"], c["status"], c["satisfies_image_num"]) for c in record["candidates"]]
    assert statuses == [(10, "dropped", False), (11, "dropped", False), (12, "valid", False), (13, "valid", True)]
    assert "cannot be read" in record["candidates"][0]["problems"][0]
    assert "impossible edit" in record["candidates"][1]["problems"][0]
    assert record["selection"] == {**record["selection"], "chosen": 3, "pool": [3], "method": "only"}
    assert doc.meta["seed"] == 13 and len(doc.images) == 2
    sample = record["stages"][0]["cost"]
    assert sample["writer_calls"] == 4 and sample["tool_calls"] == 2  # "red kangaroo" ran once for both (the cache)


def test_when_every_candidate_has_a_problem_all_are_kept_and_say_so(chat_server):
    writer = writer_server(chat_server, by_seed)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=2, enhance=False, polish=False)))  # seeds 10 and 11: both broken
    record = doc.meta["scaling"]
    assert [c["status"] for c in record["candidates"]] == ["kept", "kept"]
    assert record["selection"]["pool"] == [0, 1] and record["selection"]["method"] == "rules"
    assert "none was dropped" in next(s["summary"] for s in record["stages"] if s["name"] == "validate")


def test_selection_by_scores_takes_the_judges_favourite(chat_server):
    writer = writer_server(chat_server, by_seed)
    judge = judge_server(chat_server, text=lambda user: 5 if "One picture" in user else 2)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=4, enhance=False, polish=False), judges=Judges.from_urls(judge.base_url)))
    record = doc.meta["scaling"]
    assert record["selection"]["method"] == "scores" and record["selection"]["chosen"] == 2
    scored = {c["index"]: c["score"] for c in record["candidates"]}
    assert scored[0] is None and scored[1] is None  # dropped candidates are not judged
    assert scored[2] > scored[3] and record["scores"]["selected"] == scored[2]
    assert record["stages"][2]["cost"]["judge_calls"] == 4  # two candidates, each judged with seeds 0 and 1
    assert [j["status"] for j in record["candidates"][2]["scores"]["judgings"]] == ["ok", "ok"]


@pytest.mark.parametrize("expected", [True, False])
def test_selection_asks_the_judge_for_its_token_probabilities(chat_server, expected):
    bodies = []

    def text(user):
        return 5 if "One picture" in user else 2

    judge = judge_server(chat_server, text=text)
    respond = judge.respond
    judge.respond = lambda body: (bodies.append(body), respond(body))[1]
    writer = writer_server(chat_server, by_seed)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=4, enhance=False, polish=False, expected_scores=expected),
                     judges=Judges.from_urls(judge.base_url)))
    assert doc.meta["scaling"]["selection"]["chosen"] == 2  # no probabilities in these replies: the written values
    assert bodies and all(("logprobs" in b) is expected for b in bodies)
    assert all(b.get("top_logprobs") == 20 for b in bodies if expected)


def test_tournament_and_a_judge_that_contradicts_itself(chat_server):
    writer = writer_server(chat_server, lambda seed: f"Kangaroo fact {seed}.\n" + tag("search", "k", query="red kangaroo") + "\n")

    def fact(user: str, label: str) -> int:
        return int(re.search(rf"\[Answer {label}\]\nKangaroo fact (\d+)", user).group(1))

    # prefers the higher seed whichever side it is on: consistent
    consistent = judge_server(chat_server, better=lambda u: json.dumps(
        {"reason": "r", "better": "A" if fact(u, "A") > fact(u, "B") else "B"}))
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=4, select="tournament", enhance=False, polish=False),
                     judges=Judges.from_urls(consistent.base_url)))
    sel = doc.meta["scaling"]["selection"]
    assert (sel["method"], sel["chosen"]) == ("tournament", 3) and len(sel["matches"]) == 3
    assert all(m["decided_by"] == "judge" for m in sel["matches"])
    assert doc.meta["scaling"]["stages"][2]["cost"]["judge_calls"] == 6  # each match both ways round

    # always says "A": position bias, overruled by the rules (the earlier candidate, all else equal)
    biased = judge_server(chat_server, better=json.dumps({"reason": "r", "better": "A"}))
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=3, select="tournament", enhance=False, polish=False),
                     judges=Judges.from_urls(biased.base_url)))
    sel = doc.meta["scaling"]["selection"]
    assert [m["decided_by"] for m in sel["matches"]] == ["rules", "rules"] and sel["chosen"] == 0
    assert sel["matches"][0]["reason"] == "the judge contradicted itself"


@pytest.mark.parametrize("reply, method, chosen", [
    (json.dumps({"reason": "the second is clearest", "best": 2}), "listwise", 1),
    (json.dumps({"reason": "none", "best": 9}), "rules", 0),
    ("I cannot decide.", "rules", 0),
])
def test_listwise_choice_and_replies_without_a_valid_choice(chat_server, reply, method, chosen):
    writer = writer_server(chat_server, lambda seed: f"Fact {seed}.\n" + tag("search", "k", query="red kangaroo") + "\n")
    judge = judge_server(chat_server, best=reply)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=3, select="listwise", enhance=False, polish=False),
                     judges=Judges.from_urls(judge.base_url)))
    sel = doc.meta["scaling"]["selection"]
    assert (sel["method"], sel["chosen"]) == (method, chosen)
    assert doc.meta["scaling"]["stages"][2]["cost"]["judge_calls"] == 1


def test_a_judge_that_is_down_leaves_the_choice_to_the_rules(chat_server):
    writer = writer_server(chat_server, by_seed)
    for method in ("scores", "tournament"):
        doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                         config=ScaleConfig(n=4, select=method, image_num=1, enhance=False, polish=False),
                         judges=Judges.from_urls("http://127.0.0.1:9/v1", timeout=2)))
        sel = doc.meta["scaling"]["selection"]
        assert sel["chosen"] == 2, (method, sel)  # the valid one with one picture, as asked
        assert sel["method"] == "rules" or all(m["decided_by"] == "rules" for m in sel["matches"])


def test_failed_candidates_are_recorded_and_all_failing_is_an_error(chat_server):
    def flaky(seed):
        return "" if seed % 2 else "Kangaroos.\n" + tag("search", "k", query="red kangaroo") + "\n"

    writer = writer_server(chat_server, flaky)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=2, enhance=False, polish=False)))
    assert [c["status"] for c in doc.meta["scaling"]["candidates"]] == ["valid", "failed"]
    assert "no text" in doc.meta["scaling"]["candidates"][1]["error"]
    with pytest.raises(WriterError, match="none of the 2 candidates"):
        run(Scaler(OpenAIWriter(writer_server(chat_server, lambda s: "").base_url), engine(),
                   config=ScaleConfig(n=2)))


# -- polish ----------------------------------------------------------------------------------------


def test_polish_revises_prose_and_keeps_every_tag_in_place(chat_server):
    search = LatencyTool("search", latency=0.0)
    answer = ("kangaroos is big and they hops.\n" + tag("search", "a kangaroo", query="red kangaroo")
              + "\nthey eats grass in australia.\n" + tag("search", "grass", query="grassland") + "\nok")

    def revise(user: str) -> str:
        para = user.rsplit("The paragraph to revise:\n", 1)[1]
        return {"kangaroos is big and they hops.": "Kangaroos are big, and they hop.",
                "they eats grass in australia.": "They eat grass in Australia.\n<imgen>{'source': 'search'}</imgen>"}[para]

    writer = writer_server(chat_server, lambda seed: answer, prose=revise)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=search), config=ScaleConfig(n=1, enhance=False)))
    record = doc.meta["scaling"]
    assert record["polish"]["status"] == "applied"
    assert [e["status"] for e in record["polish"]["segments"]] == ["revised", "empty"]  # a reply with a tag is refused
    assert doc.segments[0].text == "Kangaroos are big, and they hop.\n"
    assert doc.segments[2].text == "\nthey eats grass in australia.\n"
    assert [s.raw for s in doc.image_segments] == re.findall(r"<imgen>.*?</imgen>", answer)
    assert record["stages"][-1]["cost"]["tool_calls"] == 0  # the pictures came from the cache


def test_the_polish_guard_reverts_prose_the_judge_likes_less(chat_server):
    answer = "Kangaroos hop across the plains.\n" + tag("search", "k", query="red kangaroo") + "\n"
    writer = writer_server(chat_server, lambda seed: answer, prose="Kangaroo hop hop hop across plain.")
    judge = judge_server(chat_server, text=lambda user: 2 if "hop hop" in user else 4)
    doc = run(Scaler(OpenAIWriter(writer.base_url), engine(search=LatencyTool("search", latency=0.0)),
                     config=ScaleConfig(n=2, enhance=False), judges=Judges.from_urls(judge.base_url)))
    record = doc.meta["scaling"]
    assert record["polish"]["status"] == "reverted" and doc.segments[0].text.startswith("Kangaroos hop across")
    assert record["scores"]["polished"] < record["scores"]["before_polish"] == record["scores"]["final"]
    assert "kept the text as it was" in record["notes"][0]


# -- the record, the API and the command -----------------------------------------------------------


def test_the_record_survives_document_json_and_llmi_generate_scale(chat_server, tmp_path):
    import llmi

    writer = writer_server(chat_server, by_seed)
    doc = llmi.generate(PROMPT, scale=ScaleConfig(n=4, image_num=1, polish=False, judge_samples=1),
                        writer=OpenAIWriter(writer.base_url), engine=engine(search=LatencyTool("search", latency=0.0)),
                        sampling=Sampling(seed=10), judges=Judges())
    paths = doc.save(tmp_path / "doc", ["json"])
    again = Document.from_dict(json.loads(paths["json"].read_text()), tmp_path / "doc")
    assert again.meta["scaling"] == json.loads(json.dumps(doc.meta["scaling"]))
    assert again.meta["scaling"]["version"] == "llmi.scaling/1"
    assert sum(s["cost"]["seconds"] for s in again.meta["scaling"]["stages"]) == pytest.approx(
        again.meta["scaling"]["cost"]["seconds"], abs=0.01)
    with pytest.raises(ConfigError):
        ScaleConfig(n=3, select="vote")


def test_llmi_generate_scale_from_the_command_line(chat_server, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from llmi.cli import main

    writer = writer_server(chat_server, by_seed)
    judge = judge_server(chat_server, text=lambda user: 5 if "Two pictures" in user else 3)
    monkeypatch.setenv("LLMI_SEARCH_BACKEND", "none")
    result = CliRunner().invoke(main, ["generate", PROMPT, "--scale", "4", "--seed", "10", "--base-url", writer.base_url,
                                       "--judge-base-url", judge.base_url, "--no-polish", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    for words in ("candidate", "chosen", "selection: scores", "sample", "select", "enhance", "total", "judge calls"):
        assert words in result.output
    record = json.loads((tmp_path / "o" / "document.json").read_text())["meta"]["scaling"]
    assert record["config"]["n"] == 4 and record["selection"]["chosen"] == 3
