"""Reward settings as a training recipe writes them, and the one scorer per process they build.

The verl adapter reads them from ``reward.reward_kwargs`` (or a ``compute_score`` call's
``reward_kwargs``), the TRL adapter and ``llmi train`` from their own configuration; all go
through ``RewardSettings`` (every field optional, unknown ones refused), so one recipe means
the same reward on both trainers:

>>> s = RewardSettings.model_validate({"recipe": "mllmi", "tool_factor": 0.1, "no_images": "score"})
>>> s.factors().llm_text_factor, s.factors().tool_factor, s.options().no_images
(1.5, 0.1, 'score')

``shared_scorer(settings)`` gives the process's scorer for those settings: one engine (one tool
cache) and one pair of judge clients (one set of limits) for every reward call in the process.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING, Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import ConfigError
from .config import OPTION_PRESETS, RewardFactors, RewardOptions
from .limits import JudgeLimits

if TYPE_CHECKING:  # pragma: no cover
    from .scorer import RewardScorer

__all__ = ["RewardSettings", "close_shared", "shared_scorer"]

_FACTORS = tuple(RewardFactors.__dataclass_fields__)
_OPTIONS = tuple(RewardOptions.__dataclass_fields__)


class RewardSettings(BaseModel):
    """Everything that decides a reward, as plain values (see docs/rewards.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: Literal["llmi-compat", "llmi"] = "llmi-compat"
    recipe: Literal["llmi", "mllmi"] = "llmi"
    # factors (LLM-I's names); None keeps the recipe's value
    img_num_factor: float | None = None
    mllm_factor: float | None = None
    llm_factor: float | None = None
    tool_factor: float | None = None
    llm_text_factor: float | None = None
    llm_image_factor: float | None = None
    mllm_quality_factor: float | None = None
    mllm_ti_factor: float | None = None
    mllm_tq_factor: float | None = None
    failed_tool_factor: float | None = None
    # behaviours; None keeps the profile's
    no_images: Literal["perfect", "score", "neutral"] | None = None
    on_error: Literal["minimum", "exclude"] | None = None
    failed_tools: Literal["ignore", "penalise"] | None = None
    typed_image: Literal["count", "ignore"] | None = None
    lenient_tags: Literal["accept", "invalid"] | None = None
    max_images: int | None = None
    # running
    sample_timeout: float = 300.0
    judge_concurrency: int = 32
    judge_rpm: float | None = None
    judge_tpm: float | None = None
    judge_timeout: float = 120.0
    judge_retries: int = 3
    require_judges: bool = True
    document_dir: str | None = None
    document_every: int = 32

    @classmethod
    def parse(cls, values: Mapping[str, Any] | None) -> "RewardSettings":
        """From a config mapping (an OmegaConf node works); ``ConfigError`` names what is wrong."""
        try:
            return cls.model_validate(dict(values or {}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"invalid reward settings: {problems}") from None

    def factors(self) -> RewardFactors:
        return RewardFactors.preset(self.recipe).with_values(
            {k: getattr(self, k) for k in _FACTORS if getattr(self, k) is not None}
        )

    def options(self) -> RewardOptions:
        return OPTION_PRESETS[self.profile].with_values(
            {k: getattr(self, k) for k in _OPTIONS if getattr(self, k) is not None}
        )

    def limits(self) -> JudgeLimits:
        return JudgeLimits(concurrency=self.judge_concurrency, rpm=self.judge_rpm, tpm=self.judge_tpm,
                           timeout=self.judge_timeout, retries=self.judge_retries)

    def build(self, env: Mapping[str, str] | None = None, **kwargs: Any) -> "RewardScorer":
        """A new scorer: tools and judges from ``env`` (default: the process environment)."""
        from .scorer import RewardScorer

        scorer = RewardScorer.from_env(env, profile=self.profile, factors=self.factors(), options=self.options(),
                                       sample_timeout=self.sample_timeout, judge_limits=self.limits(), **kwargs)
        if self.require_judges:
            scorer.require_judges()
        return scorer


_SHARED: dict[str, "RewardScorer"] = {}
_LOCK = threading.Lock()


def shared_scorer(settings: RewardSettings) -> "RewardScorer":
    """This process's scorer for ``settings`` and the current environment (built on first use)."""
    key = json.dumps([settings.model_dump(), sorted(os.environ.items())], sort_keys=True)
    with _LOCK:
        scorer = _SHARED.get(key)
        if scorer is None:
            scorer = _SHARED[key] = settings.build()
        return scorer


def close_shared() -> None:
    """Close and forget every shared scorer (their engines' worker pools included)."""
    with _LOCK:
        scorers = list(_SHARED.values())
        _SHARED.clear()
    for scorer in scorers:
        scorer.close()
