"""The judges a scaling run selects and guards with, and the reward it scores candidates by.

``Judges`` holds the LLM judge and the MLLM judge of ``llmi.rewards`` (for ``select="scores"``
and the polish guard) and a comparing judge (for ``tournament`` and ``listwise``), which is the
LLM judge's endpoint asked for a JSON choice. They come from LLM-I's variables
(``LLM_JUDGE_BASE_URL``, ``MLLM_JUDGE_BASE_URL``, with ``*_MODEL_NAME`` and ``*_API_KEY``) or
from explicit URLs. A missing judge is not an error: its part of the reward weighs nothing
(``selection_scorers``), and with none at all the rules decide.

The candidates' reward is LLM-I's formula under llmi's options (``RewardOptions.preset("llmi")``)
with failed tags penalised (``failed_tools="penalise"``): a judge that reads only text cannot
see that a picture failed, the penalty can.

>>> Judges.from_env({}).configured
False
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..engine import Engine
    from ..rewards.config import RewardOptions
    from ..evaluate.judging import BenchJudge
    from ..rewards.judges import LLMJudge, MLLMJudge
    from ..rewards.scorer import RewardScorer

__all__ = ["Judges", "selection_scorers"]


@dataclass(frozen=True)
class Judges:
    llm: "LLMJudge | None" = None
    mllm: "MLLMJudge | None" = None
    compare: "BenchJudge | None" = None

    @property
    def configured(self) -> bool:
        return any(j is not None for j in (self.llm, self.mllm, self.compare))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Judges":
        import os

        env = os.environ if env is None else env
        return cls.from_urls(env.get("LLM_JUDGE_BASE_URL") or None, env.get("MLLM_JUDGE_BASE_URL") or None,
                             llm_model=env.get("LLM_JUDGE_MODEL_NAME") or None,
                             mllm_model=env.get("MLLM_JUDGE_MODEL_NAME") or None,
                             llm_key=env.get("LLM_JUDGE_API_KEY") or None, mllm_key=env.get("MLLM_JUDGE_API_KEY") or None)

    @classmethod
    def from_urls(cls, llm_url: str | None, mllm_url: str | None = None, *, llm_model: str | None = None,
                  mllm_model: str | None = None, llm_key: str | None = None, mllm_key: str | None = None,
                  timeout: float = 120.0) -> "Judges":
        """Judges behind OpenAI-compatible endpoints (``None``: that judge is absent)."""
        from ..evaluate.judging import ClientJudge
        from ..rewards.judge_client import JudgeClient
        from ..rewards.judges import LLMJudge, MLLMJudge
        from ..rewards.limits import JudgeLimits

        limits = JudgeLimits(timeout=timeout)
        llm = mllm = compare = None
        if llm_url:
            client = JudgeClient(llm_url, model=llm_model, api_key=llm_key, limits=limits, label="LLM judge",
                                 env_prefix="LLM_JUDGE")
            llm = LLMJudge(client, profile="llmi")
            compare = ClientJudge(client, images=False, temperature=0.0, max_tokens=256)
        if mllm_url:
            client = JudgeClient(mllm_url, model=mllm_model, api_key=mllm_key, limits=limits, label="MLLM judge",
                                 env_prefix="MLLM_JUDGE")
            mllm = MLLMJudge(client, profile="llmi")
        return cls(llm, mllm, compare)

    async def aclose(self) -> None:
        for judge in (self.llm, self.mllm):
            if judge is not None:
                await judge.client.aclose()


def selection_scorers(engine: "Engine", judges: Judges, seeds: Sequence[int] = (0,), *,
                      options: "RewardOptions | None" = None, expected: bool = False) -> "list[RewardScorer]":
    """The reward scorers for candidates, one per judge seed (a candidate's score is their
    mean, so one lucky draw of a sampling judge does not decide); each configured judge's part
    at LLM-I's weight, a missing judge's part at 0; ``options`` default to llmi's with failed
    tags penalised; ``expected``: the judges score by expected values (``JudgeStyle.expected``).
    Empty when neither reward judge is configured."""
    from dataclasses import replace

    from ..rewards.config import RewardFactors, RewardOptions
    from ..rewards.scorer import RewardScorer

    if judges.llm is None and judges.mllm is None:
        return []
    factors = RewardFactors()
    factors = factors.with_values({"llm_factor": factors.llm_factor if judges.llm else 0.0,
                                   "mllm_factor": factors.mllm_factor if judges.mllm else 0.0})
    options = options or RewardOptions.preset("llmi").with_values({"failed_tools": "penalise"})

    def seeded(judge, seed):
        return None if judge is None else type(judge)(judge.client, style=replace(judge.style, seed=seed, expected=expected),
                                                      rubric=judge.rubric)

    return [RewardScorer(engine, llm_judge=seeded(judges.llm, k), mllm_judge=seeded(judges.mllm, k), factors=factors,
                         options=options, profile="llmi", keep_documents=False) for k in seeds]
