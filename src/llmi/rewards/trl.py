"""LLM-I's reward as TRL ``GRPOTrainer`` reward functions.

``LlmiRewards`` gives one combined reward function and one per component, all async (TRL runs
them concurrently). However many of them a trainer uses, each completion of a step is scored
once: one tool run, one call per judge, shared by every function::

    rewards = LlmiRewards(RewardScorer.from_env())
    trainer = GRPOTrainer(model, reward_funcs=[rewards.combined], ...)           # R itself
    # or the parts, weighted as LLM-I weighs them (TRL then logs each part's mean):
    funcs, weights = rewards.weighted()
    trainer = GRPOTrainer(model, reward_funcs=funcs, args=GRPOConfig(reward_weights=weights, ...))

The item's fields come from the dataset's columns: an ``extra_info`` column (LLM-I's parquet
layout), or ``image_num``, ``question``, ``tools`` and ``split`` columns; the question defaults
to the prompt's last user turn. An ``images`` (or ``image``) column gives the input images.

Each step's breakdowns (documents included) stay available for sample logs: ``last_batch``,
``history``, or an ``on_batch(step, prompts, completions, breakdowns)`` callback. LLM-I's logged
fields are reported through TRL's ``log_metric`` as ``llmi/<name>`` (batch means). A sample
excluded by ``on_error="exclude"`` gets ``None`` from every function, so TRL leaves it out.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from ..errors import LlmiError
from .breakdown import METRIC_KEYS, RewardBreakdown
from .rules import tag_validity
from .scorer import RewardScorer, Sample, as_images

__all__ = ["LlmiRewards", "completion_text"]

RewardFunc = Callable[..., Any]


@dataclass
class _Batch:
    completions: Sequence[Any]  # kept so that its id() is not reused while cached
    task: "asyncio.Future[list[RewardBreakdown]]"
    result: list[RewardBreakdown] | None = None


class LlmiRewards:
    """TRL reward functions over one ``RewardScorer`` (see the module docs).

    Judges the factors need must be configured (``require_judges=False`` lets a sample with a
    missing judge get ``None``, which TRL leaves out).
    """

    def __init__(
        self,
        scorer: RewardScorer,
        *,
        on_batch: Callable[[int | None, Sequence[Any], Sequence[Any], list[RewardBreakdown]], None] | None = None,
        history: int = 4,
        require_judges: bool = True,
    ) -> None:
        if require_judges:  # a reward silently missing its judge parts would train on the rules alone
            scorer.require_judges()
        self.scorer = scorer
        self.on_batch = on_batch
        self.history: deque[tuple[int | None, list[RewardBreakdown]]] = deque(maxlen=history)
        self._batches: OrderedDict[int, _Batch] = OrderedDict()
        self.combined = self._function("llmi_reward", lambda b: b.score)
        self.img_num = self._function("llmi_img_num", lambda b: b.img_num_score)
        self.mllm = self._function("llmi_mllm", lambda b: b.mllm_score * b.img_num_score)  # gated by n, as in R
        self.llm = self._function("llmi_llm", lambda b: b.llm_score)
        self.r_tool = self._function("llmi_r_tool", lambda b: b.r_tool)
        self.tag_validity = self._function(
            "llmi_tag_validity",
            lambda b: tag_validity(b.document, lenient=scorer.options.lenient_tags) if b.document is not None else None,
        )

    @classmethod
    def from_settings(cls, settings: Any = None, **kwargs: Any) -> "LlmiRewards":
        """Reward functions over the scorer ``RewardSettings`` (or a mapping of them) describe,
        with tools and judges from the environment (the judges the factors need must be set)."""
        from .settings import RewardSettings

        if not isinstance(settings, RewardSettings):
            settings = RewardSettings.parse(settings)
        return cls(settings.build(), **kwargs)

    @property
    def last_batch(self) -> list[RewardBreakdown]:
        """The breakdowns of the latest scored batch, in completion order."""
        return self.history[-1][1] if self.history else []

    def weighted(self) -> tuple[list[RewardFunc], list[float]]:
        """The component functions and the factors that make their weighted sum R (less the
        ``failed_tools`` penalty, which only ``combined`` includes)."""
        f = self.scorer.factors
        return [self.img_num, self.mllm, self.llm, self.r_tool], [f.img_num_factor, f.mllm_factor, f.llm_factor, f.tool_factor]

    # -- the functions --------------------------------------------------------------------------
    def _function(self, name: str, pick: Callable[[RewardBreakdown], float | None]) -> RewardFunc:
        async def reward(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
            breakdowns = await self._scored(prompts, completions, columns)
            return [_value(b, pick) for b in breakdowns]

        reward.__name__ = reward.__qualname__ = name
        reward.__doc__ = f"TRL reward function {name!r} (llmi's LLM-I reward)."
        return reward

    async def _scored(self, prompts: Sequence[Any], completions: Sequence[Any], columns: Mapping[str, Any]) -> list[RewardBreakdown]:
        """One scoring of this batch, shared by every function TRL calls with it."""
        key = id(completions)
        batch = self._batches.get(key)
        if batch is not None and batch.completions is completions:
            if batch.result is not None:
                return batch.result
            if batch.task.get_loop() is asyncio.get_running_loop():
                return await asyncio.shield(batch.task)
        batch = _Batch(completions, asyncio.ensure_future(self._score(prompts, completions, columns)))
        self._batches[key] = batch
        while len(self._batches) > 2:
            self._batches.popitem(last=False)
        batch.result = await asyncio.shield(batch.task)
        return batch.result

    async def _score(self, prompts: Sequence[Any], completions: Sequence[Any], columns: Mapping[str, Any]) -> list[RewardBreakdown]:
        samples: list[Sample | RewardBreakdown] = []
        for i, (prompt, completion) in enumerate(zip(prompts, completions)):
            try:
                info = self.scorer.extra_info(_row(i, prompt, columns))
                samples.append(Sample(completion_text(completion), info, _inputs(i, columns), id=str(i)))
            except LlmiError as exc:  # a bad row costs that row only
                samples.append(RewardBreakdown.failure(str(exc), type(exc).__name__, id=str(i),
                                                       excluded=self.scorer.options.on_error == "exclude"))
        todo = [s for s in samples if isinstance(s, Sample)]
        done = iter(await self.scorer.ascore_batch(todo))
        breakdowns = [next(done) if isinstance(s, Sample) else s for s in samples]
        state = columns.get("trainer_state")
        step = getattr(state, "global_step", None)
        self.history.append((step, breakdowns))
        self._report(breakdowns, columns)
        if self.on_batch is not None:
            self.on_batch(step, prompts, completions, breakdowns)
        return breakdowns

    @staticmethod
    def _report(breakdowns: list[RewardBreakdown], columns: Mapping[str, Any]) -> None:
        log_metric, log_extra = columns.get("log_metric"), columns.get("log_extra")
        if callable(log_metric) and breakdowns:
            kept = [b.metrics() for b in breakdowns if b.status != "excluded"] or [b.metrics() for b in breakdowns]
            for key in METRIC_KEYS:
                log_metric(f"llmi/{key}", sum(m[key] for m in kept) / len(kept))
        if callable(log_extra):
            log_extra("llmi_status", [b.status for b in breakdowns])


def _value(b: RewardBreakdown, pick: Callable[[RewardBreakdown], float | None]) -> float | None:
    if b.status in ("excluded", "incomplete"):
        return None
    if b.status == "failed":
        return 0.0  # LLM-I: a sample that failed scores 0 everywhere
    value = pick(b)
    return None if value is None else float(value)


def completion_text(completion: Any) -> str:
    """The answer in a TRL completion: a string, or the last message of a conversational one.

    >>> completion_text([{"role": "assistant", "content": [{"type": "text", "text": "Owls."}]}])
    'Owls.'
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion and isinstance(completion[-1], Mapping):
        content = completion[-1].get("content", "")
        if isinstance(content, str):
            return content
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    return str(completion)


def _row(i: int, prompt: Any, columns: Mapping[str, Any]) -> dict[str, Any]:
    """The item's fields: its ``extra_info`` column, or its own columns; a missing question
    defaults to the prompt's last user turn (an empty one is kept: LLM-I's judges are then asked
    ``Question: \nAnswer: ...``)."""
    info = columns.get("extra_info")
    row = dict(info[i]) if info is not None else {k: columns[k][i] for k in ("image_num", "question", "tools", "split")
                                                  if k in columns}
    if row.get("question") is None:
        row["question"] = _question(prompt)
    return row


def _question(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m for m in prompt if isinstance(m, Mapping) and m.get("role") == "user"] if isinstance(prompt, Sequence) else []
    return completion_text(users[-1:]) if users else str(prompt)


def _inputs(i: int, columns: Mapping[str, Any]) -> tuple:
    if columns.get("images") is not None:
        return as_images(columns["images"][i])
    if columns.get("image") is not None:
        return as_images([columns["image"][i]])
    return ()
