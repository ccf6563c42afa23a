"""LLM-I's reward for verl 0.9: a reward manager for verl's reward loop, and a ``compute_score``.

The manager is the full path (input images, per-sample timeout, documents kept for logs). Load
it so that verl's Ray reward workers import it too::

    reward.reward_manager.source=importlib \\
    reward.reward_manager.module.path=pkg://llmi.rewards.verl \\
    reward.reward_manager.name=LlmiRewardManager \\
    +reward.reward_kwargs.recipe=llmi +reward.reward_kwargs.profile=llmi-compat

``reward.reward_kwargs`` takes any ``RewardSettings`` field (factors with LLM-I's names, the
options, ``sample_timeout``, judge limits, ``document_dir``). The judges and tools come from the
workers' environment (``LLM_JUDGE_BASE_URL``, ``MLLM_JUDGE_BASE_URL``, ``SERP_API_KEY`` ...).

Every sample returns the same ``reward_extra_info`` keys (``METRIC_KEYS``: LLM-I's
``img_num_score`` ... ``stats/edit_success_rate`` and llmi's ``excluded``, ``failed`` ...),
failures included, because verl takes the keys from the first sample of a batch. A sample that
fails, or outlives ``sample_timeout``, scores 0.0 (LLM-I's rule) and says so in ``failed``;
with ``on_error=exclude`` it scores 0.0 with ``excluded`` = 1 (verl has no way to leave one
sample out of a group; TRL does).

The ``compute_score`` entry serves verl's own managers (``reward.custom_reward_function.path=
pkg://llmi.rewards.verl``, ``name=compute_score``) for text-only rows.

This module uses absolute imports only: verl may load it from its file path.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any, Mapping

from llmi.errors import LlmiError, MissingDependency
from llmi.rewards.breakdown import RewardBreakdown
from llmi.rewards.scorer import RewardScorer, Sample, as_images
from llmi.rewards.settings import RewardSettings, shared_scorer

try:
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependency("verl", "train") from exc

__all__ = ["LlmiRewardManager", "compute_score", "sample_inputs"]

log = logging.getLogger(__name__)

# keyword arguments verl's managers add to a compute_score call, which are not reward settings
_VERL_KWARGS = ("reward_router_address", "reward_model_tokenizer")


class LlmiRewardManager(RewardManagerBase):
    """A verl reward-loop manager scoring each response with llmi's ``RewardScorer``.

    ``recent`` holds this process's last scored breakdowns (documents included) for logging.
    """

    def __init__(self, config: Any, tokenizer: Any, compute_score: Any = None, reward_router_address: Any = None,
                 reward_model_tokenizer: Any = None, **kwargs: Any) -> None:
        super().__init__(config, tokenizer, compute_score)
        reward_cfg = config.get("reward") if hasattr(config, "get") else None
        values = (reward_cfg.get("reward_kwargs") if reward_cfg is not None else None) or {}
        self.settings = RewardSettings.parse(values)
        self.scorer: RewardScorer = shared_scorer(self.settings)
        self.recent: deque[RewardBreakdown] = deque(maxlen=256)
        self._log = DocumentLog(self.settings.document_dir, self.settings.document_every)

    async def run_single(self, data: Any) -> dict[str, Any]:
        item = data[-1]  # for multi-turn outputs the last sequence is the answer, as in verl's managers
        answer = await self.loop.run_in_executor(None, lambda: _decode(self.tokenizer, item))
        non_tensor = item.non_tensor_batch
        uid = non_tensor.get("uid")
        try:
            sample = Sample(
                answer, self.scorer.extra_info(_plain(non_tensor.get("extra_info")) or {}),
                sample_inputs(non_tensor), id=None if uid is None else str(uid),
                data_source=str(non_tensor.get("data_source", "interleaved")),
            )
        except LlmiError as exc:
            breakdown = RewardBreakdown.failure(str(exc), type(exc).__name__,
                                                excluded=self.scorer.options.on_error == "exclude",
                                                profile=self.scorer.profile, id=None if uid is None else str(uid))
        else:
            breakdown = await self.scorer.ascore(sample)
        self.recent.append(breakdown)
        self._log.maybe_save(breakdown)
        if breakdown.status != "ok":
            log.warning("llmi reward: sample %s %s: %s", uid, breakdown.status, breakdown.error)
        return {"reward_score": _reward(breakdown), "reward_extra_info": breakdown.metrics()}


async def compute_score(data_source: str, solution_str: str, ground_truth: Any = None,
                        extra_info: Mapping[str, Any] | None = None, **kwargs: Any) -> dict[str, float]:
    """verl's ``compute_score`` signature: ``{"score": R, ...every logged field}`` for one
    text-only response (``kwargs`` are ``RewardSettings`` fields from
    ``reward.custom_reward_function.reward_kwargs``)."""
    settings = RewardSettings.parse({k: v for k, v in kwargs.items() if k not in _VERL_KWARGS})
    scorer = shared_scorer(settings)
    try:
        sample = Sample(solution_str, scorer.extra_info(_plain(extra_info) or {}), data_source=str(data_source))
    except LlmiError as exc:
        breakdown = RewardBreakdown.failure(str(exc), type(exc).__name__, excluded=scorer.options.on_error == "exclude")
    else:
        breakdown = await scorer.ascore(sample)
    return {**breakdown.metrics(), "score": _reward(breakdown)}


def sample_inputs(non_tensor: Mapping[str, Any]) -> tuple:
    """A row's input images: verl's ``multi_modal_data["image"]`` (PIL images) or the dataset's
    ``images`` column (dicts with ``bytes`` or ``path``)."""
    mm = non_tensor.get("multi_modal_data")
    images = (mm.get("image") or mm.get("images")) if isinstance(mm, Mapping) else None
    return as_images(images if images is not None else non_tensor.get("images"))


class DocumentLog:
    """Saves one in every ``every`` scored documents (HTML + JSON, and ``reward.json``) under
    ``folder``, for looking at what training rewarded."""

    def __init__(self, folder: str | None, every: int) -> None:
        self.folder = Path(folder) if folder else None
        self.every = max(1, every)
        self._count = itertools.count()
        self._lock = threading.Lock()

    def maybe_save(self, breakdown: RewardBreakdown) -> Path | None:
        if self.folder is None or breakdown.document is None:
            return None
        with self._lock:
            n = next(self._count)
        if n % self.every:
            return None
        target = self.folder / f"{os.getpid()}-{n:07d}"
        try:
            breakdown.document.save(target, ("html", "json"))
            (target / "reward.json").write_text(json.dumps(breakdown.to_dict(), indent=2, default=str), encoding="utf-8")
        except (OSError, LlmiError) as exc:  # logging must never stop training
            log.warning("llmi reward: could not save a document to %s: %s", target, exc)
            return None
        return target


def _reward(breakdown: RewardBreakdown) -> float:
    return float(breakdown.score) if breakdown.score is not None else 0.0


def _decode(tokenizer: Any, item: Any) -> str:
    """The response text of one ``DataProtoItem``, as LLM-I decodes it (special tokens skipped)."""
    responses = item.batch["responses"]
    length = int(item.batch["attention_mask"][-responses.shape[-1]:].sum())
    return tokenizer.decode(responses[:length], skip_special_tokens=True)


def _plain(value: Any) -> Any:
    """numpy containers from a parquet row, as plain Python."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    return value
