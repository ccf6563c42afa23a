"""What a GRPO run leaves behind besides the model: timings, metrics, sample pages, the curve.

Each piece is a transformers ``TrainerCallback`` (this module imports transformers: load it
only when training):

- ``StepClock`` times each step and its stages (generation, rewards — split into tool calls and
  judges by the scorer's own timings —, and optimisation, the rest);
- ``MetricsLog`` appends one JSON line per logging step: TRL's figures, the clock's, and how
  well formed the step's tags were (``tags/*``);
- ``SampleLog`` writes, every N steps, a page of the documents the reward scored that step (the
  same ``Document`` objects: no tool runs twice), best and worst completion per prompt;
- ``CopyMeta`` puts the base model's GGUF metadata into every checkpoint.
"""

from __future__ import annotations

import contextlib
import html
import json
import shutil
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Sequence

from transformers import TrainerCallback

from ..rewards.rules import tag_validity

__all__ = ["CopyMeta", "MetricsLog", "SampleLog", "StepClock", "plot_curve", "tag_metrics"]


def tag_metrics(breakdowns: Sequence[Any]) -> dict[str, float]:
    """How well formed a batch's tags were, from the documents the reward read.

    ``tags/well_formed`` is the share of tags that were valid (over every tag written);
    ``tags/answers_with_tags`` the share of answers with at least one tag;
    ``tags/answers_well_formed`` the share of answers with tags, all of them valid;
    ``tags/images_ok`` the share of tags that produced an image.
    """
    docs = [b.document for b in breakdowns if getattr(b, "document", None) is not None]
    if not docs:
        return {}
    tags = valid = images = with_tags = all_valid = 0
    for doc in docs:
        segments = doc.image_segments
        n = len(segments)
        ok = round(tag_validity(doc) * n) if n else 0
        tags, valid, images = tags + n, valid + ok, images + sum(s.ok for s in segments)
        with_tags += n > 0
        all_valid += n > 0 and ok == n
    out = {"tags/answers_with_tags": with_tags / len(docs), "tags/answers_well_formed": all_valid / len(docs),
           "tags/per_answer": tags / len(docs)}
    if tags:
        out.update({"tags/well_formed": valid / tags, "tags/images_ok": images / tags})
    return out


class StepClock(TrainerCallback):
    """Seconds per training step and per stage; ``last`` holds the latest step's figures."""

    def __init__(self) -> None:
        self.in_step = False
        self.current: dict[str, float] = defaultdict(float)
        self.last: dict[str, float] = {}
        self.history: list[dict[str, float]] = []
        self._started = self._cpu = 0.0

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.in_step, self.current = True, defaultdict(float)
        self._started, self._cpu = time.perf_counter(), time.process_time()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            if self.in_step:
                self.current[name] += time.perf_counter() - started

    def record_rewards(self, step: Any, prompts: Any, completions: Any, breakdowns: Sequence[Any]) -> None:
        """The scorer's per-sample tool and judge seconds, to split the reward stage's wall time."""
        if self.in_step:
            for b in breakdowns:
                timings = getattr(b, "timings", {}) or {}
                self.current["_tools"] += timings.get("tools", 0.0)
                self.current["_judges"] += timings.get("judges", 0.0)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        total = time.perf_counter() - self._started
        generation, rewards = self.current["generation"], self.current["rewards"]
        tools_sum, judges_sum = self.current["_tools"], self.current["_judges"]
        # Samples are scored concurrently: the reward stage's wall time is shared out in
        # proportion to the tool and judge time the samples reported.
        tools_share = tools_sum / (tools_sum + judges_sum) if tools_sum + judges_sum > 0 else 1.0
        self.last = {
            # CPU seconds of this process (torch and llama.cpp run in it): steadier than wall time
            # on a shared machine
            "time/step": total, "time/step_cpu": time.process_time() - self._cpu,
            "time/generation": generation, "time/rewards": rewards,
            "time/tools": rewards * tools_share, "time/judges": rewards * (1 - tools_share),
            "time/optimisation": max(0.0, total - generation - rewards),
        }
        self.history.append({"step": state.global_step, **self.last})
        self.in_step = False


class MetricsLog(TrainerCallback):
    """``metrics.jsonl``: one line per logging step (appended to on resume)."""

    def __init__(self, path: Path, *, clock: StepClock, resume: bool = False) -> None:
        self.path = path
        self.clock = clock
        self.tags: dict[str, float] = {}
        self.eval_tags: dict[str, float] = {}
        if not resume and path.exists():
            path.unlink()

    def record(self, step: Any, prompts: Any, completions: Any, breakdowns: Sequence[Any]) -> None:
        if self.clock.in_step:
            self.tags = tag_metrics(breakdowns)
        else:  # an evaluation batch
            self.eval_tags = {f"eval_{k}": v for k, v in tag_metrics(breakdowns).items()}

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        logs = dict(logs or {})
        if any(k.startswith("eval_") for k in logs):
            row = {**logs, **self.eval_tags}
        elif "train_runtime" in logs:  # the closing summary, not a step
            row = logs
        else:
            row = {**logs, **self.tags, **self.clock.last}
        row = {"step": state.global_step, **{k: v for k, v in row.items() if _is_number(v)}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


class SampleLog(TrainerCallback):
    """Every ``every`` steps, ``samples/step-NNNNNN/index.html``: for ``per_log`` prompts, the
    best and the worst completion of the step, as the documents the reward scored."""

    def __init__(self, folder: Path, *, every: int, per_log: int) -> None:
        self.folder = folder
        self.every = every
        self.per_log = per_log
        self._batch: tuple[Sequence[Any], Sequence[Any], Sequence[Any]] | None = None

    def record(self, step: Any, prompts: Any, completions: Any, breakdowns: Sequence[Any]) -> None:
        self._batch = (prompts, completions, breakdowns)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = state.global_step
        if not self.every or self._batch is None or (step % self.every and step != 1):
            return
        self.write(step, *self._batch, group=args.num_generations)
        self._batch = None

    def write(self, step: int, prompts: Sequence[Any], completions: Sequence[Any], breakdowns: Sequence[Any],
              *, group: int) -> Path:
        from ..rewards.trl import completion_text

        folder = self.folder / f"step-{step:06d}"
        if folder.exists():  # a resumed run writes the step again
            shutil.rmtree(folder)
        rows = []
        for g in range(0, min(len(breakdowns), self.per_log * group), group):
            members = list(range(g, min(g + group, len(breakdowns))))
            ranked = sorted(members, key=lambda i: _score(breakdowns[i]))
            for label, i in (("best", ranked[-1]), ("worst", ranked[0])):
                rows.append(self._sample(folder, step, i, label, prompts[i], completion_text(completions[i]),
                                         breakdowns[i]))
                if len(members) == 1:
                    break
        body = "\n".join(rows)
        _page(folder / "index.html", f"Samples at step {step}", f"<table>{_HEADER}{body}</table>")
        self._index()
        return folder

    def _sample(self, folder: Path, step: int, i: int, label: str, prompt: Any, text: str, breakdown: Any) -> str:
        question = _question(prompt)
        metrics = getattr(breakdown, "metrics", lambda: {})()
        shown = {k: metrics[k] for k in ("score", "img_num_score", "llm_score", "mllm_score", "r_tool") if k in metrics}
        link = ""
        document = getattr(breakdown, "document", None)
        if document is not None:
            # the reward and the sample's place in its group go with it, for llmi view's page
            score = getattr(breakdown, "score", None)
            facts = {"training": f"step {step}, sample {i}: the {label} of its group",
                     "reward": None if score is None else round(float(score), 4),
                     **{f"reward/{k}": round(float(v), 4) for k, v in shown.items() if k != "score"}}
            replace(document, meta={**document.meta, **facts}).save(folder / f"sample-{i}", ("html", "json"))
            link = f'<a href="sample-{i}/index.html">document</a>'
        tags = tag_metrics([breakdown])
        detail = ", ".join(f"{k} {v:.3g}" for k, v in {**shown, **tags}.items())
        return (f"<tr><td>{i}<br>{label}</td><td>{html.escape(question)}</td><td>{_score(breakdown):.3f}</td>"
                f"<td>{html.escape(detail)}<br>{link}</td><td><pre>{html.escape(text)}</pre></td></tr>")

    def _index(self) -> None:
        steps = sorted(p.name for p in self.folder.glob("step-*") if p.is_dir())
        items = "".join(f'<li><a href="{s}/index.html">{s}</a></li>' for s in steps)
        _page(self.folder / "index.html", "Sample documents", f"<ul>{items}</ul>")


class CopyMeta(TrainerCallback):
    """Puts the base model's GGUF metadata into every checkpoint, so each one exports to GGUF."""

    def __init__(self, meta: Path) -> None:
        self.meta = meta

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.meta.is_file() and folder.is_dir():
            shutil.copy2(self.meta, folder / self.meta.name)


def plot_curve(metrics: Path, out: Path) -> Path | None:
    """``curve.png``: the mean reward and the tags' well-formedness per step (None without data)."""
    if not metrics.is_file():
        return None
    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    train = [r for r in rows if "reward" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    steps = [r["step"] for r in train]
    top.plot(steps, [r["reward"] for r in train], label="mean reward (weighted sum)")
    top.set_ylabel("reward")
    top.legend(loc="lower right")
    for key, label in (("tags/well_formed", "well-formed share of tags"),
                       ("tags/answers_with_tags", "answers with a tag"),
                       ("tags/answers_well_formed", "answers whose tags are all well formed")):
        points = [(r["step"], r[key]) for r in train if key in r]
        if points:
            bottom.plot(*zip(*points), label=label)
    bottom.set_xlabel("step")
    bottom.set_ylim(-0.02, 1.02)
    bottom.legend(loc="lower right")
    fig.suptitle("GRPO training")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


_HEADER = "<tr><th>#</th><th>prompt</th><th>reward</th><th>parts</th><th>completion</th></tr>"
_STYLE = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
          "padding:.4em;vertical-align:top}pre{white-space:pre-wrap;max-width:60em;margin:0}")


def _page(path: Path, title: str, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
                    f"<style>{_STYLE}</style><h1>{html.escape(title)}</h1>{body}", encoding="utf-8")


def _score(breakdown: Any) -> float:
    score = getattr(breakdown, "score", None)
    return float(score) if score is not None else float("-inf")


def _question(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1]) if users else str(prompt)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
