"""Rewards: rule scores, LLM and MLLM judges, LLM-I's combined reward, a batch scorer, and the
adapters that hand the reward to verl and TRL.

::

    rules.py         image-count score, r_tool, tag validity (plain functions)
    config.py        RewardFactors (LLM-I's recipe weights), RewardOptions (its behaviours and stricter ones)
    formula.py       the combined reward R as arithmetic
    view.py          what the judges see of a Document
    limits.py        concurrency and rate limits for judge endpoints
    replies.py       reply formats: JSON schema, GBNF grammar, parsing
    judge_client.py  one OpenAI-compatible judge call: structured output, limits, retries
    judges.py        the LLM judge and the MLLM judge (LLM-I's prompts, messages and parsing)
    breakdown.py     RewardBreakdown: every component, raw replies, timings, fallbacks
    scorer.py        RewardScorer: tools and judges for one answer or a batch
    verl.py, trl.py  the training adapters

Importing ``llmi.rewards`` is light: each name loads its module on first use.

>>> from llmi.rewards import image_num_score
>>> image_num_score(3, 3)
1.0
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "image_num_score": "rules", "image_count": "rules", "image_count_score": "rules", "r_tool": "rules",
    "tag_validity": "rules", "check_image_num": "rules", "TOOL_WEIGHTS": "rules",
    "RewardFactors": "config", "RewardOptions": "config",
    "combine": "formula", "llm_part": "formula", "mllm_part": "formula",
    "RewardView": "view", "view_of": "view",
    "Gate": "limits", "RateLimiter": "limits", "JudgeLimits": "limits",
    "ReplyFormat": "replies", "ScoreField": "replies", "ParsedReply": "replies",
    "JudgeClient": "judge_client", "JudgeReply": "judge_client", "JudgeSampling": "judge_client",
    "JudgeStyle": "judges", "LLMJudge": "judges", "MLLMJudge": "judges", "LLM_REPLY": "judges",
    "MLLM_REPLY": "judges", "judges_from_env": "judges",
    "RewardBreakdown": "breakdown", "JudgeVerdict": "breakdown", "RewardFallback": "breakdown",
    "METRIC_KEYS": "breakdown", "LLMI_METRIC_KEYS": "breakdown",
    "RewardScorer": "scorer", "Sample": "scorer", "ExtraInfo": "scorer",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from .breakdown import LLMI_METRIC_KEYS, METRIC_KEYS, JudgeVerdict, RewardBreakdown, RewardFallback
    from .config import RewardFactors, RewardOptions
    from .formula import combine, llm_part, mllm_part
    from .judge_client import JudgeClient, JudgeReply, JudgeSampling
    from .judges import LLM_REPLY, MLLM_REPLY, JudgeStyle, LLMJudge, MLLMJudge, judges_from_env
    from .limits import Gate, JudgeLimits, RateLimiter
    from .replies import ParsedReply, ReplyFormat, ScoreField
    from .rules import TOOL_WEIGHTS, check_image_num, image_count, image_count_score, image_num_score, r_tool, tag_validity
    from .scorer import ExtraInfo, RewardScorer, Sample
    from .view import RewardView, view_of


def __getattr__(name: str) -> Any:
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'llmi.rewards' has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
