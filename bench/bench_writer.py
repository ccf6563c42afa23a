"""Benchmark the embedded writer.

1. Generation speed of llmi's ``LocalWriter`` (tag grammar on, streamed through asyncio) against
   raw llama-cpp-python generating the same number of tokens from the same prompt, same model,
   same sampling, in the same process, rounds interleaved. Prompt evaluation is excluded from
   both (timing starts at the first token), so the ratio is the per-token cost of the grammar
   and of llmi. The stock llama-cpp-python grammar (grammar first in the sampler chain) is
   measured too, to show what the check-first sampler saves.
2. Time from ``llmi generate`` to a finished document with the default model (a subprocess).

    python bench/bench_writer.py                 # 3 rounds of 256 tokens, one end-to-end run
    python bench/bench_writer.py --rounds 5 --tokens 400 --e2e 2

Both wall-clock and CPU-time rates are printed: on a shared machine CPU time is the steadier.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


def bench_end_to_end(runs: int) -> None:
    llmi_bin = Path(sys.executable).with_name("llmi")
    times = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            started = time.perf_counter()
            proc = subprocess.run([str(llmi_bin), "generate", "Explain the water cycle", "--seed", str(i + 1),
                                   "--out", str(Path(tmp) / "doc"), "-q"], capture_output=True, text=True)
            elapsed = time.perf_counter() - started
            if proc.returncode != 0:
                print(proc.stderr[-2000:])
                raise SystemExit(f"llmi generate failed with {proc.returncode}")
            files = sorted(p.name for p in (Path(tmp) / "doc").iterdir())
        times.append(elapsed)
        print(f"  llmi generate run {i + 1}: {elapsed:.1f} s ({', '.join(f for f in files if '.' in f)})")
    print(f"llmi generate \"Explain the water cycle\" to a finished document: median {statistics.median(times):.1f} s "
          f"over {runs} run(s), default model, {os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--e2e", type=int, default=1, help="end-to-end llmi generate runs (0 to skip)")
    ap.add_argument("--no-stock", action="store_true", help="skip the stock llama-cpp-python grammar row")
    args = ap.parse_args()
    bench_generation(args.rounds, args.tokens, stock=not args.no_stock)
    if args.e2e:
        print()
        bench_end_to_end(args.e2e)


if __name__ == "__main__":
    main()
