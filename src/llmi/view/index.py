"""What a folder holds: documents, evaluation runs and training runs, found lazily and cached.

``Index(root).entries()`` walks ``root`` and returns one ``Entry`` per thing llmi made, newest
first. A folder is

- a **document** when it holds ``document.json`` (``llmi generate``, ``llmi render``,
  ``Document.save``); one whose ``meta`` records test-time scaling is a **scaling** entry;
- an **evaluation run** when it holds ``config.json`` and ``results.jsonl`` (``llmi eval``);
- a **training run** when it holds ``metrics.jsonl`` or ``llmi-train.json`` (``llmi train grpo``);

and the walk does not enter any of those (their own files belong to them). Nothing is read
twice: a folder is listed again only when its modification time changes, an entry's file is
parsed again only when its size or modification time does, so listing a folder of thousands of
documents costs one ``stat`` per folder and file once it has been read.

The walk stays inside ``root``: symbolic links are not followed, hidden folders and ``images/``
are skipped, and it stops at ``MAX_DEPTH`` levels and ``MAX_FOLDERS`` folders (``truncated``
says so).

>>> import tempfile, pathlib
>>> from llmi.document import Document, TextSegment
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> _ = Document((TextSegment("Hi"),), meta={"prompt": "Say hi"}).save(root / "a", ["json"])
>>> [(e.kind, e.id, e.title) for e in Index(root).entries()]
[('document', 'a', 'Say hi')]
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping

__all__ = [
    "DOCUMENT_FILE", "Entry", "Index", "MAX_DEPTH", "MAX_FOLDERS", "NotThere", "Stamp", "Unreadable", "read_json",
    "resolve_inside", "stamp",
]

DOCUMENT_FILE = "document.json"
EVAL_FILES = ("config.json", "results.jsonl")
TRAIN_FILES = ("llmi-train.json", "metrics.jsonl")
MAX_DEPTH = 8
MAX_FOLDERS = 50_000
#: the largest JSON file the viewer parses (a document.json holds no image bytes)
MAX_JSON_BYTES = 64 << 20
_SKIP = frozenset({"images", "node_modules", "__pycache__", "checkpoint", "site-packages"})

Kind = Literal["document", "scaling", "eval", "training"]
#: (modification time in ns, size): what decides whether a file must be read again
Stamp = tuple[int, int]


class NotThere(LookupError):
    """Nothing the viewer can show is at this address (its page answers 404)."""


class Unreadable(ValueError):
    """Something is there but cannot be read; the message says why (its page answers 422)."""


def stamp(path: Path) -> Stamp | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in ``path``; ``Unreadable`` saying why when it cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise Unreadable(f"cannot read {path.name}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise Unreadable(f"{path.name} is larger than {limit >> 20} MB")
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Unreadable(f"{path.name} is not valid JSON: {exc}") from None


def resolve_inside(root: Path, rel: str) -> Path | None:
    """``root/rel`` resolved, or ``None`` when it leads outside ``root`` (``..``, an absolute
    path, a symbolic link pointing elsewhere) or holds characters no file name has.

    >>> import tempfile, pathlib
    >>> r = pathlib.Path(tempfile.mkdtemp())
    >>> resolve_inside(r, "a/../b") == r.resolve() / "b", resolve_inside(r, "../etc"), resolve_inside(r, "/etc")
    (True, None, None)
    """
    if "\x00" in rel or rel.startswith(("/", "\\")):
        return None
    base = root.resolve()
    try:
        target = (base / rel).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return target if target.is_relative_to(base) else None


@dataclass(frozen=True)
class Entry:
    """One thing in the folder, as the list shows it.

    ``id`` is the folder's path relative to the root (``""`` for the root itself), which is
    also its address in the viewer; ``facts`` are short (label, text) pairs; ``problem`` says
    why the entry could not be read (it is still listed).
    """

    kind: Kind
    id: str
    title: str
    prompt: str
    mtime: float
    facts: tuple[tuple[str, str], ...] = ()
    problem: str | None = None

    def matches(self, query: str) -> bool:
        """Whether every word of ``query`` is in the title, prompt or path (any case)."""
        haystack = f"{self.title}\n{self.prompt}\n{self.id}".casefold()
        return all(word in haystack for word in query.casefold().split())


@dataclass(frozen=True)
class _Listing:
    """One folder's classification, valid while its modification time stays the same."""

    mtime_ns: int
    kind: Kind | None  # None: an ordinary folder, walked into
    children: tuple[str, ...]


def _classify(names: set[str]) -> Kind | None:
    if DOCUMENT_FILE in names:
        return "document"
    if all(n in names for n in EVAL_FILES):
        return "eval"
    if any(n in names for n in TRAIN_FILES):
        return "training"
    return None


def _marker(kind: Kind) -> tuple[str, ...]:
    """The files whose stamps decide whether an entry of ``kind`` is read again."""
    return {"document": (DOCUMENT_FILE,), "scaling": (DOCUMENT_FILE,), "eval": EVAL_FILES,
            "training": TRAIN_FILES}[kind]


#: kind -> the function that reads an entry of that kind from its folder
Reader = Callable[[Path, str], Entry]


class Index:
    """The entries under ``root``, kept current cheaply (see the module's docstring).

    ``readers`` map a kind to the function that reads such a folder (``read_document_entry``,
    ...); the defaults come from the view modules. Safe to use from several threads.
    """

    def __init__(self, root: str | Path, readers: Mapping[str, Reader] | None = None) -> None:
        self.root = Path(root).resolve()
        self._readers = dict(readers) if readers is not None else default_readers()
        self._listings: dict[str, _Listing] = {}
        self._entries: dict[str, tuple[tuple[Stamp | None, ...], Entry]] = {}
        self._lock = threading.Lock()
        self.truncated = False

    def entries(self) -> list[Entry]:
        """Every entry, newest first."""
        with self._lock:
            found = list(self._walk())
            seen = {e.id for e in found}
            for gone in set(self._entries) - seen:
                del self._entries[gone]
        return sorted(found, key=lambda e: (-e.mtime, e.id))

    def search(self, query: str = "", kinds: Iterable[str] = ()) -> list[Entry]:
        """Entries matching every word of ``query`` and of one of ``kinds`` (all when empty)."""
        wanted = set(kinds)
        return [e for e in self.entries()
                if (not wanted or e.kind in wanted or (e.kind == "scaling" and "document" in wanted))
                and (not query.strip() or e.matches(query))]

    def kind_of(self, rel: str) -> Kind | None:
        """What the folder ``rel`` holds (``None``: nothing llmi made, or outside the root)."""
        path = resolve_inside(self.root, rel)
        if path is None or not path.is_dir():
            return None
        try:
            names = set(os.listdir(path))
        except OSError:
            return None
        return _classify(names)

    # -- the walk ----------------------------------------------------------------------------
    def _walk(self) -> Iterable[Entry]:
        self.truncated = False
        stack: list[tuple[str, int]] = [("", 0)]
        visited = 0
        live: set[str] = set()
        while stack:
            rel, depth = stack.pop()
            visited += 1
            if visited > MAX_FOLDERS:
                self.truncated = True
                break
            listing = self._listing(rel)
            if listing is None:
                continue
            live.add(rel)
            if listing.kind is not None:
                yield self._entry(rel, listing.kind)
                continue
            if depth >= MAX_DEPTH:
                self.truncated = self.truncated or bool(listing.children)
                continue
            stack.extend((f"{rel}/{name}" if rel else name, depth + 1) for name in listing.children)
        for gone in set(self._listings) - live:
            if not self.truncated:
                del self._listings[gone]

    def _listing(self, rel: str) -> _Listing | None:
        path = self.root / rel if rel else self.root
        try:
            mtime = path.stat(follow_symlinks=False).st_mtime_ns
        except OSError:
            return None
        cached = self._listings.get(rel)
        if cached is not None and cached.mtime_ns == mtime:
            return cached
        names: set[str] = set()
        children: list[str] = []
        try:
            with os.scandir(path) as it:
                for item in it:
                    names.add(item.name)
                    if _walkable(item):
                        children.append(item.name)
        except OSError:
            return None
        kind = _classify(names)
        listing = _Listing(mtime, kind, tuple(sorted(children, reverse=True)) if kind is None else ())
        self._listings[rel] = listing
        return listing

    def _entry(self, rel: str, kind: Kind) -> Entry:
        folder = self.root / rel if rel else self.root
        stamps = tuple(stamp(folder / name) for name in _marker(kind))
        cached = self._entries.get(rel)
        if cached is not None and cached[0] == stamps:
            return cached[1]
        reader = self._readers.get(kind)
        try:
            entry = reader(folder, rel) if reader is not None else _unreadable(kind, folder, rel, "no reader")
        except (Unreadable, OSError) as exc:
            entry = _unreadable(kind, folder, rel, str(exc))
        self._entries[rel] = (stamps, entry)
        return entry


def _walkable(item: os.DirEntry[str]) -> bool:
    name = item.name
    if name.startswith(".") or name in _SKIP or name.startswith("checkpoint-"):
        return False
    try:
        name.encode("utf-8")  # a name that is not UTF-8 cannot have an address
        return item.is_dir(follow_symlinks=False)
    except (OSError, UnicodeEncodeError):
        return False


def _unreadable(kind: Kind, folder: Path, rel: str, problem: str) -> Entry:
    try:
        mtime = folder.stat().st_mtime
    except OSError:
        mtime = 0.0
    return Entry(kind, rel, rel or folder.name, "", mtime, problem=problem)


def default_readers() -> dict[str, Reader]:
    from .documents import read_document_entry
    from .evals import read_eval_entry

    return {"document": read_document_entry, "eval": read_eval_entry}
