"""Scoring answers: tools, judges and LLM-I's formula, for one answer or a whole batch.

``RewardScorer.ascore(sample)`` takes one answer through four stages:

1. **tools**: the engine reads the answer with the scorer's profile (``llmi-compat``: LLM-I's
   reading, ``<think>`` blocks removed first as its reward manager does), runs the tags and
   returns the ``Document``;
2. **view**: what the reward sees of it (``view_of``: judge text, images, counts);
3. **judges**: the LLM and the MLLM judge, concurrently, each under its own limits, with the
   ``RewardOptions`` deciding when the MLLM judge is skipped and what an error costs;
4. **combine**: ``RewardBreakdown`` with R, every component, the raw replies, the time each
   stage took and every fallback taken.

``ascore_batch`` scores many answers at once. They share one engine (so identical tool calls
in a GRPO group run once, through its cache) and the judges' global limits, so a batch is
bounded by backend capacity, not by per-sample thread pools. One sample's failure, or its
deadline, never touches the others: it becomes a ``failed`` (LLM-I: R = 0) or ``excluded``
breakdown.

>>> from llmi.engine import Engine
>>> scorer = RewardScorer(Engine(), llm_judge=None, mllm_judge=None, factors=RewardFactors(llm_factor=0, mllm_factor=0))
>>> b = scorer.score(Sample("Just prose.", ExtraInfo(image_num=-1, question="Say hi")))
>>> b.score, b.img_num_score, b.llm.skip_reason      # a part that weighs nothing is not asked for
(0.2, 1.0, 'unweighted')
>>> scorer.close()
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Mapping, Sequence

from ..errors import ConfigError
from ..profiles import ProfileLike, get_profile
from .breakdown import JudgeVerdict, RewardBreakdown, RewardFallback
from .config import OPTION_PRESETS, RewardFactors, RewardOptions
from .formula import LLM_FIELDS, MLLM_FIELDS, combine, llm_part, mllm_part
from .judges import PROFILES, LLMJudge, MLLMJudge, judges_from_env
from .rules import check_image_num, image_num_score, r_tool
from .view import IMAGE_TOKEN, RewardView, view_of

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document
    from ..engine import Engine
    from ..image import ImageData

__all__ = ["ExtraInfo", "Sample", "RewardScorer", "as_images"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExtraInfo:
    """The item an answer was written for, as LLM-I's datasets carry it in ``extra_info``.

    ``image_num``: -1 (no image), 0 (any), 99 (at least one) or N; ``tools``: the tools the
    item needs (for ``r_tool``); ``split``: ``train`` selects the training image-count score.
    """

    image_num: int
    question: str
    tools: tuple[str, ...] = ()
    split: str = "train"

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_num", check_image_num(self.image_num))
        if not isinstance(self.question, str):
            raise ConfigError(f"extra_info.question must be a string, not {type(self.question).__name__}")
        tools = self.tools
        if isinstance(tools, str) or not all(isinstance(t, str) for t in tools):
            raise ConfigError(f"extra_info.tools must be a list of tool names, not {tools!r}")
        object.__setattr__(self, "tools", tuple(tools))
        if not isinstance(self.split, str):
            raise ConfigError(f"extra_info.split must be a string, not {self.split!r}")

    @classmethod
    def from_mapping(cls, info: Mapping[str, Any], *, strict: bool = False) -> "ExtraInfo":
        """From a dataset row's ``extra_info`` (extra keys such as ``index`` are ignored).

        ``image_num`` and ``question`` are required; without ``strict``, missing ``tools`` mean
        none and a missing (or empty) ``split`` means ``train``. ``strict`` (the ``llmi-compat``
        profile) requires all four, as LLM-I's reward does (a row without them scores 0 there),
        and keeps the split as written: only ``"train"`` is training, ``""`` and a null are not
        (a null split or question is kept as ``"None"``, the text LLM-I makes of it).

        >>> ExtraInfo.from_mapping({"image_num": 1, "question": "q", "tools": [], "split": ""}, strict=True).split
        ''
        """
        if not isinstance(info, Mapping):
            raise ConfigError(f"extra_info must be a mapping, not {type(info).__name__}")
        for key in ("image_num", "question", "tools", "split") if strict else ("image_num", "question"):
            if key not in info or (strict and key in ("image_num", "tools") and info[key] is None):
                raise ConfigError(f"extra_info has no {key!r}; LLM-I's rows carry image_num, question, tools and split")
        tools = info.get("tools")
        try:
            tools = () if tools is None else tuple(tools.tolist() if hasattr(tools, "tolist") else tools)
        except TypeError:  # a number: LLM-I's set() of it fails, and the row scores 0 there
            raise ConfigError(f"extra_info.tools must be a list of tool names, not {tools!r}") from None
        if not strict:
            return cls(info["image_num"], info["question"], tools, info.get("split") or "train")
        # LLM-I's test is `extra_info["split"] == "train"`: any other value, "" included, picks the
        # evaluation variant, so the split is kept as written; a value that is not a string (a
        # parquet null) never equals "train" and is kept as its text, as is such a question, which
        # LLM-I formats into the judges' message (`Question: None`)
        split, question = info["split"], info["question"]
        return cls(info["image_num"], question if isinstance(question, str) else str(question), tools,
                   split if isinstance(split, str) else str(split))


@dataclass(frozen=True)
class Sample:
    """One answer to score: the model's ``answer``, its item, and the item's input images."""

    answer: str
    extra_info: ExtraInfo
    inputs: "tuple[ImageData, ...]" = ()
    id: str | None = None
    data_source: str = "interleaved"

    def __post_init__(self) -> None:
        if not isinstance(self.answer, str):
            raise ConfigError(f"an answer must be a string, not {type(self.answer).__name__}")
        object.__setattr__(self, "inputs", tuple(self.inputs))


def _preset(name: str) -> str:
    """The options and judge-style preset for a reading profile's name."""
    return name if name in PROFILES else "llmi-compat"


def as_images(values: Any) -> "tuple[ImageData, ...]":
    """Input images as datasets and trainers hold them: ``ImageData``, PIL images, encoded
    bytes, or dataset dicts with ``bytes`` or ``path`` (``None`` entries are skipped).

    >>> from PIL import Image
    >>> [img.size for img in (i.to_pil() for i in as_images([Image.new("RGB", (3, 2))]))]
    [(3, 2)]
    """
    from ..image import ImageData

    out = []
    for value in list(values) if values is not None else ():
        try:
            if isinstance(value, ImageData):
                out.append(value)
            elif isinstance(value, Mapping):
                data = value.get("bytes")
                out.append(ImageData.from_bytes(bytes(data)) if data else ImageData.from_path(str(value["path"])))
            elif hasattr(value, "save") and hasattr(value, "size"):  # a PIL image
                out.append(ImageData.from_pil(value))
            elif isinstance(value, (bytes, bytearray)):
                out.append(ImageData.from_bytes(bytes(value)))
            elif value is not None:
                raise ConfigError(f"cannot use {type(value).__name__} as an input image")
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"an input image could not be read: {exc}") from None
    return tuple(out)


@dataclass
class _Part:
    """One judge's outcome inside the scorer, before R is known."""

    verdict: JudgeVerdict
    fallbacks: list[RewardFallback] = field(default_factory=list)
    elapsed: float = 0.0


class RewardScorer:
    """Scores answers with an engine, two judges, factors and options.

    ``profile`` (``llmi-compat``, ``llmi`` or a ``llmi.profiles.Profile``) is how the engine
    reads answers; its name picks the default ``options`` (``RewardOptions.preset``; a profile
    of your own gets LLM-I's). Build the judges with the same profile name for matching judge
    styles (``RewardScorer.from_env`` does). ``factors`` default to LLM-I's text recipe.
    ``sample_timeout`` bounds one answer, tools and judges together. ``keep_documents`` keeps
    each scored ``Document`` on its breakdown (for sample logs).
    """

    def __init__(
        self,
        engine: "Engine | None" = None,
        *,
        llm_judge: LLMJudge | None = None,
        mllm_judge: MLLMJudge | None = None,
        factors: RewardFactors | None = None,
        options: RewardOptions | None = None,
        profile: ProfileLike = "llmi-compat",
        sample_timeout: float | None = 600.0,
        keep_documents: bool = True,
    ) -> None:
        from ..engine import Engine

        self.reading = get_profile(profile)
        if sample_timeout is not None and not sample_timeout > 0:
            raise ConfigError(f"sample_timeout must be positive or None, not {sample_timeout!r}")
        self._own_engine = engine is None
        self.engine = Engine.from_env(profile=self.reading) if engine is None else engine
        self.llm_judge = llm_judge
        self.mllm_judge = mllm_judge
        self.factors = factors or RewardFactors()
        self.profile = self.reading.name
        self.options = options or OPTION_PRESETS[_preset(self.profile)]
        self.sample_timeout = sample_timeout
        self.keep_documents = keep_documents

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, profile: ProfileLike = "llmi-compat", **kwargs: Any) -> "RewardScorer":
        """Tools and judges from the environment (the engine's variables, ``LLM_JUDGE_BASE_URL``,
        ``MLLM_JUDGE_BASE_URL`` ...); ``judge_limits`` applies to both judges. Without ``engine``,
        the tools run as the profile says (``Engine.from_env``)."""
        from ..engine import Engine

        llm, mllm = judges_from_env(env, profile=_preset(get_profile(profile).name), limits=kwargs.pop("judge_limits", None))
        engine = kwargs.pop("engine", None)
        scorer = cls(engine or Engine.from_env(env, profile=profile), llm_judge=llm, mllm_judge=mllm, profile=profile, **kwargs)
        scorer._own_engine = engine is None
        return scorer

    def extra_info(self, info: Mapping[str, Any]) -> ExtraInfo:
        """A row's ``extra_info``, read as strictly as the profile says (``llmi-compat``: all of
        LLM-I's fields are required)."""
        return ExtraInfo.from_mapping(info, strict=self.profile == "llmi-compat")

    @property
    def missing_judges(self) -> tuple[str, ...]:
        """The judges the factors need but no endpoint answers for (``LLM_JUDGE``, ``MLLM_JUDGE``)."""
        out = []
        if self.llm_judge is None and self.factors.llm_factor > 0:
            out.append("LLM_JUDGE")
        if self.mllm_judge is None and self.factors.mllm_factor > 0:
            out.append("MLLM_JUDGE")
        return tuple(out)

    def require_judges(self) -> None:
        """Raise ``ConfigError`` if a judge the factors need is missing (training must not run on
        a reward that silently lacks a part)."""
        missing = self.missing_judges
        if missing:
            names = " and ".join(f"{m}_BASE_URL" for m in missing)
            raise ConfigError(
                f"the reward needs {names} (an OpenAI-compatible endpoint, e.g. `vllm serve ...`); "
                "or set llm_factor / mllm_factor to 0 to train without that judge"
            )

    # -- one answer ---------------------------------------------------------------------------
    async def ascore(self, sample: Sample, *, timeout: float | None = None) -> RewardBreakdown:
        """Score one answer. Never raises for a bad answer, a tool or a judge: the breakdown says."""
        started = time.monotonic()
        budget = self.sample_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(budget):
                return await self._score(sample, started)
        except TimeoutError:
            return self._failure(sample, f"scoring took longer than the sample's {budget:g} s", "TimeoutError", started)
        except Exception as exc:  # isolation: one broken sample must never fail a batch
            log.exception("scoring sample %s failed", sample.id)
            return self._failure(sample, f"{type(exc).__name__}: {exc}", type(exc).__name__, started)

    async def ascore_document(self, doc: "Document", sample: Sample, *, answer: str | None = None) -> RewardBreakdown:
        """Score a document whose tools already ran (``answer`` is the text it was made from)."""
        started = time.monotonic()
        try:
            return await self._judge_and_combine(doc, sample, answer, {"tools": 0.0}, started)
        except Exception as exc:
            log.exception("scoring sample %s failed", sample.id)
            return self._failure(sample, f"{type(exc).__name__}: {exc}", type(exc).__name__, started)

    async def _score(self, sample: Sample, started: float) -> RewardBreakdown:
        doc = await self.engine.arun(sample.answer, sample.inputs, profile=self.reading)  # 1. tools
        timings = {"tools": time.monotonic() - started}
        return await self._judge_and_combine(doc, sample, None, timings, started)

    async def _judge_and_combine(
        self, doc: "Document", sample: Sample, answer: str | None, timings: dict[str, float], started: float
    ) -> RewardBreakdown:
        info, opts = sample.extra_info, self.options
        view = view_of(doc, opts, answer=answer)  # 2. view
        n = image_num_score(view.image_count, info.image_num, train=info.split == "train")
        tool_reward = r_tool(view.stats, info.tools)
        judged_at = time.monotonic()
        llm, mllm = await asyncio.gather(self._llm(view, info), self._mllm(view, info, sample.inputs))  # 3. judges
        timings.update(judges=time.monotonic() - judged_at, llm_judge=llm.elapsed, mllm_judge=mllm.elapsed)
        fallbacks = [*self._tool_fallbacks(doc, view), *llm.fallbacks, *mllm.fallbacks]
        failed_share = view.failed_share if opts.failed_tools == "penalise" else 0.0  # 4. combine
        llm_value = llm_part(llm.verdict.scores, self.factors) if llm.verdict.usable else 0.0
        mllm_value = mllm_part(mllm.verdict.scores, self.factors) if mllm.verdict.usable else 0.0
        status, score, error = "ok", None, None
        judge_failed = [v.verdict for v in (llm, mllm) if v.verdict.status == "failed" and not v.verdict.usable
                        and self._needs(v.verdict)]
        missing = [v.verdict.judge for v in (llm, mllm) if v.verdict.status == "not_configured" and self._needs(v.verdict)]
        if judge_failed:
            status, error = "excluded", "; ".join(f"{v.judge} judge: {v.error}" for v in judge_failed)
        elif missing:
            status, error = "incomplete", f"no {' or '.join(m.upper() for m in missing)} judge configured"
        else:
            score = combine(n, llm_value, mllm_value, tool_reward, self.factors, failed_share=failed_share)
        timings["total"] = time.monotonic() - started
        return RewardBreakdown(
            score=score, status=status, img_num_score=n, image_count=view.image_count, image_num=info.image_num,
            split=info.split, llm_score=llm_value, mllm_score=mllm_value, llm=llm.verdict, mllm=mllm.verdict,
            r_tool=tool_reward, failed_share=failed_share, stats=view.stats, fallbacks=tuple(fallbacks),
            timings=timings, profile=self.profile, error=error, error_type="JudgeError" if judge_failed else None,
            id=sample.id, document=doc if self.keep_documents else None,
        )

    def _needs(self, verdict: JudgeVerdict) -> bool:
        return (self.factors.llm_factor if verdict.judge == "llm" else self.factors.mllm_factor) > 0

    # -- the judges, with LLM-I's rules and the options ---------------------------------------
    async def _llm(self, view: RewardView, info: ExtraInfo) -> _Part:
        if self.factors.llm_factor == 0:  # its part weighs nothing: no need to ask
            return _Part(JudgeVerdict("llm", "skipped", skip_reason="unweighted"))
        if self.llm_judge is None:
            return _Part(JudgeVerdict("llm", "not_configured"), [RewardFallback("llm", "not_configured", "set LLM_JUDGE_BASE_URL")])
        started = time.monotonic()
        part = self._settle(await self.llm_judge.judge(info.question, view), LLM_FIELDS)
        if part.verdict.usable and view.text_is_empty and part.verdict.scores["text"] != 1:
            part.verdict = replace(part.verdict, scores={**part.verdict.scores, "text": 1})
            part.fallbacks.append(RewardFallback("llm", "empty_text", "the answer has no prose besides its images: Text = 1"))
        part.elapsed = time.monotonic() - started
        return part

    async def _mllm(self, view: RewardView, info: ExtraInfo, inputs: "Sequence[ImageData]") -> _Part:
        opts = self.options
        if self.factors.mllm_factor == 0:
            return _Part(JudgeVerdict("mllm", "skipped", skip_reason="unweighted"))
        markers = view.text.count(IMAGE_TOKEN)
        if markers == 0 and not (opts.no_images == "score" and view.tags):
            value, why = (3, "neutral: 3/3/3") if opts.no_images == "neutral" else (5, "skipped as perfect: 5/5/5")
            reason = "no_images" if view.tags or opts.no_images != "score" else "no_tags"
            return self._skipped(reason, value, f"no image in the answer; MLLM {why}")
        if markers > opts.max_images:
            return self._skipped("too_many_images", 1, f"{markers} images, more than {opts.max_images}: 1/1/1")
        if markers and not view.images:
            return self._skipped("no_image_data", 5, "only typed <image> markers, no picture to show: 5/5/5")
        if self.mllm_judge is None:
            return _Part(JudgeVerdict("mllm", "not_configured"), [RewardFallback("mllm", "not_configured", "set MLLM_JUDGE_BASE_URL")])
        started = time.monotonic()
        part = self._settle(await self.mllm_judge.judge(info.question, view, inputs), MLLM_FIELDS)
        part.elapsed = time.monotonic() - started
        return part

    def _skipped(self, reason: str, value: int, detail: str) -> _Part:
        verdict = JudgeVerdict("mllm", "skipped", scores=dict.fromkeys(MLLM_FIELDS, value), skip_reason=reason)
        return _Part(verdict, [RewardFallback("mllm", reason, detail)])

    def _settle(self, verdict: JudgeVerdict, fields: tuple[str, ...]) -> _Part:
        """Record what the reply lacked or overshot, and apply ``on_error`` to a failed judge."""
        part = _Part(verdict)
        stage = verdict.judge
        for key, value in verdict.parsed.items():
            if value is None and verdict.usable:
                part.fallbacks.append(RewardFallback(stage, "missing_score", f"the reply gave no {key}: counted as 1"))
        for key in verdict.clamped:
            part.fallbacks.append(RewardFallback(stage, "clamped", f"{key} was outside 1-5 and was clamped"))
        if verdict.status == "failed":
            if self.options.on_error == "minimum":
                part.verdict = replace(verdict, scores=dict.fromkeys(fields, 1))
                part.fallbacks.append(RewardFallback(stage, "judge_error", f"{verdict.error}; scored the minimum"))
            else:
                part.fallbacks.append(RewardFallback(stage, "judge_error", f"{verdict.error}; sample excluded"))
        return part

    def _tool_fallbacks(self, doc: "Document", view: RewardView) -> list[RewardFallback]:
        out = [
            RewardFallback("tools", "tool_fallback", f"tag {s.index}: {s.fallback.requested} answered by {s.fallback.used} ({s.fallback.reason})")
            for s in doc.image_segments if s.fallback is not None
        ]
        if self.options.lenient_tags == "invalid":
            from .view import read_leniently

            out += [RewardFallback("tools", "lenient_tag", f"tag {s.index} was readable only leniently: counted as failed")
                    for s in doc.image_segments if s.ok and read_leniently(s)]
        return out

    def _failure(self, sample: Sample, error: str, error_type: str, started: float) -> RewardBreakdown:
        return RewardBreakdown.failure(
            error, error_type, excluded=self.options.on_error == "exclude", id=sample.id, profile=self.profile,
            image_num=sample.extra_info.image_num, split=sample.extra_info.split,
            timings={"total": time.monotonic() - started},
        )

    # -- many answers -------------------------------------------------------------------------
    async def ascore_batch(
        self,
        samples: Iterable[Sample],
        *,
        batch_timeout: float | None = None,
        on_result: Callable[[int, RewardBreakdown], Awaitable[None] | None] | None = None,
    ) -> list[RewardBreakdown]:
        """Score every sample concurrently; results in input order. ``on_result(i, breakdown)``
        is called as each finishes (for streaming output). Samples still running when
        ``batch_timeout`` passes are cancelled and recorded as failed (or excluded)."""
        samples = list(samples)
        results: list[RewardBreakdown | None] = [None] * len(samples)
        started = time.monotonic()

        async def one(i: int, sample: Sample) -> None:
            results[i] = await self.ascore(sample)
            if on_result is not None:
                maybe = on_result(i, results[i])  # type: ignore[arg-type]
                if asyncio.iscoroutine(maybe):
                    await maybe

        tasks = [asyncio.ensure_future(one(i, s)) for i, s in enumerate(samples)]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=batch_timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for i, sample in enumerate(samples):
            if results[i] is None:
                results[i] = self._failure(sample, f"the batch's {batch_timeout:g} s deadline passed first", "TimeoutError", started)
                if on_result is not None:
                    maybe = on_result(i, results[i])  # type: ignore[arg-type]
                    if asyncio.iscoroutine(maybe):
                        await maybe
        return results  # type: ignore[return-value]

    # -- sync wrappers and lifecycle ------------------------------------------------------------
    # The sync wrappers run on the engine's own loop thread, so that tools, judges and their
    # connections live on one loop across calls.
    def score(self, sample: Sample, **kwargs: Any) -> RewardBreakdown:
        """Synchronous ``ascore``."""
        return self.engine._loop_thread().call(self.ascore(sample, **kwargs))

    def score_batch(self, samples: Sequence[Sample], **kwargs: Any) -> list[RewardBreakdown]:
        """Synchronous ``ascore_batch``."""
        return self.engine._loop_thread().call(self.ascore_batch(samples, **kwargs))

    async def aclose(self) -> None:
        """Close the judges' connections on this loop, and the engine if the scorer made it."""
        await self._close_judges()
        if self._own_engine:
            await self.engine.aclose()

    def close(self) -> None:
        """Synchronous ``aclose`` (for a scorer used through ``score``/``score_batch``)."""
        self.engine._loop_thread().call(self._close_judges())
        if self._own_engine:
            self.engine.close()

    async def _close_judges(self) -> None:
        for judge in (self.llm_judge, self.mllm_judge):
            if judge is not None:
                await judge.client.aclose()
