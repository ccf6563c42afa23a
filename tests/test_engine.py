"""The engine: planning, concurrency, edits, failures, retries, deadlines, cache, fallback."""

from __future__ import annotations

import asyncio

import pytest

from llmi.engine import Engine, ToolLimits
from llmi.errors import BackendError, NotFound
from llmi.image import ImageData
from llmi.tags import ImageRequest, serialise
from llmi.testing import LatencyTool
from llmi.tools.base import ToolOutput


def tag(source: str, text: str = "x", description: str | None = None, **extra) -> str:
    params = {"search": {"query": text}, "diffusion": {"prompt": text}, "code": {"code": text},
              "edit": {"prompt": text, **extra}}[source]
    return serialise(ImageRequest(source, description or f"{source} {text}", params))


def edit(index: int, text: str = "brighter") -> str:
    return tag("edit", text, img_index=index)


def test_independent_tags_run_concurrently():
    search = LatencyTool("search", latency=0.2)
    with Engine({"search": search}, limits={"search": ToolLimits(concurrency=8)}) as engine:
        doc = engine.run("".join(tag("search", f"q{i}") for i in range(8)))
    assert [s.status for s in doc.image_segments] == ["ok"] * 8
    assert search.peak == 8


def test_concurrency_limit_is_respected():
    search = LatencyTool("search", latency=0.05)
    with Engine({"search": search}, limits={"search": ToolLimits(concurrency=3)}) as engine:
        engine.run("".join(tag("search", f"q{i}") for i in range(9)))
    assert search.peak == 3


def test_edit_chain_uses_previous_outputs_and_inputs():
    search, editor = LatencyTool("search"), LatencyTool("edit", backend="ed")
    inputs = [ImageData.blank(4, 4, (200, 200, 200))]
    text = "A" + tag("search", "cat") + "B" + edit(1) + "C" + edit(2) + edit(0)
    with Engine({"search": search, "edit": editor}) as engine:
        doc = engine.run(text, inputs)
    segs = doc.image_segments
    assert [s.status for s in segs] == ["ok"] * 4
    # tag 1 edits tag 0 (index M+0), tag 2 edits tag 1, tag 3 edits the input image
    first = segs[0].image.to_pil().getpixel((0, 0))[0]
    assert segs[1].image.to_pil().getpixel((0, 0))[0] == first - 10
    assert segs[2].image.to_pil().getpixel((0, 0))[0] == first - 20
    assert segs[3].image.to_pil().getpixel((0, 0))[0] == 190


def test_edit_of_a_failed_image_fails_with_reason():
    search = LatencyTool("search", fail_with=NotFound("nothing found for 'zzz'"))
    with Engine({"search": search, "edit": LatencyTool("edit")}) as engine:
        doc = engine.run(tag("search", "zzz") + edit(0))
    bad = doc.image_segments[1]
    assert bad.status == "failed" and bad.error_type == "DependencyFailed"
    assert bad.error == "cannot edit image 0: tag 0 failed (nothing found for 'zzz')"


@pytest.mark.parametrize("index", [1, 5])
def test_edit_cannot_reference_itself_or_later_tags(index):
    with Engine({"search": LatencyTool("search"), "edit": LatencyTool("edit")}) as engine:
        doc = engine.run(edit(index) + tag("search", "later"))
    seg = doc.image_segments[0]
    assert seg.error_type == "DependencyFailed"
    assert "refers to no earlier image" in seg.error


def test_invalid_tag_keeps_its_slot_and_numbering():
    bad = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'q', 'x': 1}}</imgen>"
    text = bad + tag("search", "cat") + edit(1)
    with Engine({"search": LatencyTool("search"), "edit": LatencyTool("edit")}) as engine:
        doc = engine.run(text)
    segs = doc.image_segments
    assert [s.index for s in segs] == [0, 1, 2]
    assert [s.status for s in segs] == ["failed", "ok", "ok"]
    assert segs[0].error_type == "TagValidationError"
    assert doc.stats()["search"] == {"total": 2, "success": 1, "success_rate": 0.5}
    assert doc.judge_view().count("<image>") == 2


def test_unconfigured_tool_is_a_failed_image_that_says_how_to_configure():
    with Engine() as engine:
        doc = engine.run("Look: " + tag("search", "eiffel tower") + " done.")
    seg = doc.image_segments[0]
    assert seg.status == "failed" and seg.error_type == "ToolNotConfigured"
    assert "SERP_API_KEY" in seg.error and "llmi library add" in seg.error
    assert doc.judge_view() == "Look: <fail_to_generate_image> done."


def test_fallback_is_recorded_on_the_image():
    search = LatencyTool("search", backend="lib")
    with Engine({"search": search}, fallback={"diffusion": "search"}) as engine:
        doc = engine.run(tag("diffusion", "a dragon over a castle"))
    seg = doc.image_segments[0]
    assert seg.ok and seg.backend == "lib" and seg.tool == "diffusion"
    assert seg.fallback.to_dict() == {"requested": "diffusion", "used": "search",
                                      "reason": "no diffusion backend configured"}


def test_fallback_after_failure_can_be_disabled():
    gen = LatencyTool("diffusion", fail_with=BackendError("server said 500"))
    tools = {"diffusion": gen, "search": LatencyTool("search")}
    with Engine(tools, fallback={"diffusion": "search"}, fallback_on_failure=False) as engine:
        assert not engine.run(tag("diffusion", "x")).image_segments[0].ok
    with Engine(tools, fallback={"diffusion": "search"}) as engine:
        seg = engine.run(tag("diffusion", "y")).image_segments[0]
    assert seg.ok and seg.fallback.reason == "diffusion failed: server said 500"


def test_transient_errors_are_retried_and_permanent_ones_are_not():
    flaky = LatencyTool("search", latency=0, fail_first=2)
    with Engine({"search": flaky}, limits={"search": ToolLimits(retries=2, backoff=0.01)}) as engine:
        seg = engine.run(tag("search", "q")).image_segments[0]
    assert seg.ok and seg.attempts == 3
    broken = LatencyTool("search", latency=0, fail_with=NotFound("no"))
    with Engine({"search": broken}, limits={"search": ToolLimits(retries=3, backoff=0.01)}) as engine:
        seg = engine.run(tag("search", "q")).image_segments[0]
    assert not seg.ok and seg.attempts == 1 and broken.calls == 1


def test_the_engine_waits_the_retry_after_a_backend_asked_for(monkeypatch):
    import llmi.calls

    class Busy(LatencyTool):
        """Answers 429 with a Retry-After on the first call, then an image."""

        wait: float = 7.0

        async def run(self, call):
            if self.calls == 0:
                self.calls += 1
                busy = BackendError("429: slow down", transient=True)
                busy.retry_after = self.wait
                raise busy
            return await super().run(call)

    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded(delay, *args, **kwargs):
        waits.append(delay)
        return await real_sleep(0)

    monkeypatch.setattr(llmi.calls.asyncio, "sleep", recorded)
    limits = {"search": ToolLimits(retries=2, backoff=0.01)}
    with Engine({"search": Busy("search", latency=0)}, limits=limits) as engine:
        seg = engine.run(tag("search", "q")).image_segments[0]
    assert seg.ok and seg.attempts == 2 and 7.0 in waits  # not the 0.01 s backoff
    # a wait that cannot end before the document's deadline is not started
    waits.clear()
    slow = Busy("search", latency=0)
    slow.wait = 3600.0
    with Engine({"search": slow}, limits=limits, deadline=5) as engine:
        seg = engine.run(tag("search", "q")).image_segments[0]
    assert not seg.ok and seg.attempts == 1 and not any(w >= 30 for w in waits)


def test_per_call_timeout_and_document_deadline():
    slow = LatencyTool("search", latency=5)
    with Engine({"search": slow}, limits={"search": ToolLimits(timeout=0.1, retries=0)}) as engine:
        seg = engine.run(tag("search", "q")).image_segments[0]
    assert seg.error_type == "ToolTimeout" and "longer than 0.1 s" in seg.error
    with Engine({"search": slow}, deadline=0.2) as engine:
        doc = engine.run(tag("search", "a") + tag("search", "b"))
    assert all(s.error_type == "ToolTimeout" for s in doc.image_segments)


def test_unexpected_backend_exception_is_a_failed_image():
    class Broken(LatencyTool):
        async def run(self, call):
            raise KeyError("oops")

    with Engine({"search": Broken("search", backend="broken")}) as engine:
        seg = engine.run(tag("search", "q") + "after").image_segments[0]
    assert seg.error == "internal error in broken: KeyError: 'oops'"


def test_identical_calls_in_a_group_are_made_once():
    search = LatencyTool("search", latency=0.05)
    answers = [f"answer {i} " + tag("search", "Eiffel  Tower") + tag("search", f"own {i}") for i in range(8)]
    with Engine({"search": search}) as engine:
        docs = engine.run_many(answers)
        assert search.calls == 9  # one shared search (in flight together) + 8 distinct ones
        assert sum(d.image_segments[0].cache_hit for d in docs) == 7
        again = engine.run(tag("search", "eiffel tower"))  # normalised: same key, cached
    assert again.image_segments[0].cache_hit and search.calls == 9


def test_engine_runs_on_different_event_loops():
    search = LatencyTool("search")
    engine = Engine({"search": search}, cache=False)
    for _ in range(2):
        doc = asyncio.run(engine.arun(tag("search", "q")))
        assert doc.image_segments[0].ok
    assert engine.run(tag("search", "q")).image_segments[0].ok
    engine.close()


def test_events_report_progress():
    events = []
    with Engine({"search": LatencyTool("search")}, on_event=events.append) as engine:
        engine.run(tag("search", "q") + tag("diffusion", "p"))
    kinds = [(e.kind, e.index) for e in events]
    assert ("start", 0) in kinds and ("done", 0) in kinds and ("failed", 1) in kinds


# -- a search that finds nothing, and repeated pictures ---------------------------------------------


class Picky(LatencyTool):
    """Finds a picture only for queries that name a kangaroo; offers several per query."""

    offers_alternatives = True

    async def run(self, call):
        self.calls += 1
        await asyncio.sleep(0.01)  # long enough for identical calls to meet in flight
        query = call.request.text
        if "kangaroo" not in query.lower():
            raise NotFound(f"nothing for {query!r}")
        for k in range(2):
            image = ImageData.blank(5, 5, (10 + 40 * k, 0, 0))
            if image.sha256 not in call.avoid:
                return ToolOutput(image, info={"match": k})
        raise NotFound(f"every match for {query!r} is already in the document")


def test_a_search_that_finds_nothing_tries_the_description_then_the_sentence():
    with Engine({"search": Picky("search")}, search_retries=True) as engine:
        by_description = engine.run(tag("search", "Write a short guide", description="a kangaroo"))
        by_sentence = engine.run("Kangaroos hop across the outback.\n" + tag("search", "an animal", description="it"))
        nothing = engine.run("Nothing to see.\n" + tag("search", "a wombat", description="a wombat burrow"))
    seg = by_description.image_segments[0]
    assert seg.ok and seg.info["tries"] == [
        {"from": "query", "query": "Write a short guide", "error": "nothing for 'Write a short guide'"},
        {"from": "description", "query": "a kangaroo"},
    ]
    seg = by_sentence.image_segments[0]
    assert seg.ok and seg.info["tries"][-1] == {"from": "sentence key words", "query": "kangaroos hop across outback"}
    seg = nothing.image_segments[0]
    assert seg.error_type == "NotFound" and seg.error.startswith("nothing found in 3 tries: query 'a wombat'")
    assert [t["from"] for t in seg.info["tries"]] == ["query", "description", "sentence key words"]


def test_tags_sharing_a_failing_query_record_their_own_tries():
    text = ("Kangaroos hop.\n" + tag("search", "an animal", description="x")
            + "\nWombats dig.\n" + tag("search", "an animal", description="y"))
    with Engine({"search": Picky("search")}, search_retries=True) as engine:
        a, b = engine.run(text).image_segments
    first = {"from": "query", "query": "an animal", "error": "nothing for 'an animal'"}
    assert a.info["tries"][0] == first and b.info["tries"][0] == first  # the shared call, once each
    assert a.ok and a.info["tries"][-1]["query"] == "kangaroos hop"
    assert not b.ok and b.error.startswith("nothing found in 3 tries: query 'an animal': nothing for 'an animal';")


def test_search_retries_can_be_switched_off():
    picky = Picky("search")
    with Engine({"search": picky}) as engine:  # the plain engine: one call per tag
        seg = engine.run(tag("search", "an animal", description="a kangaroo")).image_segments[0]
    assert seg.error == "nothing for 'an animal'" and picky.calls == 1 and "tries" not in seg.info


def test_a_repeated_picture_is_replaced_by_the_next_distinct_match():
    text = tag("search", "kangaroo") + tag("search", "Kangaroo ") + tag("diffusion", "kangaroo") + tag("edit", "x", img_index=0)
    with Engine({"search": Picky("search"), "edit": LatencyTool("edit")}, fallback={"diffusion": "search"},
                distinct=True) as engine:
        doc = engine.run(text)
    first, second, third, edited = doc.image_segments
    assert first.ok and second.ok and third.ok and edited.ok
    assert first.image.sha256 != second.image.sha256
    assert second.info["repeat_avoided"] == 0 and second.info["match"] == 1
    # a third ask for the same thing: no distinct match left, so the repeat stays, recorded
    assert third.image.sha256 in (first.image.sha256, second.image.sha256)
    assert third.info["repeat_of"] in (0, 1) and third.fallback.used == "search"
    assert edited.image.sha256 not in (first.image.sha256, second.image.sha256)  # edits are new pictures

    with Engine({"search": Picky("search")}) as engine:  # repeats allowed
        a, b = engine.run(tag("search", "kangaroo") + tag("search", "kangaroo")).image_segments
    assert a.image.sha256 == b.image.sha256 and "repeat_of" not in b.info


def test_repeats_from_a_backend_without_alternatives_are_kept():
    search = LatencyTool("search")  # same query, same picture, and nothing else to offer
    with Engine({"search": search}, distinct=True) as engine:
        a, b = engine.run(tag("search", "owl") + tag("search", "owl")).image_segments
    assert a.image.sha256 == b.image.sha256 and search.calls == 1


def test_the_users_engine_retries_and_avoids_repeats_unless_read_the_llm_i_way():
    own, compat = Engine.from_env({}), Engine.from_env({}, profile="llmi-compat")
    assert (own.search_retries, own.distinct) == (True, True)
    assert (compat.search_retries, compat.distinct) == (False, False)
    assert Engine.from_env({}, distinct=False).distinct is False
    own.close()
    compat.close()
