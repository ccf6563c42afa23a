"""In-domain evaluation: the training reward on a held-out split, in evaluation mode.

Rows are LLM-I's (verl's parquet layout, as its training data uses it): a ``prompt`` (a user string, or
chat messages whose user text may hold ``<image>`` placeholders), optional ``images`` (dicts
with ``bytes`` or ``path``) and ``extra_info`` with ``image_num``, ``tools``, ``question`` and
``split``. A parquet file, or JSON lines of the same rows.

Each answer is scored by the reward (``llmi.rewards.RewardScorer``, LLM-I's formula and judges,
the ``llmi-compat`` profile by default) with the item's split set to evaluation, so the
image-count score is 1 only at exactly ``image_num`` images, as LLM-I's validation does. The
report breaks the reward down per ``image_num`` and per required tool.
"""

from __future__ import annotations

import base64
import binascii
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError, MissingDependency
from ..image import ImageData
from .runner import Item
from .runs import file_sha256, read_json_list

if TYPE_CHECKING:  # pragma: no cover
    from ..rewards.scorer import RewardScorer
    from .job import Context
    from .summary import Summary, Table

__all__ = ["InDomainBenchmark", "InDomainItem", "load_rows", "summarise"]

#: the split a reward is computed under here: anything but "train" means exact image counts
EVAL_SPLIT = "eval"


@dataclass(frozen=True)
class InDomainItem:
    key: str
    prompt: str
    images: tuple[ImageData, ...]
    extra_info: Mapping[str, Any]
    data_source: str = "interleaved"
    problem: str | None = None


def load_rows(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a parquet file or of JSON lines."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pandas as pd

        MissingDependency.require("pyarrow", "train")  # pandas reads parquet through it
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the parquet file {path}: {exc}") from None
        return [_plain(row) for row in frame.to_dict(orient="records")]
    return [r if isinstance(r, dict) else {"prompt": r} for r in read_json_list(path, "in-domain data")]


def _plain(value: Any) -> Any:
    """numpy arrays and scalars from parquet as lists and Python values."""
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _prompt_text(prompt: Any) -> str:
    """The user's text: the prompt string, or the user turns of chat messages (the dataset's
    own system message is replaced by the writer's, as in LLM-I)."""
    if isinstance(prompt, str):
        text = prompt
    elif isinstance(prompt, list):
        parts = []
        for m in prompt:
            if isinstance(m, dict) and m.get("role") == "user":
                content = m.get("content")
                if isinstance(content, list):  # OpenAI-style parts
                    content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
                parts.append(str(content or ""))
        text = "\n\n".join(parts)
    else:
        raise ConfigError("the row's prompt is neither a string nor chat messages")
    return text.replace("<image>", " ").strip()


def _images(raw: Any, base: Path) -> tuple[ImageData, ...]:
    out = []
    for entry in raw or ():
        data = entry.get("bytes") if isinstance(entry, dict) else None
        path = entry.get("path") if isinstance(entry, dict) else entry if isinstance(entry, str) else None
        try:
            if isinstance(data, str):  # JSON lines carry bytes as base64
                data = base64.b64decode(data, validate=True)
            if data:
                out.append(ImageData.from_bytes(bytes(data)))
            elif path:
                p = Path(path)
                out.append(ImageData.from_path(str(p if p.is_absolute() else base / p)))
            else:
                raise ValueError("an image entry without bytes or path")
        except (OSError, ValueError, TypeError, binascii.Error) as exc:
            raise ConfigError(f"an input image of the row cannot be read: {exc}") from None
    return tuple(out)


def _item(row: Mapping[str, Any], position: int, base: Path) -> InDomainItem:
    info = row.get("extra_info") or {}
    key = str(info.get("index", position)) if isinstance(info, dict) else str(position)
    try:
        if not isinstance(info, dict):
            raise ConfigError("the row has no extra_info object")
        prompt = _prompt_text(row.get("prompt"))
        if not prompt:
            raise ConfigError("the row's prompt is empty")
        images = _images(row.get("images"), base)
        from ..rewards.scorer import ExtraInfo

        ExtraInfo.from_mapping(info)  # checked now: a bad row fails alone, with the reason
    except ConfigError as exc:
        return InDomainItem(key, "", (), {}, problem=str(exc))
    return InDomainItem(key, prompt, images, dict(info), str(row.get("data_source") or "interleaved"))


class InDomainBenchmark:
    """A held-out split scored with the training reward (``llmi eval indomain``).

    ``split`` keeps only rows whose ``extra_info.split`` is that value; ``scorer`` is the
    reward (tools run by its engine, judges from its configuration).
    """

    kind = "indomain"

    def __init__(self, path: str | Path, scorer: "RewardScorer", *, split: str | None = None) -> None:
        self.path = Path(path)
        self.scorer = scorer
        self.split = split
        rows = load_rows(self.path)
        items = [_item(row, i, self.path.parent) for i, row in enumerate(rows)]
        if split is not None:
            items = [it for it in items if it.problem or it.extra_info.get("split") == split]
        keys = [it.key for it in items]
        if len(set(keys)) != len(keys):
            items = [InDomainItem(str(i), it.prompt, it.images, it.extra_info, it.data_source, it.problem)
                     for i, it in enumerate(items)]  # extra_info.index is not unique: number the rows
        if not items:
            raise ConfigError(f"{self.path} has no rows" + (f" with extra_info.split == {split!r}" if split else ""))
        self.rows = items

    def items(self) -> list[Item]:
        return [Item(it.key, i, it) for i, it in enumerate(self.rows)]

    def describe(self) -> dict[str, Any]:
        s = self.scorer
        judges = {name: (j.client.name if j is not None and hasattr(j, "client") else None)
                  for name, j in (("llm", s.llm_judge), ("mllm", s.mllm_judge))}
        return {"path": str(self.path), "sha256": file_sha256(self.path), "items": len(self.rows), "split": self.split,
                "reward": {"profile": s.profile, "factors": vars(s.factors), "options": vars(s.options), "judges": judges}}

    def prompt_hashes(self) -> dict[str, str]:
        from ..prompts import judge_prompt
        from .runs import text_sha256

        return {f"judge_{name}": text_sha256(judge_prompt(name)) for name in ("llm", "mllm")}

    async def evaluate(self, item: Item, ctx: "Context") -> dict[str, Any]:
        from ..rewards.scorer import ExtraInfo, Sample

        row: InDomainItem = item.data
        if row.problem:
            raise ConfigError(row.problem)
        if ctx.answers is None:
            raise ConfigError("an in-domain run needs answers (a writer or --answers)")
        text, write_seconds = await ctx.answers.text(item, row.prompt, row.images, ctx.seed)  # 1. the answer
        info = ExtraInfo.from_mapping({**row.extra_info, "split": EVAL_SPLIT})
        started = time.monotonic()
        breakdown = await self.scorer.ascore(Sample(text, info, row.images, id=item.key, data_source=row.data_source))
        scored = breakdown.to_dict()  # 2. tools and judges: the reward
        record: dict[str, Any] = {
            "prompt": row.prompt,
            "image_num": info.image_num,
            "required_tools": list(info.tools),
            "split": row.extra_info.get("split"),
            "reward": scored,
            "score": breakdown.score,
            "criteria": _judge_rows(scored),
        }
        if breakdown.document is not None:
            from .answers import Answered
            from .job import document_facts

            record.update(document_facts(ctx, item, Answered(breakdown.document, write_seconds,
                                                             float(breakdown.timings.get("tools", 0.0)))))
        record.setdefault("timing", {})["judge"] = round(float(breakdown.timings.get("judges", 0.0)), 4)
        record["timing"]["reward"] = round(time.monotonic() - started, 4)
        return record


def _judge_rows(scored: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The reward's judges as report rows (a 1-5 value per judged field)."""
    rows = []
    for judge in ("llm", "mllm"):
        verdict = scored.get(judge) or {}
        status = verdict.get("status")
        for name, value in (verdict.get("scores") or {}).items():
            rows.append({"name": f"{judge}.{name}", "text": f"{judge.upper()} judge ({status})", "score": value,
                         "max": 5, "justification": ""})
        if status == "failed":
            rows.append({"name": judge, "text": f"{judge.upper()} judge", "score": None, "max": 5, "justification": "",
                         "error": verdict.get("error") or "the judge failed", "error_type": verdict.get("error_type") or "JudgeError"})
    return rows


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarise(records: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> "Summary":
    from .summary import Summary, failures_table, fmt, ok_records, timing_table, tools_table

    done = ok_records(records)
    scored = [r for r in done if isinstance(r.get("score"), (int, float))]
    rewards = [r["reward"] for r in done if r.get("reward")]
    statuses = defaultdict(int)
    for rw in rewards:
        statuses[rw.get("status")] += 1

    def part(name: str) -> str:
        return fmt(_mean([float(r["reward"][name]) for r in scored]), 4)

    headline = (
        ("mean reward (evaluation mode)", fmt(_mean([float(r["score"]) for r in scored]), 4)),
        ("items scored", f"{len(scored)} of {len(records)}"),
        ("image-count score", part("img_num_score")),
        ("LLM judge part", part("llm_score")),
        ("MLLM judge part", part("mllm_score")),
        ("tool reward r_tool (logged, not added)", part("r_tool")),
        ("reward failed / excluded / incomplete", f"{statuses['failed']} / {statuses['excluded']} / {statuses['incomplete']}"),
        ("failed items (no answer)", str(len(records) - len(done))),
    )
    tables = (_per_image_num(scored), _per_tool(scored), tools_table(done), failures_table(records), timing_table(done))
    return Summary("indomain", headline, tables, scores=tuple(float(r["score"]) for r in scored), scale=(0.0, 1.0),
                   notes=("R = img_num_factor·n + mllm_factor·mllm·n + llm_factor·llm, with n the exact-count "
                          "image score of evaluation mode; rows the reward failed (R = 0 in LLM-I) are counted "
                          "in the mean, excluded and incomplete ones are not.",))


def _per_image_num(records: Sequence[Mapping[str, Any]]) -> "Table":
    from .summary import Table, fmt

    groups: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        groups[int(r.get("image_num", 0))].append(r)
    label = {-1: "-1 (no image)", 0: "0 (any number)", 99: "99 (at least one)"}
    rows = tuple(
        (label.get(n, str(n)), len(g), fmt(_mean([float(r["score"]) for r in g]), 4),
         fmt(_mean([float(r["reward"]["img_num_score"]) for r in g]), 3),
         fmt(_mean([float(r["reward"]["image_count"]) for r in g]), 2))
        for n, g in sorted(groups.items())
    )
    return Table("Per image_num", ("image_num", "items", "mean reward", "image-count score", "mean images made"), rows)


def _per_tool(records: Sequence[Mapping[str, Any]]) -> "Table":
    from .summary import Table, fmt

    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        for tool in r.get("required_tools") or ("(none)",):
            groups[tool].append(r)
    rows = []
    for tool, g in sorted(groups.items()):
        used = [r for r in g if (r.get("tools") or {}).get(tool, {}).get("total")]
        made = [r for r in used if r["tools"][tool].get("success")]
        rows.append((tool, len(g), fmt(_mean([float(r["score"]) for r in g]), 4),
                     fmt(_mean([float(r["reward"]["r_tool"]) for r in g]), 3),
                     f"{len(used)} / {len(made)}" if tool != "(none)" else "—"))
    return Table("Per required tool", ("tool", "items requiring it", "mean reward", "mean r_tool",
                                       "items that called it / got an image"), tuple(rows))
