"""Test-time scaling with real models: the embedded SmolLM2 writer and SmolLM2 behind llama.cpp's
OpenAI-compatible server as the judge, the offline tools, the real chart sandbox."""

from __future__ import annotations

import asyncio
import json

import pytest
from eval_fixtures import llama_server, smollm2_path  # noqa: F401 - the real llama.cpp server

from llmi.engine import Engine
from llmi.llm import Sampling
from llmi.scaling import ScaleConfig, Scaler
from llmi.scaling.judges import Judges


def _run(scaler: Scaler, prompt: str, **sampling) -> object:
    async def go():
        try:
            return await scaler.arun(prompt, sampling=Sampling(**sampling))
        finally:
            await scaler.aclose()

    return asyncio.run(go())


def test_scale_with_the_embedded_writer_and_a_real_judge(llama_server, tmp_path):
    from llmi.llm.local import LocalWriter

    engine = Engine.from_env({"LLMI_SEARCH_BACKEND": "none"})
    scaler = Scaler(LocalWriter(), engine, config=ScaleConfig(n=2, judge_samples=1, max_repairs=1),
                    judges=Judges.from_urls(llama_server))
    doc = _run(scaler, "Show a chart of the squares of 1 to 5.", seed=3, max_tokens=90)
    record = doc.meta["scaling"]
    assert [c["seed"] for c in record["candidates"]] == [3, 4]
    assert all(c["status"] in ("valid", "dropped", "kept", "failed") for c in record["candidates"])
    assert record["selection"]["method"] in ("scores", "rules", "only")
    if record["selection"]["method"] == "scores":
        assert all(c["score"] is not None for c in record["candidates"] if c["index"] in record["selection"]["pool"])
        # llama.cpp returns token probabilities: the LLM judge's scores are expected values
        judgings = [j for c in record["candidates"] for j in c["scores"].get("judgings", ())]
        assert any(j.get("llm_expected") for j in judgings), judgings
    names = [s["name"] for s in record["stages"]]
    assert names[:2] == ["sample", "validate"] and names[-1] == "polish"
    sample = record["stages"][0]["cost"]
    assert sample["writer_calls"] == 2 and 0 < sample["writer_tokens"] <= 180 and sample["prompt_tokens"] > 100
    # every tag of the final answer is one of the chosen candidate's, or a change that was kept
    chosen = record["candidates"][record["selection"]["chosen"]]
    kept = {c["tag"] for c in record["enhancements"] if c["kept"]}
    final_tags = [s.raw for s in doc.image_segments]
    chosen_doc_tags = [i["tag"] for i in chosen["images"]]
    assert len(final_tags) == len(chosen_doc_tags)
    for seg in doc.image_segments:
        assert seg.raw in chosen["answer"] or seg.index in kept
    assert record["polish"]["status"] in ("applied", "unchanged", "rejected", "reverted")
    assert json.loads(json.dumps(record)) == record  # document.json can hold it


@pytest.mark.slow
def test_the_small_model_repairs_a_typo_where_it_manages(llama_server):
    """SmolLM2-135M asked to repair ``plt.plott``: the attempt is recorded either way, and kept
    only if the chart then renders."""
    from llmi.llm.local import LocalWriter

    answer_text = ("Squares.\n<imgen>{'source': 'code', 'description': 'squares of 1 to 5', "
                   "'params': {'code': 'plt.plott([1, 2, 3, 4, 5], [1, 4, 9, 16, 25])'}}</imgen>\n")

    class Given(LocalWriter):  # the candidate is the broken answer; the repair is the model's own
        async def stream(self, messages, sampling=None):
            if messages[0].content.startswith("Chart code"):
                async for piece in super().stream(messages, sampling):
                    yield piece
            else:
                yield answer_text

    engine = Engine.from_env({"LLMI_SEARCH_BACKEND": "none"})
    doc = _run(Scaler(Given(), engine, config=ScaleConfig(n=1, polish=False, max_repairs=2)), "Squares?", seed=1,
               max_tokens=200)
    changes = doc.meta["scaling"]["enhancements"]
    assert changes and all(c["kind"] == "code_repair" for c in changes)
    assert doc.image_segments[0].ok == any(c["kept"] for c in changes)
