"""Benchmark the embedded writer.

1. Generation speed of llmi's ``LocalWriter`` (tag grammar on, streamed through asyncio) against
   raw llama-cpp-python generating the same number of tokens from the same prompt, same model,
   same sampling, in the same process, rounds interleaved. Prompt evaluation is excluded from
   both (timing starts at the first token), so the ratio is the per-token cost of the grammar
   and of llmi. The stock llama-cpp-python grammar (grammar first in the sampler chain) is
   measured too, to show what the check-first sampler saves.
2. A prompt to a saved document, offline, each run a fresh process (cold model, library and
   chart pool), three ways with the same seed and so the same tokens: the writer alone, llmi's
   streaming order (``llmi.generate``: each tag runs as soon as it is written) and the
   write-then-render order (the whole answer first, then ``Engine.arun``). The ratios to the
   writer alone say how much of the tools' time is still visible.
3. ``--quality``: what the writer writes, on a fixed prompt set: distinct word 2- and 3-grams,
   repeated sentences, paragraphs that stop mid-sentence, code fences, tags, for llmi's earlier
   settings (repeat penalty 1.1 over 64 tokens, free line ends) against today's defaults
   (DRY, a 256-token penalty window, lines that end sentences, the unfinished tail trimmed);
   ``--grid`` adds the other penalty settings tried.

    python bench/bench_writer.py                     # 1 and 2 (3 rounds of 256 tokens; 2 runs each)
    python bench/bench_writer.py --rounds 5 --tokens 400 --e2e 3
    python bench/bench_writer.py --only-quality      # 3

Both wall-clock and CPU-time rates are printed: on a shared machine CPU time is the steadier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "Explain how a bicycle works, and show its parts."


def chatml(system: str, user: str) -> bytes:
    # SmolLM2's chat template, written out, so the raw baseline sees the same prompt tokens.
    return (f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n").encode()


def llmi_run(writer, messages, sampling) -> tuple[int, float, float, str]:
    """Tokens generated, wall and CPU seconds from the first token to the last, the text."""

    async def go():
        pieces, first = [], None
        async for piece in writer.stream(messages, sampling):
            if first is None:
                first = (time.perf_counter(), time.process_time())
            pieces.append(piece)
        return pieces, first

    pieces, first = asyncio.run(go())
    wall, cpu = time.perf_counter() - first[0], time.process_time() - first[1]
    return len(pieces), wall, cpu, "".join(pieces)


def raw_run(llama, prompt_tokens, n, *, seed, grammar=None, repeat_penalty=1.1) -> tuple[float, float]:
    """Raw llama-cpp-python: exactly ``n`` tokens (EOS ignored), timed from the first token."""
    llama.dry, llama.last_n_tokens_size = None, 64  # llama-cpp-python's own chain (the writer sets its own)
    llama.reset()
    llama.set_seed(seed)
    count, first = 0, None
    for _ in llama.generate(prompt_tokens, temp=0.7, top_p=0.9, repeat_penalty=repeat_penalty, grammar=grammar):
        count += 1
        if first is None:
            first = (time.perf_counter(), time.process_time())
        if count >= n:
            break
    return time.perf_counter() - first[0], time.process_time() - first[1]


def bench_generation(rounds: int, tokens: int, stock: bool) -> None:
    import llama_cpp

    from llmi.llm import Sampling, build_messages
    from llmi.llm.grammar import tag_grammar
    from llmi.llm.local import LocalWriter, default_model_path, open_llama
    from llmi.prompts import system_prompt

    writer = LocalWriter()  # the default: SmolLM2, tag grammar, half the cores
    system = system_prompt(variant=writer.prompt_variant)  # what llmi generate sends it
    loaded = writer.load()
    raw = loaded.llama  # the very same model object, so weights and threads are identical
    messages = build_messages(PROMPT, system=system)
    prompt_tokens = raw.tokenize(chatml(system, messages[-1].content), add_bos=False, special=True)
    plain = None
    if stock:  # the unmodified Llama class: grammar applied to the whole vocabulary each token
        plain = _stock_llama(open_llama, writer)
    grammar = llama_cpp.LlamaGrammar.from_string(tag_grammar())

    print(f"model: {default_model_path().name}, threads: {writer.n_threads}, prompt: {len(prompt_tokens)} tokens, "
          f"{tokens} tokens per run, {rounds} rounds")
    rows: dict[str, list[tuple[float, float]]] = {"raw": [], "llmi": [], "stock-grammar": []}
    tags = 0
    for r in range(rounds):
        seed = 1000 + r
        n, wall, cpu, text = llmi_run(writer, messages, Sampling(seed=seed, max_tokens=tokens))
        tags += text.count("</imgen>")
        rows["llmi"].append((n / wall, n / cpu))
        w, c = raw_run(raw, prompt_tokens, n, seed=seed)
        rows["raw"].append((n / w, n / c))
        if plain is not None:
            w, c = raw_run(plain, prompt_tokens, n, seed=seed, grammar=grammar)
            rows["stock-grammar"].append((n / w, n / c))
        print(f"  round {r + 1}: {n} tokens; llmi {rows['llmi'][-1][0]:.1f} tok/s, raw {rows['raw'][-1][0]:.1f} tok/s"
              + (f", stock grammar {rows['stock-grammar'][-1][0]:.1f} tok/s" if plain is not None else ""))

    def med(name: str, i: int) -> float:
        return statistics.median(v[i] for v in rows[name])

    print(f"\n{'':<28}{'wall tok/s':>12}{'CPU tok/s':>12}")
    for name, label in (("raw", "raw llama-cpp-python"), ("llmi", "llmi LocalWriter + grammar"),
                        ("stock-grammar", "llama-cpp-python + grammar")):
        if rows[name]:
            print(f"{label:<28}{med(name, 0):>12.1f}{med(name, 1):>12.1f}")
    for i, kind in ((0, "wall"), (1, "CPU")):
        print(f"llmi overhead vs raw ({kind}): {100 * (med('raw', i) / med('llmi', i) - 1):+.1f}%  (target <= 15%)")
    if rows["stock-grammar"]:
        print(f"stock grammar overhead vs raw (CPU): {100 * (med('raw', 1) / med('stock-grammar', 1) - 1):+.1f}%")
    print(f"well-formed tags written by llmi across the rounds: {tags}")


def _stock_llama(open_llama, writer):
    import llama_cpp

    from llmi.llm import fast_grammar, local

    # open_llama builds the check-first subclass; for the stock path, build the base class the
    # same way (same extra-buffer setting) by swapping the class for one call.
    saved = fast_grammar._CLASS
    fast_grammar._CLASS = llama_cpp.Llama
    try:
        return open_llama(local.default_model_path(), n_ctx=writer.n_ctx, n_threads=writer.n_threads)
    finally:
        fast_grammar._CLASS = saved


# -- 2: prompt to saved document --------------------------------------------------------------

E2E_PROMPTS = [("Tell me about kangaroos", 1), ("Show a chart of the squares of 1 to 5", 2)]
_DRIVER = r"""
import asyncio, json, sys, time
t0 = time.perf_counter()
mode, prompt, seed, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
from llmi.api import agenerate
from llmi.engine import Engine
from llmi.llm import Sampling, build_messages, trim_unfinished
from llmi.llm.local import LocalWriter
from llmi.prompts import system_prompt

async def main():
    writer = LocalWriter()
    sampling = Sampling(seed=seed, max_tokens=512)
    if mode == "stream":
        doc = await agenerate(prompt, writer=writer, sampling=sampling)
        doc.save(out)
        return doc.meta["writer_seconds"], doc
    messages = build_messages(prompt, system=system_prompt(variant=writer.prompt_variant))
    started = time.perf_counter()
    text = trim_unfinished(await writer.complete(messages, sampling))
    writing = time.perf_counter() - started
    if mode == "writer":
        return writing, text
    async with Engine.from_env() as engine:
        doc = await engine.arun(text)
    doc.save(out)
    return writing, doc

writing, result = asyncio.run(main())
text = result if isinstance(result, str) else "".join(
    s.text if s.type == "text" else s.raw for s in result.segments)
tags = [] if isinstance(result, str) else [(s.tool, s.status) for s in result.image_segments]
print(json.dumps({"total": time.perf_counter() - t0, "writing": writing, "text": text, "tags": tags}))
"""


def bench_end_to_end(runs: int) -> None:
    modes = ("writer", "stream", "serial")
    rows: dict[str, list[float]] = {m: [] for m in modes}
    print(f"prompt to saved document, fresh process each, {len(E2E_PROMPTS)} prompts x {runs} rounds, "
          f"modes interleaved (cores: {os.cpu_count()}, load average {os.getloadavg()[0]:.1f})")
    for r in range(runs):
        for prompt, seed in E2E_PROMPTS:
            seen = {}
            for mode in modes:
                with tempfile.TemporaryDirectory() as tmp:
                    proc = subprocess.run([sys.executable, "-c", _DRIVER, mode, prompt, str(seed), str(Path(tmp) / "doc")],
                                          capture_output=True, text=True)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:])
                    raise SystemExit(f"{mode} run failed with {proc.returncode}")
                result = json.loads(proc.stdout.strip().splitlines()[-1])
                seen[mode] = result
                rows[mode].append(result["total"])
            same = len({seen[m]["text"] for m in modes}) == 1
            print(f"  round {r + 1}, {prompt!r} seed {seed}: writer {seen['writer']['total']:.1f} s, "
                  f"streaming {seen['stream']['total']:.1f} s, write-then-render {seen['serial']['total']:.1f} s; "
                  f"tags {seen['stream']['tags']}; same tokens: {same}")
    w = statistics.median(rows["writer"])
    for mode, label in (("stream", "llmi generate (streaming)"), ("serial", "write, then render")):
        ratios = [t / base for t, base in zip(rows[mode], rows["writer"])]
        print(f"{label:<28} median {statistics.median(rows[mode]):.1f} s = {statistics.median(ratios):.3f} x the "
              f"writer alone ({w:.1f} s); per run {', '.join(f'{x:.2f}' for x in ratios)}")


# -- 3: what the writer writes ---------------------------------------------------------------

QUALITY_PROMPTS = [
    "Tell me about kangaroos",
    "Explain the water cycle",
    "Write a short illustrated guide to the water cycle, with a chart of yearly rainfall",
    "Describe Paris at night",
    "Compare cats and dogs as pets",
    "Show the growth of world population since 1900",
    "How does a bicycle work?",
    "Explain how bees make honey",
]
_WORDS = re.compile(r"[\w']+")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")
_ENDED = re.compile(r"""[.!?:…]["'”’)\]*_]*$""")


def prose_stats(text: str) -> dict[str, float]:
    """Distinct n-gram ratios, repeated and unfinished sentences of one answer's prose."""
    from llmi.tags import parse

    parsed = parse(text)
    prose = "".join(p for p in parsed.parts if isinstance(p, str))
    words = [w.lower() for w in _WORDS.findall(prose)]
    out: dict[str, float] = {}
    for n in (2, 3):
        grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
        out[f"distinct{n}"] = len(set(grams)) / len(grams) if grams else 1.0
    lines = [ln.strip() for ln in prose.splitlines() if ln.strip() and not ln.strip().startswith(("```", "~~~"))]
    sentences = [s.strip().lower() for ln in lines for s in _SENTENCES.split(ln) if len(s.split()) >= 3]
    out["repeated"] = len(sentences) - len(set(sentences))
    out["unfinished"] = sum(1 for ln in lines if not _ENDED.search(ln))
    out["fences"] = prose.count("```")
    out["tags"] = sum(t.ok for t in parsed.tags)
    return out


QUALITY_SETTINGS = {
    # name: (Penalties keyword arguments, sentence-ending prose lines, trim the unfinished tail)
    "before: repeat 1.1 over 64 tokens, free lines": (dict(repeat=1.1, last_n=64, dry=None), False, False),
    "now: DRY, repeat 1.1 over 256, whole sentences": (dict(repeat=1.1, last_n=256, dry="default"), True, True),
}
GRID_SETTINGS = {
    "repeat 1.1 over 64, whole sentences": (dict(repeat=1.1, last_n=64, dry=None), True, True),
    "repeat 1.2 over 256, whole sentences": (dict(repeat=1.2, last_n=256, dry=None), True, True),
    "repeat 1.1 over 256 + presence 0.3 + frequency 0.3": (dict(repeat=1.1, last_n=256, presence=0.3, frequency=0.3,
                                                               dry=None), True, True),
    "DRY x1.2, repeat 1.1 over 256": (dict(repeat=1.1, last_n=256, dry=1.2), True, True),
}


def bench_quality(grid: bool, max_tokens: int) -> None:
    from llmi.llm import Sampling, build_messages, trim_unfinished, trim_unfinished_tag
    from llmi.llm.fast_grammar import Dry
    from llmi.llm.grammar import tag_grammar
    from llmi.llm.local import LocalWriter, Penalties
    from llmi.prompts import system_prompt

    settings = {**QUALITY_SETTINGS, **(GRID_SETTINGS if grid else {})}
    print(f"writer quality: {len(QUALITY_PROMPTS)} prompts, seed 1, {max_tokens} tokens at most, SmolLM2-135M")
    print(f"{'setting':<54}{'distinct-2':>11}{'distinct-3':>11}{'repeated':>10}{'unfinished':>11}"
          f"{'fences':>8}{'tags':>6}{'tok/s':>7}")
    for name, (pen, whole, trim) in settings.items():
        pen = dict(pen)
        dry = pen.pop("dry")
        penalties = Penalties(**pen, dry=None if dry is None else Dry() if dry == "default" else Dry(multiplier=dry))
        writer = LocalWriter(grammar=tag_grammar(whole_sentences=whole, line_chars=480 if whole else 320),
                             penalties=penalties)
        totals: dict[str, float] = {}
        tokens = seconds = 0.0
        for prompt in QUALITY_PROMPTS:
            messages = build_messages(prompt, system=system_prompt(variant="compact"))
            started = time.perf_counter()
            pieces = asyncio.run(_pieces(writer, messages, Sampling(seed=1, max_tokens=max_tokens)))
            seconds += time.perf_counter() - started
            tokens += len(pieces)
            text = (trim_unfinished if trim else trim_unfinished_tag)("".join(pieces))
            for key, value in prose_stats(text).items():
                totals[key] = totals.get(key, 0.0) + value
        n = len(QUALITY_PROMPTS)
        print(f"{name:<54}{totals['distinct2'] / n:>11.3f}{totals['distinct3'] / n:>11.3f}{totals['repeated']:>10.0f}"
              f"{totals['unfinished']:>11.0f}{totals['fences']:>8.0f}{totals['tags']:>6.0f}{tokens / seconds:>7.1f}")
    print("distinct-n: unique word n-grams over all n-grams of an answer's prose (mean); repeated: sentences of 3+ "
          "words said again in the same answer; unfinished: prose lines not ending a sentence (sums over the prompts)")


async def _pieces(writer, messages, sampling) -> list[str]:
    return [p async for p in writer.stream(messages, sampling)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--e2e", type=int, default=2, help="rounds of prompt-to-document runs (0 to skip)")
    ap.add_argument("--no-stock", action="store_true", help="skip the stock llama-cpp-python grammar row")
    ap.add_argument("--only-e2e", action="store_true", help="only the prompt-to-document runs")
    ap.add_argument("--quality", action="store_true", help="also measure what the writer writes")
    ap.add_argument("--only-quality", action="store_true", help="only measure what the writer writes")
    ap.add_argument("--grid", action="store_true", help="with the quality measure: the other settings tried")
    ap.add_argument("--quality-tokens", type=int, default=512)
    args = ap.parse_args()
    if not (args.only_quality or args.only_e2e):
        bench_generation(args.rounds, args.tokens, stock=not args.no_stock)
    if args.e2e and not args.only_quality:
        print()
        bench_end_to_end(args.e2e)
    if args.quality or args.only_quality:
        print()
        bench_quality(args.grid, args.quality_tokens)


if __name__ == "__main__":
    main()
