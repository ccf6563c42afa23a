"""Streamed answers: tags start while the text is still arriving, and the document is exactly
the one that rendering the finished text gives, however the text is cut into pieces."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmi.document import TextSegment
from llmi.engine import Engine, ToolLimits
from llmi.errors import NotFound
from llmi.image import ImageData
from llmi.tags import ImageRequest, serialise
from llmi.testing import LatencyTool
from llmi.tools.base import ToolCall, ToolOutput


def tag(source: str, text: str = "x", description: str | None = None, **extra) -> str:
    params = {"search": {"query": text}, "diffusion": {"prompt": text}, "code": {"code": text},
              "edit": {"prompt": text, **extra}}[source]
    return serialise(ImageRequest(source, description or f"{source} {text}", params))


@dataclass
class Picks(LatencyTool):
    """A search backend with several matches per query, which honours ``ToolCall.avoid``
    (as the local library does), and finds nothing for queries with "zzz" in them."""

    offers_alternatives = True

    async def run(self, call: ToolCall) -> ToolOutput:
        await asyncio.sleep(self.latency)
        query = call.request.text
        if "zzz" in query:
            raise NotFound(f"nothing for {query!r}")
        for k in range(3):
            shade = (sum(map(ord, query)) * 7 + 60 * k) % 250
            image = ImageData.blank(6, 6, (shade, 0, 0))
            if image.sha256 not in call.avoid:
                return ToolOutput(image, info={"match": k})
        raise NotFound(f"every match for {query!r} is already in the document")


def engine(profile: str = "llmi", **kwargs) -> Engine:
    tools = {"search": Picks("search", latency=0), "code": LatencyTool("code", latency=0, backend="charts"),
             "edit": LatencyTool("edit", latency=0, backend="ed")}
    return Engine(tools, fallback={"diffusion": "search"}, cache=False, profile=profile, search_retries=True,
                  distinct=True, limits={s: ToolLimits(retries=0) for s in tools}, **kwargs)


#: answers that exercise the reader's corner cases: fences, unterminated and superseded tags,
#: stray closers, invalid tags, ">" inside code, edits of earlier and of failed images,
#: repeated queries, retries from the sentence before a tag, a tag as the very last thing
ANSWERS = [
    "Kangaroos hop.\n" + tag("search", "kangaroo") + "\nThey carry joeys. " + tag("diffusion", "kangaroo")
    + "\nA chart:\n" + tag("code", "plt.plot([1, 2]) if 3 > 2 else None") + "\n" + tag("edit", "sepia", img_index=1)
    + "\nThe end.",
    "Intro.\n```\n" + tag("search", "owl") + "\n```\nand `" + tag("search", "owl") + "` inline, then "
    + tag("edit", "brighter", img_index=1) + " done.",
    "A <imgen>{'source': 'search', 'descr unfinished\n" + tag("search", "cat") + " stray </imgen> here "
    + "<imgen>{'source': 'nope', 'description': 'd', 'params': {}}</imgen>"
    + '<imgen>{"source": "search", "description": "j", "params": {"query": "json dog"}}</imgen>',
    "Rain falls from grey clouds over the hills.\n" + tag("search", "zzz whole sentence query", "zzz too")
    + "\n" + tag("search", "zzz", "clouds") + tag("edit", "x", img_index=0) + " <imgen> {'padded': 1} </imgen> "
    + tag("search", "hills"),
    "Only " + tag("code", "x = 1\nif x > 0:\n    plt.bar([1], [x])") + tag("search", "q") + "<imgen>{'source': 'sea",
    "",
    "No tags at all, but a > and a < and </imgen> and <imgen> alone.",
    # thinking: tags inside a block are not run; an opening that ends in </think> is thinking too
    "<think>I could show <imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'owl'}}</imgen>"
    "</think>Owls.\n" + tag("search", "barn owl") + "<think>more " + tag("search", "x") + "</think> End.",
    "Plan: " + tag("search", "draft") + " then</think>The answer.\n" + tag("search", "final"),
    # a </imgen> inside a string (llmi widens the tag to the next one), and LLM-I's one-slot swallow
    "Look " + "<imgen>{'source': 'search', 'description': 'a </imgen> b', 'params': {'query': 'x'}}</imgen> and "
    + "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'y'}} </imgen> more "
    + tag("search", "z") + " <imgen> {'source': 'search'} </imgen>",
]
PROFILES = ["llmi", "llmi-compat"]


def view(doc):
    """Everything a document says, except timings and the backends' call counters."""
    out = []
    for s in doc.segments:
        if isinstance(s, TextSegment):
            out.append(s.text)
            continue
        info = {k: v for k, v in s.info.items() if k != "call"}
        out.append((s.index, s.raw, s.tool, s.status, s.request, s.error_type, s.error, s.backend,
                    s.image.sha256 if s.image else None, s.fallback, s.credit, info))
    return out, doc.judge_view(), doc.stats(), doc.meta["warnings"], doc.meta.get("thinking")


async def pieces(chunks):
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(0)  # let started tags run between pieces, as a real writer does


async def compare(eng: Engine, text: str, cuts, expected=None) -> None:
    if expected is None:
        expected = view(await eng.arun(text))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert "".join(chunks) == text
    assert view(await eng.arun(pieces(chunks))) == expected, chunks


@pytest.mark.parametrize("profile", PROFILES)
def test_every_split_point_gives_the_rendered_document(profile):
    async def main():
        async with engine(profile) as eng:
            for text in ANSWERS:
                expected = view(await eng.arun(text))
                for cut in range(len(text) + 1):
                    await compare(eng, text, [cut], expected)
                for size in (1, 7):  # token-sized pieces
                    await compare(eng, text, list(range(size, len(text), size)), expected)

    asyncio.run(main())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PROFILES), st.sampled_from([a for a in ANSWERS if "imgen" in a]),
       st.lists(st.floats(0, 1), max_size=12))
def test_random_chunkings_give_the_rendered_document(profile, text, fractions):
    cuts = sorted({int(f * len(text)) for f in fractions})

    async def main():
        async with engine(profile) as eng:
            await compare(eng, text, cuts)

    asyncio.run(main())


def test_tags_inside_unclosed_thinking_wait():
    search = LatencyTool("search", latency=0)

    async def main(eng):
        run = eng.stream()
        run.feed("<think>maybe " + tag("search", "draft") + " ")
        await asyncio.sleep(0.02)
        waited = (run.started_tags, search.calls)
        run.feed("no.</think>Answer: " + tag("search", "owl"))
        await asyncio.sleep(0.02)
        doc = await run.finish()
        return waited, doc

    with Engine({"search": search}) as eng:
        waited, doc = asyncio.run(main(eng))
    assert waited == (0, 0)  # the draft tag sat in a thinking block that was still open
    assert [s.request.query for s in doc.image_segments] == ["owl"] and search.calls == 1
    assert doc.meta["thinking"] == ["<think>maybe " + tag("search", "draft") + " no.</think>"]


def test_tags_start_while_the_text_is_still_arriving():
    search, code = LatencyTool("search", latency=0.01), LatencyTool("code", latency=0.01)
    seen = []

    async def writer():
        yield "Owls hunt.\n" + tag("search", "owl") + "\nA chart follows"
        await asyncio.sleep(0.2)
        seen.append((search.calls, code.calls))
        yield ":\n" + tag("code", "plt.plot([1])") + "\n"
        await asyncio.sleep(0.2)
        seen.append((search.calls, code.calls))
        yield "The end."

    with Engine({"search": search, "code": code}) as eng:
        doc = asyncio.run(eng.arun(writer()))
    assert seen == [(1, 0), (1, 1)]  # each tag ran as soon as it was written
    assert [s.status for s in doc.image_segments] == ["ok", "ok"]
    assert doc.meta["tools_after_text"] < doc.meta["elapsed"]


def test_an_edit_waits_for_its_source_even_when_streamed():
    search, editor = LatencyTool("search", latency=0.05), LatencyTool("edit", latency=0.0)

    async def writer():
        yield tag("search", "cat")
        yield tag("edit", "darker", img_index=0)  # starts at once, but waits for image 0

    with Engine({"search": search, "edit": editor}) as eng:
        doc = asyncio.run(eng.arun(writer()))
    first, second = doc.image_segments
    assert first.ok and second.ok
    assert second.image.to_pil().getpixel((0, 0))[0] == first.image.to_pil().getpixel((0, 0))[0] - 10


def test_finishing_with_other_text_restarts_what_changed():
    # The fed text says "owl"; the finished text (e.g. trimmed or corrected) says "cat" for
    # tag 0, so tag 0 and the edit after it must run again; the document follows the final text.
    search, editor = LatencyTool("search", latency=0.0), LatencyTool("edit", latency=0.0)
    fed = tag("search", "owl") + tag("edit", "darker", img_index=0)
    final = tag("search", "a cat") + tag("edit", "darker", img_index=0)

    async def main(eng):
        run = eng.stream()
        run.feed(fed)
        await asyncio.sleep(0.05)
        assert run.started_tags == 2
        streamed = await run.finish(final)
        return streamed, await eng.arun(final)

    with Engine({"search": search, "edit": editor}, cache=False) as eng:
        streamed, rendered = asyncio.run(main(eng))
    assert view(streamed) == view(rendered)
    assert streamed.image_segments[0].request.query == "a cat"


def test_the_deadline_counts_from_the_end_of_the_text():
    slow_writer_tool = LatencyTool("search", latency=0.05)

    async def writer():
        yield tag("search", "a")
        await asyncio.sleep(0.4)  # the writer takes longer than the tools' deadline
        yield tag("search", "b")

    with Engine({"search": slow_writer_tool}, deadline=0.3) as eng:
        doc = asyncio.run(eng.arun(writer()))
    assert [s.status for s in doc.image_segments] == ["ok", "ok"]

    stuck = LatencyTool("search", latency=5.0)
    with Engine({"search": stuck}, deadline=0.2, limits={"search": ToolLimits(timeout=30)}) as eng:
        doc = asyncio.run(eng.arun(writer()))
    assert [s.error_type for s in doc.image_segments] == ["ToolTimeout", "ToolTimeout"]
    assert "deadline" in doc.image_segments[0].error


def test_a_failing_writer_cancels_the_tags_it_started():
    search = LatencyTool("search", latency=5.0)

    async def writer():
        yield tag("search", "a")
        await asyncio.sleep(0.05)
        raise RuntimeError("the writer broke")

    async def main(eng):
        with pytest.raises(RuntimeError, match="writer broke"):
            await eng.arun(writer())
        await asyncio.sleep(0)
        return search._running

    with Engine({"search": search}) as eng:
        assert asyncio.run(main(eng)) == 0  # nothing left running
    assert search.calls == 1


def test_tools_warm_up_with_the_first_piece_of_a_stream():
    class Warm(LatencyTool):
        warmed = 0

        async def warm_up(self):
            Warm.warmed += 1

    class Blocking(LatencyTool):
        warmed = 0

        def warm_up(self):  # a plain method runs in a thread
            Blocking.warmed += 1

    class Broken(LatencyTool):
        async def warm_up(self):
            raise OSError("cannot warm up")

    tools = {"search": Warm("search"), "code": Blocking("code"), "edit": Broken("edit")}

    async def main(eng):
        for _ in range(2):  # once per tool, however many documents
            run = eng.stream()
            await asyncio.sleep(0.05)
            assert (Warm.warmed, Blocking.warmed) in ((0, 0), (1, 1))  # not before the first piece
            run.feed("plain ")
            run.feed("text")
            await asyncio.sleep(0.05)
            doc = await run.finish()
        return doc

    with Engine(tools) as eng:
        doc = asyncio.run(main(eng))
    assert doc.text == "plain text"
    assert (Warm.warmed, Blocking.warmed) == (1, 1)


def test_many_streams_at_once_share_the_engine():
    search = LatencyTool("search", latency=0.02)

    def writer(i):
        async def gen():
            for piece in (f"answer {i} ", tag("search", "shared"), tag("search", f"own {i}")):
                yield piece
                await asyncio.sleep(0.01)
        return gen()

    with Engine({"search": search}) as eng:
        docs = asyncio.run(eng.arun_many([writer(i) for i in range(6)]))
    assert all(s.ok for d in docs for s in d.image_segments)
    assert search.calls == 7  # the shared query once, in flight together
