"""Properties of the two profiles over answers made of tag fragments: one marker per matched tag,
stable statistics keys, and a parse that never raises."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmi._tag_compat import SLOT, find_slots
from llmi.engine import Engine
from llmi.image import ImageData
from llmi.profiles import LLMI, LLMI_COMPAT, remove_thinking
from llmi.tags import parse
from llmi.testing import LatencyTool

IMG, FAIL = "<image>", "<fail_to_generate_image>"
FRAGMENTS = [
    "<imgen>", "</imgen>", "{", "}", "}}", "'", '"', " ", "\n", "```", "`", "\\n", "\\", "<think>", "</think>",
    "<image>", "<fail_to_generate_image>", "'source': ", "'search'", "'code'", "'edit'", "'diffusion'",
    "'description': 'd', ", "'params': {", "'query': 'owl'", "'prompt': 'p'", "'code': 'plt.plot([1])'",
    "'img_index': 0, ", "'img_index': True, ", "FAIL", "中", ", ",
    "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>",
    "<imgen>{'source': 'edit', 'description': 'd', 'params': {'img_index': 0, 'prompt': 'p'}}</imgen>",
    "<imgen>{'source': 'code', 'description': 'd', 'params': {'code': 'x = 'a'\\nplt.plot([1])'}}</imgen>",
]  # fmt: skip
answers = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=30).map("".join)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def scripted_engine(profile) -> Engine:
    tools = {s: LatencyTool(source=s, latency=0.0, fail_if="FAIL") for s in ("search", "diffusion", "code", "edit")}
    return Engine(tools, profile=profile, cache=False)


COMPAT_ENGINE = scripted_engine(LLMI_COMPAT)
LLMI_ENGINE = scripted_engine(LLMI)


@SETTINGS
@given(answers, st.integers(0, 2))
def test_compat_processed_text_has_one_marker_per_matched_tag(answer: str, n_inputs: int) -> None:
    doc = COMPAT_ENGINE.run(answer, [ImageData.blank(4, 4)] * n_inputs)
    text = remove_thinking(answer, "blocks")[0]
    assert find_slots(text) == [m.span() for m in SLOT.finditer(text)]
    statuses = iter(s.ok for s in doc.image_segments)
    expected = SLOT.sub(lambda m: IMG if next(statuses) else FAIL, text)
    assert next(statuses, None) is None, "one segment per matched tag"
    assert len(doc.image_segments) == len(SLOT.findall(text))
    # everything but the matched tags is kept exactly, typed markers included
    assert doc.judge_view() == expected
    assert len(doc.images) == sum(s.ok for s in doc.image_segments)


@SETTINGS
@given(answers)
def test_llmi_judge_view_has_exactly_one_marker_per_tag(answer: str) -> None:
    doc = LLMI_ENGINE.run(answer)
    view = doc.judge_view()
    assert view.count(IMG) == len(doc.images)
    assert view.count(IMG) + view.count(FAIL) == len(doc.image_segments)


@SETTINGS
@given(answers, st.sampled_from([LLMI, LLMI_COMPAT]))
def test_statistics_keys_never_vary(answer: str, profile) -> None:
    """verl logs the keys of the first sample of a batch: every answer must give the same."""
    doc = (COMPAT_ENGINE if profile is LLMI_COMPAT else LLMI_ENGINE).run(answer)
    stats = doc.stats()
    names = ["diffusion", "search", "code", "edit"] + (["invalid"] if profile is LLMI else [])
    assert list(stats) == names
    for row in stats.values():
        assert list(row) == ["total", "success", "success_rate"]
        assert 0 <= row["success"] <= row["total"]
        assert row["success_rate"] == (round(row["success"] / row["total"], 4) if row["total"] else 1.0)
    counted = sum(r["total"] for r in stats.values())
    assert counted == sum(s.counted for s in doc.image_segments)


@SETTINGS
@given(answers, st.sampled_from([LLMI, LLMI_COMPAT]), st.integers(0, 3))
def test_parse_keeps_the_text_and_numbers_every_slot(answer: str, profile, n_inputs: int) -> None:
    parsed = parse(answer, profile, inputs=n_inputs)
    assert "".join(p if isinstance(p, str) else p.raw for p in parsed.parts) == answer
    assert [t.index for t in parsed.tags] == list(range(len(parsed.tags)))
    for tag in parsed.tags:
        assert (tag.request is None) != (tag.error is None)
        assert re.match(r"<imgen>", tag.raw[tag.position - tag.start :])


# -- an independent reading: the rules of LLMI-SEMANTICS §1-5, written out plainly ---------------

_RAW_CODE = re.compile(r"\s*\{'source': 'code', 'description': '([^']*)', 'params': \{'code': '(.*)'\}\}\s*\Z", re.DOTALL)
_PARAMS = {"diffusion": {"prompt"}, "search": {"query"}, "code": {"code"}, "edit": {"img_index", "prompt"}}


def _read(body: str):
    """§2: the code pattern first (when the body names a code tag), then a Python literal."""
    import ast

    m = _RAW_CODE.match(body) if "'source': 'code'" in body else None
    if m:
        return {"source": "code", "description": m.group(1), "params": {"code": m.group(2)}}
    try:
        obj = ast.literal_eval(body)
    except Exception:  # noqa: BLE001 - any failure is "unreadable"
        return None
    return obj if isinstance(obj, dict) else None


def _valid(obj, images: int) -> bool:
    """§3, with ``images`` = M + T."""
    if set(obj) != {"source", "description", "params"} or not isinstance(obj["description"], str):
        return False
    params = obj["params"]
    if obj["source"] not in _PARAMS or not isinstance(params, dict) or set(params) != _PARAMS[obj["source"]]:
        return False
    for key, value in params.items():
        if key == "img_index":
            if not isinstance(value, int) or not 0 <= value < images:
                return False
        elif not isinstance(value, str):
            return False
    return True


def independent_reading(answer: str, m: int) -> tuple[str, dict, int]:
    """The processed text, the statistics and the number of images, with the scripted tools (a
    tag fails when its text holds ``FAIL``)."""
    text = re.sub(r"<think>.*?</think>", "", answer, flags=re.DOTALL) if "<think>" in answer else answer
    bodies = [mt.group(1) for mt in re.finditer(r"<imgen>(\{.*?\})</imgen>", text, re.DOTALL)]
    t = len(bodies)
    ran, made, counted, sources = [], [], [], []
    for k, body in enumerate(bodies):
        obj = _read(body)
        runs, ok, count = obj is not None and "source" in obj, False, False
        if runs and obj["source"] == "edit":  # §4: the scheduler reads the index first
            try:
                index = int(obj["params"].get("img_index", -1))
            except Exception:  # noqa: BLE001
                index = None
            runs = index is not None and 0 <= index < m + t and (index < m or (index - m < k and ran[index - m]))
            count = not runs  # §5: an edit that cannot run is a counted failed edit
        if runs and _valid(obj, m + t):
            count = True
            params = obj["params"]
            if obj["source"] == "edit":
                ok = (params["img_index"] < m or made[params["img_index"] - m]) and "FAIL" not in params["prompt"]
            else:
                ok = "FAIL" not in next(iter(params.values()))
        ran.append(runs)
        made.append(ok)
        counted.append(count)
        sources.append(obj.get("source") if obj is not None else None)
    stats = {tool: [0, 0] for tool in ("diffusion", "search", "code", "edit")}
    for source, count, ok in zip(sources, counted, made):
        if count:
            stats[source][0] += 1
            stats[source][1] += ok
    marks = iter(made)
    processed = re.sub(r"<imgen>(\{.*?\})</imgen>", lambda _: IMG if next(marks) else FAIL, text, flags=re.DOTALL)
    rows = {k: {"total": n, "success": s, "success_rate": round(s / n, 4) if n else 1.0} for k, (n, s) in stats.items()}
    return processed, rows, sum(made)


EDGES = FRAGMENTS + [
    "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'FAIL'}}</imgen>",
    "<imgen>{'source': 'diffusion', 'description': 'd', 'params': {'prompt': 'p'}}</imgen>",
    *(f"<imgen>{{'source': 'edit', 'description': 'd', 'params': {{'img_index': {i}, 'prompt': 'p'}}}}</imgen>"
      for i in ("1", "2", "-1", "True", "1.0", "'1'", "'x'", "None", "1, 'n': 2")),
    "<imgen>{'source': 'edit', 'description': 'd', 'params': {'img_index': 1, 'prompt': 5}}</imgen>",
    "<imgen>{'source': 'edit', 'description': 'd'}</imgen>", "<imgen>{'source': 'paint', 'description': 'd', 'params': {}}</imgen>",
    "<imgen>{'description': 'd'}</imgen>", "<imgen>{bad}</imgen>", "'img_index': 1, ", "'img_index': 'a', ",
    "<imgen>{'source': 'code', 'description': 'd', 'params': {'code': 'FAIL\\nplt.plot([1])'}}</imgen>",
]  # fmt: skip
edge_answers = st.lists(st.one_of(st.sampled_from(EDGES), st.text(max_size=3)), max_size=24).map("".join)


@SETTINGS
@given(edge_answers, st.integers(0, 2))
def test_compat_equals_an_independent_reading_of_the_rules(answer: str, n_inputs: int) -> None:
    doc = COMPAT_ENGINE.run(answer, [ImageData.blank(4, 4)] * n_inputs)
    processed, stats, images = independent_reading(answer, n_inputs)
    assert doc.judge_view() == processed
    assert doc.stats() == stats
    assert len(doc.images) == images
