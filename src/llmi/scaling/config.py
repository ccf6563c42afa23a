"""What a test-time scaling run does: how many candidates, and which stages run how.

>>> ScaleConfig(n=4).stages()
('sample', 'validate', 'select', 'enhance', 'polish')
>>> ScaleConfig(n=1, select="scores").stages()          # one candidate: nothing to select
('sample', 'validate', 'enhance', 'polish')
>>> ScaleConfig(n=0)
Traceback (most recent call last):
  ...
llmi.errors.ConfigError: --scale needs at least 1 candidate, not 0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..errors import ConfigError

__all__ = ["SELECT_METHODS", "ScaleConfig"]

#: how the best candidate is chosen: the reward's judges per candidate, a pairwise knockout, or
#: one comparison of all candidates at once
SELECT_METHODS = ("scores", "tournament", "listwise")

_MAX_CANDIDATES = 64


@dataclass(frozen=True)
class ScaleConfig:
    """The settings of one scaling run (every stage can be switched off).

    ``n`` candidates are written with seeds ``seed, seed+1, ...`` (so candidate 0 is the answer
    a plain ``llmi generate --seed S`` writes). ``image_num`` is the number of images the user
    asked for, in LLM-I's convention (``None`` or 0: any number; -1: none; 99: at least one;
    N: exactly N); candidates that satisfy it are preferred. ``select`` is one of
    ``SELECT_METHODS`` (or ``None`` to take the first valid candidate). ``both_orders``: a
    pairwise match is asked both ways round and a judge that contradicts itself is overruled
    by the rules. ``max_repairs`` bounds the writer's attempts at one failed tag;
    ``polish_guard`` keeps the polished prose only when the judges score it higher.
    ``judge_samples`` is how many times (with seeds 0, 1, ...) each document is judged for the
    selection and the guard; its score is the mean, so a sampling judge's lucky draw does not
    decide alone. ``expected_scores``: each judgement scores a field by its expected value under
    the judge's token probabilities (where the server returns them; G-Eval's reading), which
    separates close candidates far better than one sampled integer; otherwise by the value
    written.
    """

    n: int = 4
    validate: bool = True
    select: Literal["scores", "tournament", "listwise"] | None = "scores"
    enhance: bool = True
    polish: bool = True
    image_num: int | None = None
    max_repairs: int = 2
    both_orders: bool = True
    polish_guard: bool = True
    specific_words: int = 6
    judge_samples: int = 2
    expected_scores: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ConfigError(f"--scale needs at least 1 candidate, not {self.n}")
        if self.n > _MAX_CANDIDATES:
            raise ConfigError(f"--scale {self.n} is more than {_MAX_CANDIDATES} candidates; use fewer")
        if self.select is not None and self.select not in SELECT_METHODS:
            raise ConfigError(f"unknown selection {self.select!r}; choose {', '.join(SELECT_METHODS)}")
        if self.image_num is not None:
            from ..rewards.rules import check_image_num

            check_image_num(self.image_num)
        if not 0 <= self.max_repairs <= 10:
            raise ConfigError(f"max_repairs must be between 0 and 10, not {self.max_repairs}")
        if not 1 <= self.judge_samples <= 8:
            raise ConfigError(f"judge_samples must be between 1 and 8, not {self.judge_samples}")
        if self.specific_words < 1:
            raise ConfigError(f"specific_words must be at least 1, not {self.specific_words}")

    def stages(self) -> tuple[str, ...]:
        """The stages this configuration runs, in order."""
        on = {"sample": True, "validate": self.validate, "select": self.select is not None and self.n > 1,
              "enhance": self.enhance, "polish": self.polish}
        return tuple(name for name, enabled in on.items() if enabled)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
