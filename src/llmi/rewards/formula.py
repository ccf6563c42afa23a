"""LLM-I's reward formula, as pure arithmetic.

Each judge's scores (1-5) are averaged with the recipe's weights and mapped to 0-1 as
``(weighted mean − 1) / 4``; the parts combine as

    R = img_num_factor·n + mllm_factor·mllm·n + llm_factor·llm (+ tool_factor·r_tool − failed_tool_factor·failed_share)

>>> f = RewardFactors()
>>> llm = llm_part({"text": 4, "image": 5}, f)      # ((1.4·4 + 0.6·5)/2 − 1)/4
>>> round(llm, 10)
0.825
>>> round(combine(1.0, llm, mllm_part({"quality": 5, "task": 5, "text_image": 5}, f), 0.0, f), 10)
0.9125
"""

from __future__ import annotations

from typing import Mapping

from .config import RewardFactors

__all__ = ["LLM_FIELDS", "MLLM_FIELDS", "combine", "llm_part", "mllm_part", "normalise"]

#: the LLM judge's scores: the prose, and the tags as written
LLM_FIELDS = ("text", "image")
#: the MLLM judge's scores: image quality, task relevance, text-image relevance
MLLM_FIELDS = ("quality", "task", "text_image")


def normalise(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """``(weighted mean of scores − 1) / 4``: 1-5 scores to 0-1 (outside if the scores are).

    >>> normalise({"a": 1, "b": 5}, {"a": 1.0, "b": 3.0})
    0.75
    """
    total = sum(weights[k] for k in scores)
    return (sum(weights[k] * scores[k] for k in scores) / total - 1.0) / 4.0


def llm_part(scores: Mapping[str, float], factors: RewardFactors) -> float:
    """The LLM judge's part, from ``{"text": T, "image": I}``."""
    return normalise(
        {k: scores[k] for k in LLM_FIELDS},
        {"text": factors.llm_text_factor, "image": factors.llm_image_factor},
    )


def mllm_part(scores: Mapping[str, float], factors: RewardFactors) -> float:
    """The MLLM judge's part, from ``{"quality": Q, "task": TI, "text_image": TQ}``."""
    return normalise(
        {k: scores[k] for k in MLLM_FIELDS},
        {"quality": factors.mllm_quality_factor, "task": factors.mllm_ti_factor, "text_image": factors.mllm_tq_factor},
    )


def combine(
    n: float, llm: float, mllm: float, r_tool: float, factors: RewardFactors, *, failed_share: float = 0.0
) -> float:
    """The combined reward. ``failed_share`` (failed tags / tags) is 0 unless failed tool
    calls are penalised; the MLLM part is gated by ``n`` as in LLM-I.

    >>> combine(0.5, 0.0, 1.0, 1.0, RewardFactors(tool_factor=0.1))
    0.35
    """
    return (
        factors.img_num_factor * n
        + factors.mllm_factor * mllm * n
        + factors.llm_factor * llm
        + factors.tool_factor * r_tool
        - factors.failed_tool_factor * failed_share
    )
