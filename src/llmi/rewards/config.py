"""How the combined reward is weighted (``RewardFactors``) and how LLM-I's questionable
behaviours are handled (``RewardOptions``).

The defaults are LLM-I's: its text recipe's factors and its behaviours, so that a model trained
for LLM-I sees the reward it was trained on. Every behaviour has a stricter choice:

=================  ==========================  =============================================
option             LLM-I (default)             stricter choices
=================  ==========================  =============================================
``no_images``      ``perfect``: MLLM skipped,  ``score``: the MLLM judge sees the answer
                   scored 5/5/5, even when     with its failure markers; ``neutral``: the
                   every tool failed           MLLM part is 0.5 (scores 3/3/3)
``on_error``       ``minimum``: a judge error  ``exclude``: the sample is marked excluded and
                   scores 1s; a failed sample  gets no reward (TRL skips it; verl logs it)
                   scores 0
``failed_tools``   ``ignore``                  ``penalise``: ``R -= failed_tool_factor ×``
                                               the share of tags that failed
``typed_image``    ``count``: an ``<image>``   ``ignore``: only images a tool made count
                   the model typed counts
``lenient_tags``   ``accept``                  ``invalid``: a tag only llmi's lenient reader
                                               could read counts as a failed tag
=================  ==========================  =============================================

>>> RewardFactors.preset("mllmi").llm_text_factor
1.5
>>> RewardOptions.preset("strict").no_images
'score'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, Mapping

from ..errors import ConfigError

__all__ = ["RewardFactors", "RewardOptions", "FACTOR_PRESETS", "OPTION_PRESETS"]


@dataclass(frozen=True)
class RewardFactors:
    """The weights of ``R = img_num_factor·n + mllm_factor·mllm·n + llm_factor·llm
    + tool_factor·r_tool − failed_tool_factor·failed_share``; names as in LLM-I's recipes.

    ``llm_text_factor``/``llm_image_factor`` weight the LLM judge's two scores, the three
    ``mllm_*_factor`` the MLLM judge's (quality, task relevance, text-image relevance).
    ``tool_factor`` is 0 in LLM-I (it logs ``r_tool`` but never adds it) and
    ``failed_tool_factor`` applies only with ``RewardOptions(failed_tools="penalise")``.
    """

    img_num_factor: float = 0.2
    mllm_factor: float = 0.3
    llm_factor: float = 0.5
    tool_factor: float = 0.0
    llm_text_factor: float = 1.4
    llm_image_factor: float = 0.6
    mllm_quality_factor: float = 1.0
    mllm_ti_factor: float = 1.0
    mllm_tq_factor: float = 1.0
    failed_tool_factor: float = 0.2

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
                raise ConfigError(f"reward factor {f.name} must be a number >= 0, not {value!r}")
        if self.llm_text_factor + self.llm_image_factor == 0:
            raise ConfigError("llm_text_factor and llm_image_factor cannot both be 0")
        if self.mllm_quality_factor + self.mllm_ti_factor + self.mllm_tq_factor == 0:
            raise ConfigError("the three mllm_*_factor weights cannot all be 0")

    @classmethod
    def preset(cls, name: str) -> "RewardFactors":
        """``llmi`` (LLM-I's text recipe, the default) or ``mllmi`` (its multimodal recipe)."""
        try:
            return FACTOR_PRESETS[name]
        except KeyError:
            raise ConfigError(f"unknown reward factor preset {name!r}; choose {', '.join(FACTOR_PRESETS)}") from None

    def with_values(self, values: Mapping[str, Any]) -> "RewardFactors":
        """A copy with some factors changed (unknown names are refused)."""
        return replace(self, **_checked(self, values, "reward factor"))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class RewardOptions:
    """LLM-I's behaviours (the defaults) and llmi's stricter choices; see the module docs.

    ``max_images`` is LLM-I's cap: a document with more ``<image>`` markers than that scores
    the MLLM minimum without asking the judge.
    """

    no_images: Literal["perfect", "score", "neutral"] = "perfect"
    on_error: Literal["minimum", "exclude"] = "minimum"
    failed_tools: Literal["ignore", "penalise"] = "ignore"
    typed_image: Literal["count", "ignore"] = "count"
    lenient_tags: Literal["accept", "invalid"] = "accept"
    max_images: int = 10

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"reward option {name} must be one of {', '.join(allowed)}, not {value!r}")
        if isinstance(self.max_images, bool) or not isinstance(self.max_images, int) or self.max_images < 1:
            raise ConfigError(f"reward option max_images must be a positive integer, not {self.max_images!r}")

    @classmethod
    def preset(cls, name: str) -> "RewardOptions":
        """``llmi-compat`` (LLM-I's behaviours), ``llmi`` (llmi's defaults: failures go to the
        MLLM judge, judge errors exclude the sample, only produced images count) or ``strict``
        (every stricter choice)."""
        try:
            return OPTION_PRESETS[name]
        except KeyError:
            raise ConfigError(f"unknown reward option preset {name!r}; choose {', '.join(OPTION_PRESETS)}") from None

    def with_values(self, values: Mapping[str, Any]) -> "RewardOptions":
        return replace(self, **_checked(self, values, "reward option"))

    @property
    def is_compat(self) -> bool:
        return self == RewardOptions()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_CHOICES: Mapping[str, tuple[str, ...]] = {
    "no_images": ("perfect", "score", "neutral"),
    "on_error": ("minimum", "exclude"),
    "failed_tools": ("ignore", "penalise"),
    "typed_image": ("count", "ignore"),
    "lenient_tags": ("accept", "invalid"),
}

FACTOR_PRESETS: Mapping[str, RewardFactors] = {
    "llmi": RewardFactors(),
    "mllmi": RewardFactors(llm_text_factor=1.5, llm_image_factor=0.5),
}

OPTION_PRESETS: Mapping[str, RewardOptions] = {
    "llmi-compat": RewardOptions(),
    "llmi": RewardOptions(no_images="score", on_error="exclude", typed_image="ignore"),
    "strict": RewardOptions(no_images="score", on_error="exclude", failed_tools="penalise", typed_image="ignore",
                            lenient_tags="invalid"),
}


def _checked(obj: Any, values: Mapping[str, Any], what: str) -> dict[str, Any]:
    known = {f.name for f in fields(obj)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dict(values)
