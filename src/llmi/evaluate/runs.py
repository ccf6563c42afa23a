"""An evaluation run's folder: its configuration, append-only results, shards and merging.

::

    RUN/
      config.json     what ran: benchmark file and its sha256, writer, judge, prompt hashes,
                      llmi version, seed, shard (compared on resume: a run never mixes settings)
      results.jsonl   one JSON object per finished item, appended and fsynced as each finishes
      items/<key>/    each item's document (document.json and images/)
      report.html     the run's report (``llmi eval report RUN`` writes it again)

``results.jsonl`` is the source of truth. A rerun reads it and skips every item already in it,
so a run killed at any moment loses only the items that were in flight; a half-written last
line (the process died inside ``write``) is cut off before anything is appended again.

>>> import tempfile
>>> run = RunDir(tempfile.mkdtemp())
>>> run.start({"kind": "demo", "seed": 0})
>>> run.append({"key": "a", "score": 1.0})
>>> [r["key"] for r in run.records()]
['a']
>>> run.close()
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import ConfigError

__all__ = [
    "CONFIG_FILE",
    "RESULTS_FILE",
    "RunDir",
    "Shard",
    "config_identity",
    "file_sha256",
    "item_seed",
    "merge_runs",
    "read_json_list",
    "text_sha256",
]

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.jsonl"
ITEMS_DIR = "items"
REPORT_FILE = "report.html"
_LOCK_FILE = ".lock"

#: configuration fields that may change between a run and its resumption
_RUNTIME_FIELDS = frozenset({"created", "runtime", "sessions", "shards", "merged_from"})


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def item_seed(seed: int, key: str) -> int:
    """A per-item seed drawn from the run's seed and the item's key, so that an item gets the
    same seed whatever the order, concurrency or shard it runs in.

    >>> item_seed(0, "0001") == item_seed(0, "0001") != item_seed(1, "0001")
    True
    """
    digest = hashlib.sha256(f"{seed}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (1-based, as in ``--shard 2/4``): the items at positions
    ``index-1, index-1+count, ...`` of the benchmark, so shards stay balanced.

    >>> s = Shard.parse("2/3")
    >>> [i for i in range(7) if s.owns(i)], str(s)
    ([1, 4], '2/3')
    """

    index: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ConfigError(f"shard {self.index}/{self.count} does not exist; use i/n with 1 <= i <= n")

    @classmethod
    def parse(cls, text: str | None) -> "Shard":
        if not text:
            return cls()
        head, sep, tail = str(text).partition("/")
        try:
            if not sep:
                raise ValueError
            return cls(int(head), int(tail))
        except ValueError:
            raise ConfigError(f"--shard takes i/n (for example 2/4), got {text!r}") from None

    def owns(self, position: int) -> bool:
        return position % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def config_identity(config: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a run's configuration that decides its results (runtime fields dropped)."""
    return {k: v for k, v in config.items() if k not in _RUNTIME_FIELDS}


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def read_json_list(path: str | Path, what: str) -> list[Any]:
    """A JSON list, JSON lines, or one JSON object (a list of one) from ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is neither JSON nor JSON lines: {exc}") from None
    return data if isinstance(data, list) else [data]


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".llmi-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _dump(data: Any) -> str:
    from ..renderers.json import jsonable

    return json.dumps(jsonable(data), ensure_ascii=False, allow_nan=False)


class RunDir:
    """One run's folder. ``start`` takes the folder (a lock: two runs never write into one),
    records or checks the configuration, and makes ``append`` ready.

    Keys are the benchmark's item keys; ``records()`` returns one record per key (the last one
    written, so ``--retry-errors`` can supersede a failed item).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._out: Any = None

    # -- paths -------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_FILE

    def item_dir(self, key: str) -> Path:
        return self.path / ITEMS_DIR / safe_name(key)

    def exists(self) -> bool:
        return self.config_path.is_file()

    # -- configuration -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        try:
            with open(self.config_path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"{self.path} is not an evaluation run (no {CONFIG_FILE})") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read {self.config_path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{self.config_path} does not hold a configuration object")
        return data

    def start(self, config: Mapping[str, Any]) -> None:
        """Take the folder and record ``config``; on resume, refuse a different configuration."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"cannot use {self.path} as a run folder: it is not a folder") from None
        self._lock()
        config = json.loads(_dump(config))  # plain JSON values, so a resumed config compares equal
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        session = {"started": now, **dict(config.get("runtime") or {})}
        if self.exists():
            old = self.config()
            diff = _differences(config_identity(old), config_identity(config))
            if diff:
                self.close()
                raise ConfigError(
                    f"{self.path} holds a run with another configuration ({'; '.join(diff[:6])}); "
                    "resume it with the same settings, or choose a new --out folder"
                )
            merged = {**old, "sessions": [*old.get("sessions", []), session]}
        else:
            merged = {**config, "created": now, "sessions": [session]}
        atomic_write(self.config_path, json.dumps(merged, ensure_ascii=False, indent=2) + "\n")
        self._open_results()

    def _lock(self) -> None:
        fd = os.open(self.path / _LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"another llmi eval is writing into {self.path}; wait for it or choose another --out") from None
        self._lock_fd = fd

    # -- results -----------------------------------------------------------------------------
    def _open_results(self) -> None:
        path = self.results_path
        if path.exists():
            _cut_partial_line(path)
        self._out = open(path, "a", encoding="utf-8")

    def append(self, record: Mapping[str, Any]) -> None:
        """Write one finished item: one ``write`` of a whole line, flushed and fsynced."""
        if self._out is None:
            raise RuntimeError("RunDir.append before start")
        if not isinstance(record.get("key"), str):
            raise ValueError("a result record needs a string 'key'")
        self._out.write(_dump(record) + "\n")
        self._out.flush()
        os.fsync(self._out.fileno())

    def records(self) -> list[dict[str, Any]]:
        """Every item's record (the last written for a key), in the order first written."""
        return list(read_records(self.results_path).values())

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    def __enter__(self) -> "RunDir":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def safe_name(key: str) -> str:
    """A file name for an item key: the key itself when it is made of letters, digits, ``-`` and
    ``.`` (not leading), otherwise those characters kept, the rest ``_``, and a hash of the key
    (so two keys never share a folder).

    >>> safe_name("0102003"), safe_name("../x y")
    ('0102003', '_._x_y-46c740c6')
    """
    plain = "".join(ch if ch.isascii() and (ch.isalnum() or ch == "-" or (ch == "." and i)) else "_"
                    for i, ch in enumerate(key))[:100]
    if plain == key and key:
        return key
    return f"{plain}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:8]}"


def _cut_partial_line(path: Path) -> None:
    """Drop bytes after the last newline: a record the process died while writing."""
    with open(path, "rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        if size == 0:
            return
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return
        step = 1 << 16
        pos = size
        while pos > 0:
            start = max(0, pos - step)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                fh.truncate(start + nl + 1)
                return
            pos = start
        fh.truncate(0)


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    with fh:
        for line in fh:
            if not line.endswith("\n"):
                return  # a partial last line: that item was still being written
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("key"), str):
                yield record


def read_records(path: str | Path) -> dict[str, dict[str, Any]]:
    """key -> record from a ``results.jsonl`` (the last record of a key wins)."""
    out: dict[str, dict[str, Any]] = {}
    for record in _lines(Path(path)):
        out[record["key"]] = record
    return out


# -- merging shards ----------------------------------------------------------------------------


def merge_runs(sources: Sequence[str | Path], out: str | Path) -> tuple[RunDir, list[str]]:
    """Join shard runs of one benchmark into ``out``; returns the merged run and warnings.

    The runs must share their configuration except the shard; each item's folder is copied so
    the merged run stands alone; records are written in benchmark order.
    """
    runs = [RunDir(s) for s in sources]
    if not runs:
        raise ConfigError("name at least one run folder to merge")
    configs = [r.config() for r in runs]
    base = {k: v for k, v in config_identity(configs[0]).items() if k != "shard"}
    for run, cfg in zip(runs[1:], configs[1:]):
        diff = _differences(base, {k: v for k, v in config_identity(cfg).items() if k != "shard"})
        if diff:
            raise ConfigError(f"{run.path} ran with another configuration than {runs[0].path}: {'; '.join(diff[:6])}")
    warnings: list[str] = []
    shards = [cfg.get("shard") for cfg in configs]
    counts = {int(str(s).split("/")[1]) for s in shards if s}
    if len(counts) == 1:
        n = counts.pop()
        missing = sorted(set(range(1, n + 1)) - {int(str(s).split("/")[0]) for s in shards if s})
        if missing:
            warnings.append(f"shards {', '.join(f'{i}/{n}' for i in missing)} are missing: the merged run is partial")
    if len(set(map(str, shards))) < len(shards):
        warnings.append("the same shard is given more than once")

    records: dict[str, tuple[RunDir, dict[str, Any]]] = {}
    for run in runs:
        for record in run.records():
            key = record["key"]
            if key in records and _comparable(records[key][1]) != _comparable(record):
                warnings.append(f"item {key} has different results in {records[key][0].path} and {run.path}; keeping the first")
                continue
            records.setdefault(key, (run, record))

    target = RunDir(out)
    if target.exists() or (target.path / RESULTS_FILE).exists():
        raise ConfigError(f"{target.path} already holds a run; merge into a new folder")
    merged_config = {**{k: v for k, v in configs[0].items() if k not in _RUNTIME_FIELDS}, "shard": None,
                     "shards": [str(s) for s in shards], "merged_from": [str(r.path) for r in runs]}
    target.start(merged_config)
    try:
        for key, (run, record) in sorted(records.items(), key=lambda kv: (kv[1][1].get("index", 0), kv[0])):
            src = run.item_dir(key)
            if src.is_dir():
                shutil.copytree(src, target.item_dir(key), dirs_exist_ok=True, symlinks=False)
            _copy_extra(run, target, record)
            target.append(record)
    finally:
        target.close()
    return target, warnings


def _copy_extra(run: RunDir, target: RunDir, record: Mapping[str, Any]) -> None:
    """Files a record names outside ``items/`` (OpenING's gen_outputs layout)."""
    for rel in record.get("files", ()) or ():
        src = (run.path / rel).resolve()
        if not src.is_relative_to(run.path.resolve()) or not src.is_file():
            continue
        dst = target.path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def _comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("timing", "finished")}

