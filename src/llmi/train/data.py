"""Training data: read prompts from files or the Hugging Face hub, check them, write verl parquet.

``prepare`` reads JSONL, JSON, CSV or parquet files, or a Hugging Face dataset id (LLM-I's
``ByteDance-BandAI/LLM-I`` where the hub can be reached), checks every row
(``llmi.train.rows``), puts LLM-I's system prompt in front, embeds the input images, splits off a
test set and writes ``train.parquet`` and ``test.parquet`` in verl's layout. ``summarise`` counts
what a file holds (``llmi data inspect``).

>>> import tempfile, json, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "p.jsonl").write_text(json.dumps({"prompt": "Explain tides.", "image_num": 1}) + "\\n")
>>> report = prepare_sync([folder / "p.jsonl"], folder / "data", RowRules(system_prompt="S"))
>>> report.counts, sorted(p.name for p in report.outputs.values())
({'train': 1}, ['train.parquet'])
>>> summarise(folder / "data" / "train.parquet").by_image_num
{1: 1}
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import random
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import ConfigError, DataError, MissingDependency
from .rows import SPLITS, RowRules, TrainingItem, read_item

__all__ = [
    "DatasetSummary",
    "PrepareReport",
    "output_name",
    "parquet_schema",
    "prepare",
    "prepare_sync",
    "read_items",
    "summarise",
]

#: one input row: its 1-based number, the row, and the split its source implies (HF splits)
RawRow = tuple[int, Any, "str | None"]
_FILE_KINDS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
_HF_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class PrepareReport:
    """What ``prepare`` did: rows per split, the files written, and every bad row."""

    counts: dict[str, int]
    outputs: dict[str, Path]
    errors: tuple[DataError, ...] = ()
    total: int = 0
    written: bool = True

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class DatasetSummary:
    """Counts over a dataset's rows (``llmi data inspect``)."""

    source: str
    rows: int
    by_split: dict[str, int]
    by_image_num: dict[int, int]
    by_tool: dict[str, int]
    by_modality: dict[str, int]
    by_input_images: dict[int, int]
    dummy_images: int
    errors: tuple[DataError, ...]
    first: tuple[TrainingItem, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "rows": self.rows, "by_split": self.by_split,
            "by_image_num": {str(k): v for k, v in self.by_image_num.items()}, "by_tool": self.by_tool,
            "by_modality": self.by_modality,
            "by_input_images": {str(k): v for k, v in self.by_input_images.items()},
            "dummy_images": self.dummy_images, "errors": [str(e) for e in self.errors],
        }


# -- reading ------------------------------------------------------------------------------------


def read_rows(source: str | os.PathLike[str], *, split: str | None = None) -> Iterator[RawRow]:
    """The rows of a file (by its suffix) or of a Hugging Face dataset id.

    A line or cell that cannot even be decoded is yielded as a ``DataError`` in place of its row,
    so that one broken line does not hide the others.
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    kind = _FILE_KINDS.get(path.suffix.lower())
    if path.is_file():
        if kind is None:
            raise DataError(f"cannot read {path.suffix or 'files without a suffix'}; "
                            "give .jsonl, .json, .csv or .parquet", source=text)
        yield from {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}[kind](path)
        return
    if path.exists():
        raise DataError("is a folder; give a .jsonl, .json, .csv or .parquet file", source=text)
    if kind is not None or text.count("/") != 1:
        raise DataError("no such file (and not a Hugging Face dataset id like 'owner/name')", source=text)
    yield from _hub(text, split)


def _jsonl(path: Path) -> Iterator[RawRow]:
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield number, DataError(f"not JSON: {exc.msg} at column {exc.colno}", row=number), None


def _json(path: Path) -> Iterator[RawRow]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        # Many ".json" files are JSON lines.
        yield from _jsonl(path)
        return
    if not isinstance(data, list):
        raise DataError("a .json file must hold a list of rows (or one JSON object per line)", source=str(path))
    for number, row in enumerate(data, 1):
        yield number, row, None


def _csv(path: Path) -> Iterator[RawRow]:
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames:
            raise DataError("the CSV file has no header row", source=str(path))
        for number, row in enumerate(reader, 1):
            if None in row:
                yield number, DataError("more cells than header columns", row=number), None
                continue
            yield number, {k: (v if v != "" else None) for k, v in row.items()}, None


def _parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid, OSError ... for broken files
        raise DataError(f"not a readable parquet file ({type(exc).__name__}: {exc})", source=str(path)) from None
    number = 0
    for batch in table.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            number += 1
            yield number, row, None


def _hub(dataset_id: str, split: str | None) -> Iterator[RawRow]:
    offline = any(os.environ.get(k, "").lower() in ("1", "true", "yes", "on")
                  for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    endpoint = os.environ.get("HF_ENDPOINT", _HF_ENDPOINT)
    if offline or not _reachable(endpoint):
        raise DataError(
            f"cannot download the dataset: the Hugging Face hub ({endpoint}) is "
            f"{'switched off by HF_HUB_OFFLINE' if offline else 'not reachable from here'}; download it "
            "elsewhere (for example as parquet) and pass the files", source=dataset_id)
    try:
        import datasets
    except ImportError:
        raise MissingDependency("datasets", "train") from None
    try:
        loaded = datasets.load_dataset(dataset_id, split=split)
    except Exception as exc:  # the hub raises many types: not found, gated, no such split
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataError(f"could not load it from the Hugging Face hub: {detail}", source=dataset_id) from None
    parts = loaded.items() if isinstance(loaded, dict) else [(split, loaded)]
    number = 0
    for name, part in parts:
        implied = name if name in SPLITS else None
        for row in part:
            number += 1
            yield number, row, implied


def _reachable(url: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


async def read_items(
    sources: Sequence[str | os.PathLike[str]],
    rules: RowRules,
    *,
    split: str | None = None,
    on_row: Callable[[], None] | None = None,
    concurrency: int = 8,
) -> tuple[list[TrainingItem], list[DataError], int]:
    """Every row of every source as an item or an error (with source and row); and the row count."""
    results: list[tuple[int, TrainingItem | DataError]] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(order: int, source: str, base: Path | None, number: int, raw: Any, implied: str | None) -> None:
        async with gate:
            try:
                if isinstance(raw, DataError):
                    raise raw
                item = await read_item(raw, number, replace(rules, base_dir=base))
                results.append((order, replace(item, split=item.split or implied)))
            except DataError as exc:
                results.append((order, DataError(exc.reason, row=number, source=source)))
            finally:
                if on_row is not None:
                    on_row()

    tasks = []
    for source in sources:
        text = os.fspath(source)
        local = Path(text).expanduser()
        base = local.parent if local.exists() else None  # a hub dataset names no local files
        for number, raw, implied in read_rows(text, split=split):
            tasks.append(one(len(tasks), text, base, number, raw, implied))
    await asyncio.gather(*tasks)
    results.sort(key=lambda r: r[0])  # input order, whatever finished first
    items = [r for _, r in results if isinstance(r, TrainingItem)]
    errors = [r for _, r in results if isinstance(r, DataError)]
    total = len(tasks)
    return items, errors, total


# -- writing ------------------------------------------------------------------------------------


def parquet_schema() -> Any:
    """One arrow schema for every file llmi writes, so text and multimodal files concatenate."""
    import pyarrow as pa

    turn = pa.struct([("role", pa.string()), ("content", pa.string())])
    image = pa.struct([("bytes", pa.binary()), ("max_pixels", pa.int64())])
    return pa.schema([
        ("data_source", pa.string()),
        ("prompt", pa.list_(turn)),
        ("images", pa.list_(image)),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        ("extra_info", pa.struct([
            ("split", pa.string()), ("index", pa.int64()), ("image_num", pa.int64()),
            ("tools", pa.list_(pa.string())), ("question", pa.string()),
        ])),
    ])


def output_name(split: str, tag: str = "") -> str:
    """``train.parquet``, or ``train_mm.parquet`` with ``tag="mm"`` (LLM-I's file names)."""
    return f"{split}{'_' + tag if tag else ''}.parquet"


def _write(items: Sequence[TrainingItem], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([item.record(i) for i, item in enumerate(items)], schema=parquet_schema())
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    pq.write_table(table, partial)
    partial.replace(path)  # a reader never sees half a file


def _assign_splits(items: list[TrainingItem], test_size: float, seed: int) -> list[TrainingItem]:
    """Rows without a split go to train, except ``test_size`` of them (a fraction, or a count
    when >= 1) picked at random with ``seed``."""
    free = [i for i, item in enumerate(items) if item.split is None]
    n_test = int(round(test_size * len(free))) if test_size < 1 else int(test_size)
    if n_test > len(free):
        raise ConfigError(f"--test-size {test_size:g} asks for {n_test} test rows but only {len(free)} rows have no split")
    chosen = set(random.Random(seed).sample(free, n_test))
    return [replace(item, split="test" if i in chosen else "train") if item.split is None else item
            for i, item in enumerate(items)]


async def prepare(
    sources: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    rules: RowRules,
    *,
    test_size: float = 0.0,
    seed: int = 0,
    skip_invalid: bool = False,
    tag: str = "",
    hf_split: str | None = None,
    on_row: Callable[[], None] | None = None,
) -> PrepareReport:
    """Read, check and write the training data; see the module docstring.

    With invalid rows and ``skip_invalid=False`` nothing is written (``report.written`` is
    False) and ``report.errors`` lists each row and its reason; with ``skip_invalid=True`` the
    valid rows are written and the invalid ones reported.
    """
    if not sources:
        raise ConfigError("no input: give one or more files or a Hugging Face dataset id")
    if test_size < 0:
        raise ConfigError("--test-size must be 0 or more")
    # 1. read and check every row
    items, errors, total = await read_items(sources, rules, split=hf_split, on_row=on_row)
    if errors and not skip_invalid:
        return PrepareReport(counts={}, outputs={}, errors=tuple(errors), total=total, written=False)
    if not items:
        raise DataError("no usable rows", source=", ".join(map(os.fspath, sources)))
    # 2. split, in input order
    items = _assign_splits(items, test_size, seed)
    # 3. one parquet file per split
    out = Path(out_dir)
    outputs: dict[str, Path] = {}
    counts: dict[str, int] = {}
    for split in SPLITS:
        chosen = [it for it in items if it.split == split]
        if chosen:
            outputs[split] = out / output_name(split, tag)
            _write(chosen, outputs[split])
            counts[split] = len(chosen)
    return PrepareReport(counts=counts, outputs=outputs, errors=tuple(errors), total=total)


def prepare_sync(sources: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str], rules: RowRules,
                 **kwargs: Any) -> PrepareReport:
    """``prepare`` from synchronous code."""
    return asyncio.run(prepare(sources, out_dir, rules, **kwargs))


# -- inspecting ---------------------------------------------------------------------------------


def summarise(source: str | os.PathLike[str], *, first: int = 3, hf_split: str | None = None) -> DatasetSummary:
    """Counts by split, ``image_num``, required tool, modality and input images, every invalid
    row, and the first ``first`` items of a prepared (or raw) dataset."""
    items, errors, total = asyncio.run(read_items([source], RowRules(), split=hf_split))
    tools: Counter[str] = Counter(t for it in items for t in it.tools)
    return DatasetSummary(
        source=os.fspath(source), rows=total,
        by_split=dict(sorted(Counter(it.split or "train" for it in items).items())),
        by_image_num=dict(sorted(Counter(it.image_num for it in items).items())),
        by_tool={name: tools[name] for name in ("search", "diffusion", "code", "edit") if tools[name]},
        by_modality=dict(sorted(Counter(it.modality for it in items).items())),
        by_input_images=dict(sorted(Counter(len(it.images) for it in items).items())),
        dummy_images=sum(it.dummy_image for it in items),
        errors=tuple(errors), first=tuple(items[:first]),
    )

