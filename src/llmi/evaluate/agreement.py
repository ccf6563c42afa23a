"""How often a judge's pairwise verdicts agree with the human ones on OpenING's arena pairs.

A verdict on a pair (model A, model B) is one of OpenING's four: ``A``, ``B``, ``Tie(A)``
(a tie leaning to A) and ``Tie(B)``. The OpenING authors report agreement three ways, and this
module computes the same three over every pair both sides judged:

- **force-divided ties** (FDT): ``Tie(A)`` counts as ``A`` and ``Tie(B)`` as ``B`` (a bare ``Tie``
  as ``A``), then the two verdicts must match. This is the headline figure: IntJudge's
  82.42 % and GPT-4o's 71.08 % (11.34 points lower) in the OpenING paper are FDT agreements,
  and ``reference_lines`` reproduces both from the arena files.
- **ties kept** (``with_tie``): the two ties merge into one ``Tie`` class, and the verdicts
  must match among {A, B, Tie}.
- **ties excluded** (``without_tie``): pairs where either side said a tie are dropped; the
  rest must match.

Pairs are matched by ``(data_id, model_A name, model_B name)`` as OpenING's own script does
(names compared case-insensitively); when a file judges the same pair twice the later verdict
counts, again as there.

>>> human = [pair("1", "x", "y", "A"), pair("2", "x", "y", "Tie(B)"), pair("3", "x", "y", "B")]
>>> judge = [pair("1", "x", "y", "Tie(A)"), pair("2", "x", "y", "B"), pair("3", "x", "y", "A")]
>>> a = agreement(judge, human)
>>> (round(a.force_divided, 4), round(a.with_tie, 4), a.without_tie, a.pairs, a.without_tie_pairs)
(0.6667, 0.0, 0.0, 3, 1)
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..errors import ConfigError

__all__ = [
    "ARENA_FILES",
    "VERDICTS",
    "Agreement",
    "PairVerdict",
    "agreement",
    "load_verdicts",
    "normalise_verdict",
    "pair",
    "reference_lines",
]

#: OpenING's four verdicts, as its result files spell them
VERDICTS = ("A", "B", "Tie(A)", "Tie(B)")

#: the arena files (under ``<data>/arena/``) and who produced them
ARENA_FILES: Mapping[str, str] = {
    "human": "judge_modelAB_results.json",
    "GPT-4o": "gpt-judge_modelAB_results.json",
    "IntJudge": "intjudge_rag-judge_modelAB_results.json",
}


@dataclass(frozen=True)
class PairVerdict:
    """One judged pair: the item, the two systems (by arena id and name) and the winner."""

    data_id: str
    model_a: str
    model_b: str
    winner: str  # one of VERDICTS
    model_a_id: str = ""
    model_b_id: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.data_id, self.model_a.casefold(), self.model_b.casefold())

    def to_dict(self) -> dict[str, Any]:
        """The arena files' shape."""
        return {
            "data_id": self.data_id,
            "model_A": {"id": self.model_a_id, "name": self.model_a},
            "model_B": {"id": self.model_b_id, "name": self.model_b},
            "winner": self.winner,
        }


def pair(data_id: str, model_a: str, model_b: str, winner: str) -> PairVerdict:
    """A ``PairVerdict`` with its winner normalised (``normalise_verdict``)."""
    return PairVerdict(str(data_id), model_a, model_b, normalise_verdict(winner))


_SPELLINGS = {
    "a": "A", "b": "B", "a is better": "A", "b is better": "B",
    "tie(a)": "Tie(A)", "tie(b)": "Tie(B)", "tie(a better)": "Tie(A)", "tie(b better)": "Tie(B)",
    "tie": "Tie",
}  # fmt: skip


def normalise_verdict(text: str) -> str:
    """OpenING's verdict for any of its spellings (``A is better``, ``Tie(B better)``, ``tie(a)``...).

    A bare ``Tie`` is kept as ``Tie``: OpenING's script counts it as ``A`` when forcing ties.

    >>> [normalise_verdict(v) for v in ("A is better", " tie(b better) ", "Tie")]
    ['A', 'Tie(B)', 'Tie']
    >>> normalise_verdict("C")
    Traceback (most recent call last):
    ...
    llmi.errors.ConfigError: unknown pairwise verdict 'C'; expected one of A, B, Tie(A), Tie(B)
    """
    key = " ".join(str(text).split()).casefold().replace("( ", "(").replace(" )", ")")
    try:
        return _SPELLINGS[key]
    except KeyError:
        raise ConfigError(f"unknown pairwise verdict {text!r}; expected one of {', '.join(VERDICTS)}") from None


def _forced(verdict: str) -> str:
    return "B" if verdict in ("B", "Tie(B)") else "A"


def _tie_merged(verdict: str) -> str:
    return "Tie" if verdict.startswith("Tie") else verdict


@dataclass(frozen=True)
class Agreement:
    """Agreement of one judge with the human verdicts (fractions in 0..1; ``None`` when no pair
    qualifies)."""

    judge: str
    pairs: int  # pairs judged by both sides (the FDT and with-tie denominators)
    force_divided: float | None
    with_tie: float | None
    without_tie: float | None
    without_tie_pairs: int  # pairs where neither side said a tie
    missing: int = 0  # human-judged pairs the judge has no verdict for
    #: (human verdict, judge verdict) -> count over the compared pairs
    confusion: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge,
            "pairs": self.pairs,
            "force_divided": self.force_divided,
            "with_tie": self.with_tie,
            "without_tie": self.without_tie,
            "without_tie_pairs": self.without_tie_pairs,
            "missing": self.missing,
            "confusion": [
                {"human": h, "judge": j, "count": n} for (h, j), n in sorted(self.confusion.items())
            ],
        }


def _by_key(verdicts: Iterable[PairVerdict]) -> dict[tuple[str, str, str], str]:
    return {v.key: v.winner for v in verdicts}  # later verdicts on a pair win, as in OpenING


def agreement(judge: Iterable[PairVerdict], human: Iterable[PairVerdict], *, name: str = "judge") -> Agreement:
    """The three agreement figures of ``judge`` against ``human`` (see the module docstring)."""
    theirs = _by_key(judge)
    ours = _by_key(human)
    both = [k for k in ours if k in theirs]
    forced = sum(_forced(ours[k]) == _forced(theirs[k]) for k in both)
    kept = sum(_tie_merged(ours[k]) == _tie_merged(theirs[k]) for k in both)
    decided = [k for k in both if _tie_merged(ours[k]) != "Tie" and _tie_merged(theirs[k]) != "Tie"]
    decided_agree = sum(ours[k] == theirs[k] for k in decided)
    return Agreement(
        judge=name,
        pairs=len(both),
        force_divided=forced / len(both) if both else None,
        with_tie=kept / len(both) if both else None,
        without_tie=decided_agree / len(decided) if decided else None,
        without_tie_pairs=len(decided),
        missing=len(ours) - len(both),
        confusion=dict(Counter((ours[k], theirs[k]) for k in both)),
    )


def load_verdicts(path: str | Path) -> list[PairVerdict]:
    """Verdicts from a JSON list in the arena files' shape
    (``{"data_id", "model_A": {"id", "name"}, "model_B": {...}, "winner"}``), or JSON lines of it.

    A malformed entry is a ``ConfigError`` naming its position.
    """
    from .runs import read_json_list

    data = read_json_list(path, "verdicts")
    return [_verdict(entry, f"{path} entry {i}") for i, entry in enumerate(data)]


def _verdict(entry: Any, where: str) -> PairVerdict:
    try:
        a, b = entry["model_A"], entry["model_B"]
        return PairVerdict(
            data_id=str(entry["data_id"]),
            model_a=str(a["name"]),
            model_b=str(b["name"]),
            winner=normalise_verdict(entry["winner"]),
            model_a_id=str(a.get("id", "")),
            model_b_id=str(b.get("id", "")),
        )
    except (KeyError, TypeError, AttributeError):
        raise ConfigError(
            f"{where} is not a verdict: expected data_id, model_A.name, model_B.name and winner"
        ) from None
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def arena_dir(data: str | Path) -> Path:
    """The ``arena`` folder of an OpenING data folder (or ``data`` itself if it is one)."""
    data = Path(data)
    for candidate in (data / "arena", data):
        if (candidate / ARENA_FILES["human"]).is_file():
            return candidate
    raise ConfigError(
        f"no {ARENA_FILES['human']} under {data} or {data / 'arena'}; pass the OpenING data folder "
        "(the one holding test_data.jsonl and arena/)"
    )


def reference_lines(data: str | Path, judges: Sequence[str] = ("IntJudge", "GPT-4o")) -> list[Agreement]:
    """The published judges' agreement with the human verdicts, computed from the arena files
    (IntJudge: 82.42 % force-divided, GPT-4o: 71.08 %, as the OpenING paper reports)."""
    arena = arena_dir(data)
    human = load_verdicts(arena / ARENA_FILES["human"])
    return [agreement(load_verdicts(arena / ARENA_FILES[j]), human, name=j) for j in judges]
