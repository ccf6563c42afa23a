"""The typed result of scoring one answer: every component, the judges' raw replies, the time
each stage took and every fallback taken.

``RewardBreakdown.metrics()`` gives LLM-I's logged fields (``img_num_score`` ...
``stats/edit_success_rate``) plus llmi's own, with the same keys for every sample, failed or
excluded ones included (verl takes the keys from the first sample of a batch).

>>> b = RewardBreakdown.failure("tools timed out", "JudgeError")
>>> b.metrics()["score"], b.metrics()["stats/code_success_rate"], b.status
(0.0, 0.0, 'failed')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document

__all__ = ["JudgeVerdict", "RewardFallback", "RewardBreakdown", "METRIC_KEYS", "LLMI_METRIC_KEYS", "stats_metrics"]

#: LLM-I's logged fields, in its order (Task Relevance is ``ti_rel``, Text-Image Relevance ``tq_rel``)
LLMI_METRIC_KEYS: tuple[str, ...] = (
    "img_num_score", "llm_text_score", "llm_image_score", "img_quality_score", "ti_rel_score",
    "tq_rel_score", "llm_score", "mllm_score", "r_tool", "score",
    *(f"stats/{tool}_{what}" for tool in ("diffusion", "search", "code", "edit") for what in ("total", "success", "success_rate")),
)
#: llmi's additions: the image count, the stricter options' effects, what went wrong
EXTRA_METRIC_KEYS: tuple[str, ...] = ("image_count", "failed_share", "excluded", "failed", "judge_errors", "fallbacks")
METRIC_KEYS: tuple[str, ...] = LLMI_METRIC_KEYS + EXTRA_METRIC_KEYS

# judge field -> LLM-I's metric name
_LLM_KEYS = {"text": "llm_text_score", "image": "llm_image_score"}
_MLLM_KEYS = {"quality": "img_quality_score", "task": "ti_rel_score", "text_image": "tq_rel_score"}


@dataclass(frozen=True)
class RewardFallback:
    """A place where the reward did not use what it would normally use, and why.

    ``stage`` is ``llm``, ``mllm``, ``tools`` or ``sample``; ``kind`` a stable keyword
    (``no_images``, ``too_many_images``, ``judge_error``, ``missing_score``, ``clamped``,
    ``empty_text``, ``not_configured``, ``tool_fallback``, ``lenient_tag``, ``sample_error``).
    """

    stage: str
    kind: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "kind": self.kind, "detail": self.detail}


@dataclass(frozen=True)
class JudgeVerdict:
    """One judge's part of the reward.

    ``status``: ``ok`` (the judge answered), ``skipped`` (not asked: ``skip_reason`` says why),
    ``failed`` (asked, no usable answer: ``error``), ``not_configured`` (no endpoint).
    ``scores`` are the 1-5 values the formula used, ``parsed`` what the reply said (``None``
    for a value it did not give), ``reply`` the raw reply text.
    """

    judge: Literal["llm", "mllm"]
    status: Literal["ok", "skipped", "failed", "not_configured"]
    scores: Mapping[str, float] = field(default_factory=dict)
    parsed: Mapping[str, float | None] = field(default_factory=dict)
    clamped: tuple[str, ...] = ()  # fields whose value was outside the range and was clamped
    expected: tuple[str, ...] = ()  # fields scored by their expected value (``JudgeStyle.expected``)
    reply: str | None = None
    error: str | None = None
    error_type: str | None = None
    skip_reason: str | None = None
    model: str | None = None
    structured: str | None = None  # how the reply was constrained: json_schema, json_object, grammar, off
    latency: float = 0.0
    attempts: int = 0

    @property
    def usable(self) -> bool:
        return bool(self.scores)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (None, {}, (), 0, 0.0) or k in ("judge", "status")}
        out["scores"], out["parsed"], out["clamped"] = dict(self.scores), dict(self.parsed), list(self.clamped)
        if self.expected:
            out["expected"] = list(self.expected)
        return out


def stats_metrics(stats: Mapping[str, Mapping[str, float]] | None) -> dict[str, float]:
    """LLM-I's ``stats/{tool}_{total,success,success_rate}`` for all four tools (1.0 rate when unused)."""
    out: dict[str, float] = {}
    for tool in ("diffusion", "search", "code", "edit"):
        row = (stats or {}).get(tool) or {}
        total, success = float(row.get("total", 0)), float(row.get("success", 0))
        rate = row.get("success_rate")
        out[f"stats/{tool}_total"] = total
        out[f"stats/{tool}_success"] = success
        out[f"stats/{tool}_success_rate"] = float(rate) if rate is not None else (round(success / total, 4) if total else 1.0)
    return out


@dataclass(frozen=True)
class RewardBreakdown:
    """Everything about one answer's reward.

    ``score`` is R, or ``None`` when the sample is ``excluded`` (``on_error="exclude"``) or
    ``incomplete`` (a judge it needs is not configured). ``status`` is ``ok``, ``failed``
    (something broke and LLM-I's rule scored it 0), ``excluded`` or ``incomplete``.
    """

    score: float | None
    status: Literal["ok", "failed", "excluded", "incomplete"] = "ok"
    img_num_score: float = 0.0
    image_count: int = 0
    image_num: int | None = None
    split: str | None = None
    llm_score: float = 0.0
    mllm_score: float = 0.0
    llm: JudgeVerdict | None = None
    mllm: JudgeVerdict | None = None
    r_tool: float = 0.0
    failed_share: float = 0.0
    stats: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    fallbacks: tuple[RewardFallback, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    profile: str | None = None
    error: str | None = None
    error_type: str | None = None
    id: str | None = None
    document: "Document | None" = field(default=None, compare=False, repr=False)

    @classmethod
    def failure(cls, error: str, error_type: str, *, excluded: bool = False, **kwargs: Any) -> "RewardBreakdown":
        """A sample that could not be scored: LLM-I's 0 (or excluded, with no score)."""
        fallback = RewardFallback("sample", "sample_error", error)
        return cls(
            score=None if excluded else 0.0, status="excluded" if excluded else "failed", error=error,
            error_type=error_type, fallbacks=(fallback,), **kwargs,
        )

    @property
    def judge_errors(self) -> int:
        return sum(1 for v in (self.llm, self.mllm) if v is not None and v.status == "failed")

    def metrics(self) -> dict[str, float]:
        """The logged fields, always the keys of ``METRIC_KEYS``, all floats.

        As in LLM-I, a failed sample logs 0.0 everywhere, and the MLLM fields are logged as 0
        when the document had no image (after R was computed with the no-image value).
        """
        out = dict.fromkeys(METRIC_KEYS, 0.0)
        out["excluded"] = float(self.status == "excluded")
        out["failed"] = float(self.status == "failed")
        out["fallbacks"] = float(len(self.fallbacks))
        if self.status == "failed" or (self.status == "excluded" and self.llm is None):
            return out
        out["img_num_score"] = float(self.img_num_score)
        out["r_tool"] = float(self.r_tool)
        out["score"] = float(self.score) if self.score is not None else 0.0
        out["image_count"] = float(self.image_count)
        out["failed_share"] = float(self.failed_share)
        out["judge_errors"] = float(self.judge_errors)
        out.update(stats_metrics(self.stats))
        if self.llm is not None and self.llm.usable:
            out["llm_score"] = float(self.llm_score)
            for name, key in _LLM_KEYS.items():
                out[key] = float(self.llm.scores[name])
        if self.mllm is not None and self.mllm.usable and self.mllm.skip_reason not in ("no_images", "no_tags"):
            out["mllm_score"] = float(self.mllm_score)
            for name, key in _MLLM_KEYS.items():
                out[key] = float(self.mllm.scores[name])
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written by ``llmi score`` (one line per sample)."""
        return {
            "id": self.id,
            "score": self.score,
            "status": self.status,
            "profile": self.profile,
            "img_num_score": self.img_num_score,
            "image_count": self.image_count,
            "image_num": self.image_num,
            "split": self.split,
            "llm_score": self.llm_score,
            "mllm_score": self.mllm_score,
            "r_tool": self.r_tool,
            "failed_share": self.failed_share,
            "llm": self.llm.to_dict() if self.llm else None,
            "mllm": self.mllm.to_dict() if self.mllm else None,
            "stats": {k: dict(v) for k, v in self.stats.items()},
            "fallbacks": [f.to_dict() for f in self.fallbacks],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "error": self.error,
            "error_type": self.error_type,
            "metrics": self.metrics(),
        }

