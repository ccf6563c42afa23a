"""OpenING's pairwise mode: a judge compares two systems' answers and gives one of OpenING's
four verdicts (``A is better``, ``B is better``, ``Tie(A better)``, ``Tie(B better)``).

Answers come from a folder holding one ``<MODEL>_output`` folder per system (OpenING's
``gen_outputs``). The pairs are the arena's (``arena/data_instance_modelAB.json``) unless
``--a``/``--b`` name two systems, which are then compared on every item both answered. Pairs
whose answers are missing are left out and counted.

The run writes ``verdicts.json`` in the arena files' shape, the systems' win rates the four ways
OpenING ranks them (ties force-divided, ties left out, a tie as 0 and as 0.5 of a win) and, when
the pairs have human verdicts, the judge's agreement with them beside IntJudge's and GPT-4o's.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError, LlmiError
from .agreement import ARENA_FILES, PairVerdict, agreement, arena_dir, load_verdicts, normalise_verdict, reference_lines
from .judging import content, prompt_text, reply_object
from .opening import JUDGE_IMAGE_SIZE, OpeningItem, data_file, judge_pieces, load_opening, model_folder_name, read_output
from .runner import Item
from .runs import RunDir, atomic_write, file_sha256, text_sha256

if TYPE_CHECKING:  # pragma: no cover
    from .job import Context
    from .summary import Summary, Table

__all__ = ["Pair", "PairwiseBenchmark", "arena_pairs", "judge_label", "parse_verdict", "summarise", "verdicts_of", "win_rates",
           "write_files"]

_SPOKEN = {"A": "A is better", "B": "B is better", "Tie(A)": "Tie(A better)", "Tie(B)": "Tie(B better)"}

PAIR_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "justification": {"type": "string"},
        "verdict": {"type": "string", "enum": list(_SPOKEN.values())},
    },
    "required": ["justification", "verdict"],
    "additionalProperties": False,
}


@dataclass(frozen=True)
class Pair:
    data_id: str
    model_a: str
    model_b: str
    model_a_id: str = ""
    model_b_id: str = ""

    @property
    def key(self) -> str:
        return f"{self.data_id}:{self.model_a}:{self.model_b}"


def arena_pairs(data: str | Path) -> list[Pair]:
    """The arena's pairs (``data_instance_modelAB.json``)."""
    path = arena_dir(data) / "data_instance_modelAB.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return [Pair(str(e["data_id"]), str(e["model_A"]["name"]), str(e["model_B"]["name"]),
                     str(e["model_A"].get("id", "")), str(e["model_B"].get("id", ""))) for e in entries]
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        raise ConfigError(f"cannot read the arena pairs from {path}") from None


def parse_verdict(text: str) -> str | None:
    """The verdict in a judge's reply: the JSON ``verdict``, else OpenING's reading of plain text
    (a leading ``A``/``B``, a leading ``Tie...``); ``None`` if there is none.

    >>> parse_verdict('{"justification": "close", "verdict": "Tie(B better)"}'), parse_verdict("B is better.")
    ('Tie(B)', 'B')
    """
    data = reply_object(text)
    if data is not None and isinstance(data.get("verdict"), str):
        try:
            return normalise_verdict(data["verdict"])
        except ConfigError:
            return None
    head = (text or "").strip()
    for candidate in (head, head.split(".")[0], head[:1]):
        try:
            return normalise_verdict(candidate)
        except ConfigError:
            continue
    if head[:3].lower() == "tie":
        side = next((ch for ch in head[3:] if ch in "AB"), None)
        return f"Tie({side})" if side else "Tie"
    return None


class PairwiseBenchmark:
    """Pairs of systems' answers to OpenING items, judged one pair per item."""

    kind = "pairwise"

    def __init__(self, data: str | Path, outputs: str | Path, *, pairs: Sequence[Pair] | None = None,
                 a: str | None = None, b: str | None = None) -> None:
        self.data = Path(data)
        self.file = data_file(self.data)
        self.outputs = Path(outputs)
        if not self.outputs.is_dir():
            raise ConfigError(f"--outputs {self.outputs} is not a folder of <MODEL>_output folders")
        items, _ = load_opening(self.data, keep_missing=True)
        self.by_uid = {it.uid: it for it in items}
        if a or b:
            if not (a and b):
                raise ConfigError("name both systems to compare: --a NAME --b NAME")
            pairs = [Pair(uid, a, b) for uid in self.by_uid]
        elif pairs is None:
            pairs = arena_pairs(self.data)
        self.asked = len(pairs)
        self.pairs = [p for p in pairs if p.data_id in self.by_uid and self._has(p.model_a, p.data_id)
                      and self._has(p.model_b, p.data_id)]
        if not self.pairs:
            raise ConfigError(f"none of the {self.asked} pairs has both answers under {self.outputs} "
                              "(expected <MODEL>_output/<total_uid>.json for each system)")

    def _has(self, model: str, uid: str) -> bool:
        folder = self.outputs / model_folder_name(model)
        return (folder / f"{uid}.json").is_file() or (folder / f"{uid}.jsonl").is_file()

    def items(self) -> list[Item]:
        return [Item(p.key, i, p) for i, p in enumerate(self.pairs)]

    def describe(self) -> dict[str, Any]:
        return {"path": str(self.file), "sha256": file_sha256(self.file), "outputs": str(self.outputs),
                "pairs": len(self.pairs), "pairs_without_answers": self.asked - len(self.pairs)}

    def prompt_hashes(self) -> dict[str, str]:
        return {"opening_pairwise_system": text_sha256(prompt_text("opening_pairwise_system.txt"))}

    async def evaluate(self, item: Item, ctx: "Context") -> dict[str, Any]:
        pair: Pair = item.data
        if ctx.judge is None:
            raise ConfigError("a pairwise run needs a judge")
        it: OpeningItem = self.by_uid[pair.data_id]
        steps_a = read_output(self.outputs / model_folder_name(pair.model_a), pair.data_id)
        steps_b = read_output(self.outputs / model_folder_name(pair.model_b), pair.data_id)
        pieces = ["<INPUT>: ", *judge_pieces(it, [("<OUTPUT_A>:", steps_a), ("<OUTPUT_B>:", steps_b)]),
                  "\nWhich answer is better? Reply with the JSON object only."]
        record: dict[str, Any] = {"pair": {"data_id": pair.data_id, "model_A": {"id": pair.model_a_id, "name": pair.model_a},
                                           "model_B": {"id": pair.model_b_id, "name": pair.model_b}},
                                  "prompt": it.prompt, "title": f"{pair.model_a} vs {pair.model_b}: {it.prompt[:70]}"}
        started = time.monotonic()
        verdict: dict[str, Any] = {"name": "verdict", "text": "Which answer is better?", "max": None, "score": None,
                                   "justification": ""}
        try:
            answer = await ctx.judge.ask(prompt_text("opening_pairwise_system.txt"),
                                         content(pieces, images=ctx.judge.images, marker="", size=JUDGE_IMAGE_SIZE),
                                         schema=PAIR_SCHEMA, seed=ctx.seed)
        except LlmiError as exc:
            verdict.update(error=str(exc), error_type=type(exc).__name__)
        else:
            why = (answer.data or {}).get("justification")
            verdict.update(score=parse_verdict(json.dumps(answer.data) if answer.data else answer.text),
                           justification=why if isinstance(why, str) else "")
            if verdict["score"] is None:
                verdict.update(error="the judge's reply holds none of the four verdicts", error_type="InvalidReply",
                               reply=answer.text[:2000])
        verdict["seconds"] = round(time.monotonic() - started, 4)
        record.update(verdict=verdict["score"], criteria=[verdict], score=None,
                      timing={"judge": verdict["seconds"]})
        return record


def verdicts_of(records: Sequence[Mapping[str, Any]]) -> list[PairVerdict]:
    """The judged pairs' verdicts."""
    out = []
    for r in records:
        if r.get("status") == "ok" and r.get("verdict"):
            p = r["pair"]
            out.append(PairVerdict(p["data_id"], p["model_A"]["name"], p["model_B"]["name"], r["verdict"],
                                   p["model_A"].get("id", ""), p["model_B"].get("id", "")))
    return out


def summarise(records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> "Summary":
    from .summary import Summary, failures_table, timing_table

    bench = config.get("benchmark") or {}
    data = Path(str(bench.get("path", "."))).parent
    verdicts = verdicts_of(records)
    judge_name = judge_label(config, records, "this judge")
    failed = sum(1 for r in records if r.get("status") == "ok" and not r.get("verdict"))
    headline = [("pairs judged", f"{len(verdicts)} of {len(records)}"),
                ("judge failures (excluded)", str(failed)),
                ("pairs left out (answers missing)", str(bench.get("pairs_without_answers", 0)))]
    tables = [win_rates(verdicts)]
    human_path = _human_file(data)
    if human_path is not None:
        mine = agreement(verdicts, load_verdicts(human_path), name=judge_name)
        if mine.pairs:
            headline.append(("agreement with humans, ties force-divided", _pct(mine.force_divided)))
            tables.append(agreement_table([mine, *reference_lines(data)]))
    tables += [failures_table(records), timing_table(records)]
    return Summary("pairwise", tuple(headline), tuple(tables),
                   notes=("Win rates as OpenING ranks systems: FDT counts Tie(A)/Tie(B) as wins of A/B; "
                          "'without ties' counts decided pairs only; 'ties as 0' and 'ties as 0.5' count every pair.",))


def write_files(run: RunDir, records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> list[Path]:
    """``verdicts.json`` in the arena files' shape."""
    path = run.path / "verdicts.json"
    atomic_write(path, json.dumps([v.to_dict() for v in verdicts_of(records)], ensure_ascii=False, indent=4) + "\n")
    return [path]


def judge_label(config: Mapping[str, Any], records: Sequence[Mapping[str, Any]], default: str) -> str:
    """The judge's name: the model named in the configuration, else the one that answered."""
    named = (config.get("judge") or {}).get("model")
    served = next((r["judge_model"] for r in records if r.get("judge_model")), None)
    return str(named or served or default)


def _human_file(data: Path) -> Path | None:
    try:
        return arena_dir(data) / ARENA_FILES["human"]
    except ConfigError:
        return None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def win_rates(verdicts: Sequence[PairVerdict]) -> "Table":
    """Each system's win rate four ways, as OpenING's ``calculate_model_winrate.py`` ranks them."""
    from .summary import Table

    games: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for v in verdicts:
        tie = v.winner not in ("A", "B")
        for m in (v.model_a, v.model_b):
            games[m]["matches"] += 1
            games[m]["ties" if tie else "decided"] += 1
        forced = v.model_b if v.winner in ("B", "Tie(B)") else v.model_a
        games[forced]["fdt"] += 1
        if not tie:
            games[forced]["wins"] += 1

    def share(n: float, d: float) -> str:
        return "—" if not d else f"{100 * n / d:.2f}%"

    rows = sorted(
        ((m, int(g["matches"]), share(g["fdt"], g["matches"]), share(g["wins"], g["decided"]),
          share(g["wins"], g["matches"]), share(g["wins"] + 0.5 * g["ties"], g["matches"]))
         for m, g in games.items()),
        key=lambda r: -float(r[2].rstrip("%")) if r[2] != "—" else 1.0,
    )
    return Table("Win rates", ("system", "pairs", "FDT", "without ties", "ties as 0", "ties as 0.5"), tuple(rows))


def agreement_table(lines: Sequence[Any]) -> "Table":
    """Agreement with the human verdicts, one row per judge."""
    from .summary import Table

    rows = tuple((a.judge, a.pairs, _pct(a.force_divided), _pct(a.with_tie), _pct(a.without_tie), a.without_tie_pairs)
                 for a in lines)
    return Table("Agreement with human verdicts", ("judge", "pairs", "ties force-divided (FDT)", "ties kept",
                                                   "ties excluded", "pairs without ties"), rows,
                 note="IntJudge and GPT-4o are the published verdicts, computed from the arena files; "
                      "the OpenING paper reports the FDT figures (82.42% and 71.08%).")
