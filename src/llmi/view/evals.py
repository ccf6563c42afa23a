"""Evaluation runs (``llmi eval``) as the viewer shows them: the summary and its plots, an item
table that filters and sorts by score, criterion, tool and failure reason, and two runs
compared item by item.

A run is read from its folder (``config.json``, ``results.jsonl``; ``llmi.evaluate.runs``) once
per version of those files (``RunStore``): the records, the benchmark's own summary and plots,
and one light ``ItemRow`` per item that filtering and sorting work on, so a filter over
thousands of items touches no file and parses nothing.

>>> rows = [ItemRow("a", 0, "ok", 0.5, "", "", {"r1": 1}, {}, (), 1.0, (0, 0), None, "a"),
...         ItemRow("b", 1, "ok", 1.0, "", "", {"r1": 2}, {"code": (1, 0)}, ("image · code · SandboxError",), 2.0, (1, 0), None, "b")]
>>> [r.key for r in filter_rows(rows, ItemQuery(sort="score", desc=True))]
['b', 'a']
>>> [r.key for r in filter_rows(rows, ItemQuery(tool="code:failed"))], [r.key for r in filter_rows(rows, ItemQuery(criterion="r1", cscore="1"))]
(['b'], ['a'])
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import LlmiError
from ..evaluate.runs import CONFIG_FILE, RESULTS_FILE, RunDir, read_records
from ..renderers._common import one_line
from .index import Entry, NotThere, StampCache, Unreadable, resolve_inside

__all__ = [
    "CompareQuery", "Comparison", "ItemQuery", "ItemRow", "PAGE_SIZE", "Pages", "Pair", "RunStore", "RunView",
    "compare_runs", "filter_pairs", "filter_rows", "paginate", "read_eval_entry",
]

PAGE_SIZE = 200


# -- one item, as the table sees it -------------------------------------------------------------


@dataclass(frozen=True)
class ItemRow:
    """What the item table shows and filters on, taken from one record."""

    key: str
    index: int
    status: str  # "ok" | "error"
    score: float | None
    title: str
    prompt: str
    criteria: Mapping[str, float | None]  # name -> score (None: the judge failed on it)
    tools: Mapping[str, tuple[int, int]]  # tool -> (tags, images made)
    failures: tuple[str, ...]  # "stage · where · error class", as in the run's failure table
    seconds: float | None
    images: tuple[int, int]  # (tags, images made)
    verdict: str | None  # a pairwise run's verdict
    search: str  # key, title and prompt, case-folded


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def failure_reasons(record: Mapping[str, Any]) -> tuple[str, ...]:
    """Why an item, an image or a judge call failed, in the run's failure-table terms.

    >>> failure_reasons({"status": "ok", "criteria": [{"name": "r2", "error": "x", "error_type": "InvalidReply"}]})
    ('judge · r2 · InvalidReply',)
    """
    if record.get("status") != "ok":
        return (f"item · {record.get('error_type') or 'error'}",)
    out = []
    for f in _list(record.get("image_failures")):
        if isinstance(f, Mapping):
            out.append(f"image · {f.get('tool') or 'invalid'} · {f.get('error_type') or 'error'}")
    for crit in _list(record.get("criteria")):
        if isinstance(crit, Mapping) and crit.get("error"):
            out.append(f"judge · {crit.get('name')} · {crit.get('error_type') or 'error'}")
    return tuple(dict.fromkeys(out))


def item_row(record: Mapping[str, Any]) -> ItemRow:
    key = str(record.get("key"))
    criteria = {str(c.get("name")): _number(c.get("score"))
                for c in _list(record.get("criteria")) if isinstance(c, Mapping)}
    tools = {}
    for tool, row in _mapping(record.get("tools")).items():
        row = _mapping(row)
        tools[str(tool)] = (int(_number(row.get("total")) or 0), int(_number(row.get("success")) or 0))
    images = _mapping(record.get("images"))
    title = one_line(str(record.get("title") or record.get("prompt") or ""), 160)
    prompt = str(record.get("prompt") or "")
    index = record.get("index")
    verdict = record.get("verdict")
    return ItemRow(
        key=key, index=index if isinstance(index, int) and not isinstance(index, bool) else 0,
        status="ok" if record.get("status") == "ok" else "error", score=_number(record.get("score")),
        title=title, prompt=prompt, criteria=criteria, tools=tools, failures=failure_reasons(record),
        seconds=_number(record.get("seconds")),
        images=(int(_number(images.get("tags")) or 0), int(_number(images.get("made")) or 0)),
        verdict=verdict if isinstance(verdict, str) else None, search=f"{key}\n{title}\n{prompt}".casefold(),
    )


# -- a run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunView:
    """One evaluation run, read: everything its pages need."""

    rel: str
    path: Path
    config: Mapping[str, Any]
    records: Mapping[str, Mapping[str, Any]]  # key -> record
    rows: tuple[ItemRow, ...]  # in benchmark order
    summary: Any  # llmi.evaluate.summary.Summary, or None when it could not be made
    summary_error: str | None
    plots: str  # inline SVG charts (safe HTML)
    tables: str  # the summary's tables (safe HTML)
    criteria: tuple[str, ...]
    tools: tuple[str, ...]
    failures: tuple[tuple[str, int], ...]  # reason, items with it; most common first

    @property
    def kind(self) -> str:
        return str(self.config.get("kind") or "?")

    @property
    def title(self) -> str:
        return run_title(self.config)

    def position(self, key: str) -> int | None:
        for i, row in enumerate(self.rows):
            if row.key == key:
                return i
        return None

    def document_rel(self, record: Mapping[str, Any]) -> str | None:
        """The viewer address of a record's document folder, when it lies inside the run."""
        doc = record.get("doc")
        if not isinstance(doc, str) or not doc:
            return None
        target = resolve_inside(self.path, doc)
        if target is None:
            return None
        folder = PurePosixPath(target.parent.relative_to(self.path.resolve()).as_posix())
        return str(PurePosixPath(self.rel) / folder) if self.rel else str(folder)


def run_title(config: Mapping[str, Any]) -> str:
    bench = _mapping(config.get("benchmark")).get("path") or ""
    name = Path(str(bench)).name if bench else ""
    return f"llmi eval {config.get('kind') or '?'}" + (f": {name}" if name else "")


def _criterion_order(name: str) -> tuple[int, str]:
    return (int(name[1:]), name) if name[:1] == "r" and name[1:].isdigit() else (10**9, name)


def load_run(path: Path, rel: str) -> RunView:
    """Read the run in ``path``; ``Unreadable`` when it is not an llmi evaluation run."""
    import importlib

    from ..evaluate.job import KINDS
    from ..evaluate.report import plots_html, table_html

    try:
        config = RunDir(path).config()
    except LlmiError as exc:
        raise Unreadable(str(exc)) from None
    kind = config.get("kind")
    if kind not in KINDS:
        raise Unreadable(f"{CONFIG_FILE} is not an llmi evaluation run's (kind {kind!r})")
    records = read_records(path / RESULTS_FILE)
    rows = tuple(sorted((item_row(r) for r in records.values()), key=lambda r: (r.index, r.key)))
    summary, error, plots, tables = None, None, "", ""
    try:
        summary = importlib.import_module(KINDS[str(kind)]).summarise(list(records.values()), config)
        plots = plots_html(summary, list(records.values()))
        tables = "".join(table_html(t) for t in summary.tables)
    except Exception as exc:  # a record no summary expects must not hide the run's items
        error = f"{type(exc).__name__}: {exc}"
    criteria = sorted({name for row in rows for name in row.criteria}, key=_criterion_order)
    tools = sorted({tool for row in rows for tool in row.tools})
    failures = Counter(reason for row in rows for reason in row.failures)
    return RunView(rel, path, config, records, rows, summary, error, plots, tables, tuple(criteria), tuple(tools),
                   tuple(failures.most_common()))


class RunStore:
    """Runs under ``root``, each read again only when ``config.json`` or ``results.jsonl`` changes."""

    def __init__(self, root: str | Path, size: int = 16) -> None:
        self.root = Path(root).resolve()
        self._cache: StampCache[RunView] = StampCache(size)

    def get(self, rel: str) -> RunView:
        """The run in folder ``rel``: ``NotThere`` when there is none, ``Unreadable`` when it
        cannot be read."""
        path = resolve_inside(self.root, rel)
        if path is None or not (path / CONFIG_FILE).is_file() or not (path / RESULTS_FILE).is_file():
            raise NotThere(f"there is no evaluation run at {rel or '.'}")
        return self._cache.get(rel, (path / CONFIG_FILE, path / RESULTS_FILE), lambda: load_run(path, rel))


def read_eval_entry(folder: Path, rel: str) -> Entry:
    """The list's entry for the run in ``folder`` (its records are counted, not parsed)."""
    try:
        config = RunDir(folder).config()
    except LlmiError as exc:
        raise Unreadable(str(exc)) from None
    results = folder / RESULTS_FILE
    with open(results, "rb") as fh:
        done = sum(block.count(b"\n") for block in iter(lambda: fh.read(1 << 20), b""))
    bench = _mapping(config.get("benchmark"))
    total = bench.get("limit") or bench.get("items")
    facts = [("items", f"{done} of {total}" if isinstance(total, int) else str(done))]
    for label, part in (("writer", "answers"), ("judge", "judge")):
        value = _mapping(config.get(part))
        name = value.get("name") or value.get("model")
        if isinstance(name, str) and name:
            facts.append((label, one_line(name, 60)))
    if config.get("shard"):
        facts.append(("shard", str(config["shard"])))
    return Entry("eval", rel, run_title(config), str(bench.get("path") or ""), results.stat().st_mtime, tuple(facts))


# -- filtering and sorting ------------------------------------------------------------------------


class ItemQuery(BaseModel):
    """The item table's filters and order, from the page's query string.

    ``tool`` is a tool name (answers that used it) or ``name:failed`` (answers where it failed
    at least once); ``cscore`` a criterion score or ``failed`` (the judge gave none);
    ``sort`` is ``index``, ``key``, ``score``, ``seconds``, ``images`` or ``crit:<name>``.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    q: str = ""
    status: Literal["", "ok", "error"] = ""
    min: float | None = None
    max: float | None = None
    criterion: str = ""
    cscore: str = ""
    tool: str = ""
    failure: str = ""
    sort: str = "index"
    desc: bool = False
    page: int = Field(1, ge=1)

    @field_validator("min", "max", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value  # a form's empty box

    def params(self, **changes: Any) -> dict[str, Any]:
        """The query string's values (defaults left out), with ``changes`` applied."""
        values = {**self.model_dump(), **changes}
        defaults = type(self)().model_dump()
        return {k: v for k, v in values.items() if v != defaults[k]}


def _sort_key(sort: str) -> Callable[[ItemRow], Any]:
    if sort.startswith("crit:"):
        name = sort[5:]
        return lambda r: r.criteria.get(name)
    return {
        "key": lambda r: r.key,
        "score": lambda r: r.score,
        "seconds": lambda r: r.seconds,
        "images": lambda r: r.images[1],
        "verdict": lambda r: r.verdict,
    }.get(sort, lambda r: r.index)


def ordered(rows: Iterable[Any], key: Callable[[Any], Any], desc: bool) -> list[Any]:
    """``rows`` sorted by ``key``; rows whose key is ``None`` come last either way."""
    rows = list(rows)
    known = [r for r in rows if key(r) is not None]
    known.sort(key=key, reverse=desc)
    return known + [r for r in rows if key(r) is None]


def _criterion_test(name: str, wanted: str) -> Callable[[ItemRow], bool]:
    if wanted == "failed":
        return lambda r: name in r.criteria and r.criteria[name] is None
    if wanted:
        try:
            value = float(wanted)
        except ValueError:
            return lambda r: False
        return lambda r: r.criteria.get(name) == value
    return lambda r: name in r.criteria


def filter_rows(rows: Sequence[ItemRow], f: ItemQuery) -> list[ItemRow]:
    """The rows ``f`` selects, in its order."""
    tests: list[Callable[[ItemRow], bool]] = []
    words = f.q.casefold().split()
    if words:
        tests.append(lambda r: all(w in r.search for w in words))
    if f.status:
        tests.append(lambda r: r.status == f.status)
    if f.min is not None:
        tests.append(lambda r: r.score is not None and r.score >= f.min)
    if f.max is not None:
        tests.append(lambda r: r.score is not None and r.score <= f.max)
    if f.criterion:
        tests.append(_criterion_test(f.criterion, f.cscore))
    if f.tool:
        tool, _, failed = f.tool.partition(":")
        if failed:
            tests.append(lambda r: tool in r.tools and r.tools[tool][1] < r.tools[tool][0])
        else:
            tests.append(lambda r: tool in r.tools)
    if f.failure:
        tests.append(lambda r: f.failure in r.failures)
    selected = [r for r in rows if all(t(r) for t in tests)]
    return ordered(selected, _sort_key(f.sort), f.desc)


@dataclass(frozen=True)
class Pages:
    number: int
    count: int
    first: int  # index of the page's first row among the selected rows


def paginate(rows: Sequence[Any], page: int, size: int = PAGE_SIZE) -> tuple[Sequence[Any], Pages]:
    count = max(1, math.ceil(len(rows) / size))
    number = min(max(1, page), count)
    start = (number - 1) * size
    return rows[start:start + size], Pages(number, count, start)


def mean(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


# -- two runs, item by item -------------------------------------------------------------------------


@dataclass(frozen=True)
class Pair:
    """One item in two runs (``a`` or ``b`` is ``None`` when only one run has it)."""

    key: str
    index: int
    title: str
    a: ItemRow | None
    b: ItemRow | None

    @property
    def delta(self) -> float | None:
        if self.a is None or self.b is None or self.a.score is None or self.b.score is None:
            return None
        return self.b.score - self.a.score


@dataclass(frozen=True)
class Comparison:
    a: RunView
    b: RunView
    pairs: tuple[Pair, ...]
    warnings: tuple[str, ...]
    headline: tuple[tuple[str, str], ...]
    criteria: tuple[tuple[str, float | None, float | None], ...]  # name, mean in A, mean in B (common items)


def compare_runs(a: RunView, b: RunView) -> Comparison:
    """Match the items of ``a`` and ``b`` by key and sum up the differences."""
    from .pages import number

    rows_a = {r.key: r for r in a.rows}
    rows_b = {r.key: r for r in b.rows}
    keys = sorted(set(rows_a) | set(rows_b), key=lambda k: ((rows_a.get(k) or rows_b[k]).index, k))
    pairs = tuple(Pair(k, (rows_a.get(k) or rows_b[k]).index, (rows_a.get(k) or rows_b[k]).title,
                       rows_a.get(k), rows_b.get(k)) for k in keys)
    warnings = []
    if a.kind != b.kind:
        warnings.append(f"The runs are of different kinds ({a.kind} and {b.kind}): items match by key only.")
    sha_a = _mapping(a.config.get("benchmark")).get("sha256")
    sha_b = _mapping(b.config.get("benchmark")).get("sha256")
    if sha_a and sha_b and sha_a != sha_b:
        warnings.append("The runs used different benchmark files (their sha256 differ): the same key may be another item.")
    if _mapping(a.config.get("judge")).get("model") != _mapping(b.config.get("judge")).get("model"):
        warnings.append("The runs were judged by different judges: score differences mix the answers and the judges.")
    both = [p for p in pairs if p.delta is not None]
    deltas = [p.delta for p in both if p.delta is not None]
    headline = (
        ("items in both runs", f"{sum(1 for p in pairs if p.a and p.b)} ({len(both)} scored in both)"),
        ("only in A / only in B", f"{sum(1 for p in pairs if p.b is None)} / {sum(1 for p in pairs if p.a is None)}"),
        ("mean score A → B (items scored in both)",
         f"{number(mean(p.a.score for p in both if p.a))} → {number(mean(p.b.score for p in both if p.b))}"),
        ("B better / equal / A better", f"{sum(d > 0 for d in deltas)} / {sum(d == 0 for d in deltas)} / {sum(d < 0 for d in deltas)}"),
    )
    common = [p for p in pairs if p.a is not None and p.b is not None]
    names = sorted({n for p in common for n in (*p.a.criteria, *p.b.criteria)}, key=_criterion_order)  # type: ignore[union-attr]
    criteria = tuple((n, mean(p.a.criteria.get(n) for p in common if p.a), mean(p.b.criteria.get(n) for p in common if p.b))
                     for n in names)
    return Comparison(a, b, pairs, tuple(warnings), headline, criteria)


class CompareQuery(BaseModel):
    """The comparison table's filters: ``show`` is ``all``, ``changed``, ``better`` (B scored
    higher), ``worse`` or ``missing`` (in one run only); ``sort`` is ``index``, ``delta``,
    ``a`` or ``b``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    a: str
    b: str
    q: str = ""
    show: Literal["all", "changed", "better", "worse", "missing"] = "all"
    sort: Literal["index", "delta", "a", "b"] = "index"
    desc: bool = False
    page: int = Field(1, ge=1)


def filter_pairs(pairs: Sequence[Pair], f: CompareQuery) -> list[Pair]:
    words = f.q.casefold().split()
    shows: dict[str, Callable[[Pair], bool]] = {
        "all": lambda p: True,
        "changed": lambda p: p.delta is not None and p.delta != 0,
        "better": lambda p: p.delta is not None and p.delta > 0,
        "worse": lambda p: p.delta is not None and p.delta < 0,
        "missing": lambda p: p.a is None or p.b is None,
    }
    show = shows[f.show]
    selected = [p for p in pairs if show(p) and all(w in (p.a or p.b).search for w in words)]  # type: ignore[union-attr]
    keys: dict[str, Callable[[Pair], Any]] = {
        "index": lambda p: p.index,
        "delta": lambda p: p.delta,
        "a": lambda p: p.a.score if p.a else None,
        "b": lambda p: p.b.score if p.b else None,
    }
    return ordered(selected, keys[f.sort], f.desc)
