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
