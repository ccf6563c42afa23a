"""Does `llmi train grpo` learn? SmolLM2-135M on CPU, no tag grammar, rule rewards only.

The packaged SmolLM2-135M-Instruct (made trainable) is trained with GRPO on a small prompt set:
each prompt shows two short example exchanges, then asks about a new topic. Without the tag
grammar the untrained model often writes a tag but gets it wrong (no ``params``, a list where
a dict belongs ...). The rewards are llmi's ``tag_validity`` (the share of tags that are well
formed) and ``img_num`` (LLM-I's image-count score: the tag must produce an image, here from
the local image library), both from ``llmi.rewards``, no judge.

Held-out prompts (other topics) are answered before training, every ``--eval-every`` steps and
at the end: each checkpoint is written to GGUF and sampled with llama.cpp *without* the grammar,
and the answers are scored by the same reward code. The figures: the share of well-formed tags,
the share of answers whose tags are all well formed, the image-count score.

    python bench/bench_train_learn.py                      # 12 steps: ~11 CPU-minutes of training, 4 evaluations
    python bench/bench_train_learn.py --steps 4 --eval-every 2 --eval-samples 1   # a smoke run

Writes ``bench/results/train_learn/`` (data, run, results.json) and the plot ``--plot``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

#: two example exchanges every prompt starts with: what a well-formed answer looks like
SHOTS = [
    ("Tell me about the Eiffel Tower.",
     "The Eiffel Tower is an iron tower in Paris.\n<imgen>{'source': 'search', 'description': 'Eiffel Tower', "
     "'params': {'query': 'Eiffel Tower'}}</imgen>\nIt was built in 1889."),
    ("Tell me about owls.",
     "Owls are birds that hunt at night.\n<imgen>{'source': 'search', 'description': 'An owl', "
     "'params': {'query': 'owl'}}</imgen>\nThey have large eyes."),
]
TRAIN_TOPICS = [
    "kangaroos", "dolphins", "elephants", "giraffes", "penguins", "tigers", "horses", "rabbits", "frogs", "eagles",
    "bees", "butterflies", "whales", "turtles", "lions", "zebras", "guitars", "bicycles", "trains", "sailing boats",
    "clocks", "umbrellas", "pianos", "lighthouses", "castles", "windmills", "volcanoes", "apples", "bananas", "cheese",
]
HELDOUT_TOPICS = ["cats", "dogs", "sharks", "camels", "violins", "airplanes", "bridges", "strawberries"]


def rows(topics: list[str], split: str) -> list[dict]:
    out = []
    for i, topic in enumerate(topics):
        turns = []
        for question, answer in SHOTS:
            turns += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        verb = ("Tell me about", "Describe", "What do you know about")[i % 3]
        turns.append({"role": "user", "content": f"{verb} {topic}."})
        out.append({"prompt": turns, "image_num": 1, "tools": ["search"], "split": split})
    return out


def write_data(folder: Path) -> tuple[Path, list]:
    """train.parquet (through `llmi data prepare`'s code) and the held-out items."""
    from llmi.train.data import prepare_sync
    from llmi.train.rows import RowRules

    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "prompts.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows(TRAIN_TOPICS, "train") + rows(HELDOUT_TOPICS, "test")))
    report = prepare_sync([source], folder, RowRules(system_prompt=None))
    from llmi.train.data import read_items

    items, errors, _ = asyncio.run(read_items([report.outputs["test"]], RowRules()))
    assert not errors
    return report.outputs["train"], items


def reward_settings() -> dict:
    return {"llm_factor": 0.0, "mllm_factor": 0.0, "require_judges": False}


def evaluate(gguf: Path, items: list, *, samples: int, max_tokens: int, temperature: float, threads: int | None) -> dict:
    """Answers to the held-out items from a GGUF, without the grammar, scored by llmi's rewards."""
    from llmi.llm.base import Sampling
    from llmi.llm.local import LocalWriter
    from llmi.rewards.scorer import ExtraInfo, Sample
    from llmi.rewards.settings import RewardSettings
    from llmi.train.logs import tag_metrics

    writer = LocalWriter(gguf, grammar=None, n_threads=threads)
    scorer = RewardSettings.parse(reward_settings()).build()

    async def run() -> tuple[list, list[str]]:
        answers, samples_ = [], []
        for item in items:
            for seed in range(samples):
                text = await writer.complete(item.prompt, Sampling(temperature=temperature, top_p=1.0,
                                                                   max_tokens=max_tokens, seed=seed))
                answers.append(text)
                samples_.append(Sample(text, ExtraInfo(image_num=item.image_num, question=item.question,
                                                       tools=item.tools, split="test")))
        return await scorer.ascore_batch(samples_), answers

    started = time.perf_counter()
    breakdowns, answers = asyncio.run(run())
    scorer.close()
    figures = tag_metrics(breakdowns)
    figures["img_num_score"] = sum(b.img_num_score for b in breakdowns) / len(breakdowns)
    figures["answers"] = len(breakdowns)
    figures["seconds"] = time.perf_counter() - started
    figures["example"] = answers[0]
    return figures


class HeldOut(TrainerCallback):
    """Every ``every`` steps (and at the last), the current weights to GGUF, then ``evaluate``."""

    def __init__(self, every: int, meta: Path, items: list, results: list, **eval_kwargs) -> None:
        self.every, self.meta, self.items, self.results, self.eval_kwargs = every, meta, items, results, eval_kwargs

    def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs) -> None:
        if state.global_step % self.every == 0 or state.global_step == state.max_steps:
            self.results.append(held_out_at(state.global_step, model, processing_class, self.meta, self.items,
                                            **self.eval_kwargs))


def held_out_at(step: int, model, tokenizer, meta: Path, items: list, **eval_kwargs) -> dict:
    from llmi.train.export import export_gguf

    with tempfile.TemporaryDirectory(prefix="llmi-heldout-") as tmp:
        folder = Path(tmp)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        shutil.copy2(meta, folder / meta.name)
        gguf = export_gguf(folder, folder / "model.gguf", outtype="f16")
        figures = evaluate(gguf, items, **eval_kwargs)
    figures["step"] = step
    print(f"held-out at step {step}: {summary_line(figures)}", flush=True)
    return figures


def summary_line(f: dict) -> str:
    return (f"well-formed tags {f.get('tags/well_formed', float('nan')):.3f}, answers all well formed "
            f"{f['tags/answers_well_formed']:.3f}, answers with tags {f['tags/answers_with_tags']:.3f}, "
            f"image-count score {f['img_num_score']:.3f} ({f['answers']} answers, {f['seconds']:.0f} s)")


def plot(metrics: Path, held_out: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows_ = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    train = [r for r in rows_ if "reward" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [r["step"] for r in train]
    left.plot(steps, [r.get("tags/well_formed", float("nan")) for r in train], ".", alpha=0.5,
              label="well-formed share (training batch)")
    window = 5
    smooth = [sum(v for v in [t.get("tags/well_formed") for t in train[max(0, i - window + 1): i + 1]] if v is not None)
              / max(1, sum(1 for t in train[max(0, i - window + 1): i + 1] if t.get("tags/well_formed") is not None))
              for i in range(len(train))]
    left.plot(steps, smooth, label=f"same, mean of {window} steps")
    left.plot(steps, [r["reward"] / 2 for r in train], alpha=0.6, label="reward / 2 (tag_validity + img_num)")
    left.set_xlabel("step")
    left.set_ylim(-0.02, 1.02)
    left.set_title("training")
    left.legend(loc="lower right", fontsize=8)
    hs = [h["step"] for h in held_out]
    for key, label in (("tags/well_formed", "well-formed share of tags"),
                       ("tags/answers_well_formed", "answers whose tags are all well formed"),
                       ("img_num_score", "image-count score")):
        right.plot(hs, [h.get(key, float("nan")) for h in held_out], "o-", label=label)
    right.set_xlabel("step (0 = untrained)")
    right.set_ylim(-0.02, 1.02)
    right.set_title("held-out prompts, no grammar")
    right.legend(loc="lower right", fontsize=8)
    fig.suptitle("llmi train grpo: SmolLM2-135M on CPU")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--eval-samples", type=int, default=3, help="Answers per held-out prompt.")
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--prompts-per-step", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=56)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: half the cores).")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "train_learn")
    parser.add_argument("--plot", type=Path, default=HERE / "figures" / "train_learn.png")
    args = parser.parse_args()

    import torch

    from llmi.train.export import export_gguf
    from llmi.train.grpo import GRPOSettings, train
    from llmi.train.model import GGUF_META, trainable_model

    torch.manual_seed(0)
    if args.out.exists():
        shutil.rmtree(args.out)
    train_file, held = write_data(args.out / "data")
    base = Path(trainable_model())
    eval_kwargs = dict(samples=args.eval_samples, max_tokens=args.max_tokens, temperature=args.temperature,
                       threads=args.threads)
    started = time.perf_counter()
    before = evaluate(export_gguf(base, args.out / "base-f16.gguf", outtype="f16"), held, **eval_kwargs)
    before["step"] = 0
    print(f"untrained: {summary_line(before)}", flush=True)
    held_out = [before]
    settings = GRPOSettings(
        train_files=(train_file,), output_dir=args.out / "run", rewards=(("tag_validity", 1.0), ("img_num", 1.0)),
        reward_settings=reward_settings(), num_generations=args.num_generations,
        prompts_per_step=args.prompts_per_step, max_steps=args.steps, learning_rate=args.learning_rate,
        warmup_steps=2, max_completion_length=args.max_tokens, temperature=args.temperature,
        save_steps=max(args.steps, 1), samples_every=10, seed=0, threads=args.threads,
    )
    trained_at = time.perf_counter()
    result = train(settings, callbacks=[HeldOut(args.eval_every, base / GGUF_META, held, held_out, **eval_kwargs)])
    total = time.perf_counter() - started
    eval_seconds = sum(h["seconds"] for h in held_out[1:])
    after = held_out[-1]
    clock = [json.loads(line) for line in result.metrics.read_text().splitlines() if "time/step" in line]
    step_seconds = [r["time/step"] for r in clock if "reward" in r]
    plot(result.metrics, held_out, args.plot)
    results = {"before": before, "after": after, "held_out": held_out, "steps": result.steps,
               "train_seconds": time.perf_counter() - trained_at - eval_seconds, "total_seconds": total,
               "mean_step_seconds": sum(step_seconds) / max(1, len(step_seconds)), "settings": settings.to_dict()}
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))

    print(f"\n{result.steps} GRPO steps in {results['train_seconds']:.0f} s "
          f"({results['mean_step_seconds']:.1f} s/step), held-out evaluation {eval_seconds:.0f} s, total {total:.0f} s")
    print("| held-out (no grammar) | untrained | trained | change |\n|---|---|---|---|")
    for key, label in (("tags/well_formed", "well-formed share of tags"),
                       ("tags/answers_well_formed", "answers whose tags are all well formed"),
                       ("tags/answers_with_tags", "answers with at least one tag"),
                       ("img_num_score", "image-count score (LLM-I's n)")):
        b, a = before.get(key, 0.0), after.get(key, 0.0)
        print(f"| {label} | {b:.3f} | {a:.3f} | {a - b:+.3f} |")
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
