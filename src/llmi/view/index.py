"""What a folder holds: documents, evaluation runs and training runs, found lazily and cached.

``Index(root).found()`` walks ``root`` and lists every folder llmi made, newest first, from
names and ``stat`` alone; ``describe`` reads one into an ``Entry`` (title, prompt, facts), and a
page reads only the entries it shows. A folder is

- a **document** when it holds ``document.json`` (``llmi generate``, ``llmi render``,
  ``Document.save``); one whose ``meta`` records test-time scaling is a **scaling** entry;
- an **evaluation run** when it holds ``config.json`` and ``results.jsonl`` (``llmi eval``);
- a **training run** when it holds ``metrics.jsonl`` or ``llmi-train.json`` (``llmi train grpo``);

and the walk does not enter any of those (their own files belong to them). Nothing is read
twice: a folder is listed again only when its modification time changes, an entry's file is
parsed again only when its size or modification time does, so listing a folder of thousands of
documents costs a ``stat`` per folder and file, and reading the two hundred a page shows.

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
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Generic, Iterable, Literal, Mapping, Sequence, TypeVar

__all__ = [
    "DOCUMENT_FILE", "Entry", "Found", "Index", "MAX_DEPTH", "MAX_FOLDERS", "NotThere", "Stamp", "Unreadable", "read_json",
    "resolve_inside", "StampCache", "stamp",
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


def stamp(path: str | Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


T = TypeVar("T")


class StampCache(Generic[T]):
    """Values read from files, each kept while its files' stamps stay the same (the ``size``
    most recently used). Safe to use from several threads; two threads may read one value at
    once, and the later keeps it.

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = f.write_text("1")
    >>> cache, reads = StampCache(4), []
    >>> [cache.get("x", (f,), lambda: reads.append(1) or f.read_text()) for _ in range(2)], len(reads)
    (['1', '1'], 1)
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[str, tuple[tuple[Stamp | None, ...], T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, files: Sequence[str | Path], read: Callable[[], T]) -> T:
        """The value of ``key``, from ``read()`` unless ``files`` are unchanged since it last ran."""
        stamps = tuple(stamp(f) for f in files)
        with self._lock:
            cached = self._values.get(key)
            if cached is not None and cached[0] == stamps:
                self._values.move_to_end(key)
                return cached[1]
        value = read()
        with self._lock:
            self._values[key] = (stamps, value)
            self._values.move_to_end(key)
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value


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
    except RecursionError:
        raise Unreadable(f"{path.name} nests its values too deeply to read") from None


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


@dataclass(frozen=True)
class Found:
    """A folder llmi made, known from its name and ``stat`` alone (nothing read yet).

    ``kind`` is ``document``, ``eval`` or ``training``: whether a document records test-time
    scaling is only known once it is read (``Index.describe``).
    """

    kind: Kind
    id: str
    mtime: float  # of its newest marker file: what "newest first" sorts by
    stamps: tuple[Stamp | None, ...]


#: kind -> the function that reads an entry of that kind from its folder
Reader = Callable[[Path, str], Entry]


class Index:
    """The entries under ``root``, kept current cheaply (see the module's docstring).

    ``found()`` lists the folders llmi made, newest first, from names and ``stat`` alone;
    ``describe`` reads one (once per version of its files); ``search`` reads only what a query
    needs. ``readers`` map a kind to the function that reads such a folder; the defaults come
    from the view modules. Safe to use from several threads.
    """

    def __init__(self, root: str | Path, readers: Mapping[str, Reader] | None = None) -> None:
        self.root = Path(root).resolve()
        self._root = str(self.root)
        self._readers = dict(readers) if readers is not None else default_readers()
        self._listings: dict[str, _Listing] = {}
        self._entries: dict[str, tuple[tuple[Stamp | None, ...], Entry]] = {}
        self._lock = threading.Lock()
        self.truncated = False

    def found(self) -> list[Found]:
        """Every folder llmi made under the root, newest first."""
        with self._lock:
            found = list(self._walk())
            for gone in set(self._entries) - {f.id for f in found}:
                del self._entries[gone]
        return sorted(found, key=lambda f: (-f.mtime, f.id))

    def describe(self, found: Found) -> Entry:
        """The entry of ``found``, read now unless its files are unchanged since last read."""
        with self._lock:
            cached = self._entries.get(found.id)
        if cached is not None and cached[0] == found.stamps:
            return cached[1]
        folder = Path(os.path.join(self._root, found.id) if found.id else self._root)
        reader = self._readers.get(found.kind)
        try:
            entry = reader(folder, found.id) if reader is not None else _unreadable(found, "no reader")
        except (Unreadable, OSError) as exc:
            entry = _unreadable(found, str(exc))
        except (TypeError, ValueError, AttributeError, KeyError) as exc:  # a file llmi did not write: listed, not fatal
            entry = _unreadable(found, f"a value of the wrong type ({type(exc).__name__}: {exc})")
        with self._lock:
            self._entries[found.id] = (found.stamps, entry)
        return entry

    def entries(self) -> list[Entry]:
        """Every entry, read, newest first."""
        return [self.describe(f) for f in self.found()]

    def search(self, query: str = "", kinds: Iterable[str] = ()) -> list[Found]:
        """What matches every word of ``query`` (in titles, prompts, paths) and is of one of
        ``kinds`` (all when empty; ``document`` includes ``scaling``), newest first. Only a
        query or the ``scaling`` kind needs the entries read."""
        wanted = set(kinds)
        found = self.found()
        if wanted:
            found = [f for f in found if f.kind in wanted or (f.kind == "document" and "scaling" in wanted)]
        if "scaling" in wanted and "document" not in wanted:
            found = [f for f in found if f.kind != "document" or self.describe(f).kind == "scaling"]
        if query.strip():
            found = [f for f in found if self.describe(f).matches(query)]
        return found

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

    # -- the walk: strings, not pathlib (over thousands of folders its objects cost more than the
    # system calls they wrap) ---------------------------------------------------------------------
    def _walk(self) -> Iterable[Found]:
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
            known = self._listings.get(rel)
            found = self._found(rel, known.kind) if known is not None and known.kind is not None else None
            if found is None:  # a folder seen for the first time, or one that is no longer what it was
                listing = self._listing(rel)
                if listing is None:
                    continue
                found = self._found(rel, listing.kind) if listing.kind is not None else None
            live.add(rel)
            if found is not None:
                yield found
                continue
            if depth >= MAX_DEPTH:
                self.truncated = self.truncated or bool(listing.children)
                continue
            stack.extend((f"{rel}/{name}" if rel else name, depth + 1) for name in listing.children)
        if not self.truncated:
            for gone in set(self._listings) - live:
                del self._listings[gone]

    def _found(self, rel: str, kind: Kind) -> Found | None:
        """The folder as an entry of ``kind``, from its marker files' stamps alone (no listing:
        a folder llmi made stays what it is while its markers are there); ``None`` when they
        no longer say so."""
        base = f"{self._root}/{rel}" if rel else self._root
        stamps = tuple(stamp(f"{base}/{name}") for name in _marker(kind))
        present = [st for st in stamps if st is not None]
        if not present or (kind == "eval" and len(present) < len(stamps)):
            return None
        return Found(kind, rel, max(st[0] for st in present) / 1e9, stamps)

    def _listing(self, rel: str) -> _Listing | None:
        path = f"{self._root}/{rel}" if rel else self._root
        try:
            mtime = os.stat(path, follow_symlinks=False).st_mtime_ns
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


def _walkable(item: os.DirEntry[str]) -> bool:
    name = item.name
    if name.startswith(".") or name in _SKIP or name.startswith("checkpoint-"):
        return False
    try:
        name.encode("utf-8")  # a name that is not UTF-8 cannot have an address
        return item.is_dir(follow_symlinks=False)
    except (OSError, UnicodeEncodeError):
        return False


def _unreadable(found: Found, problem: str) -> Entry:
    return Entry(found.kind, found.id, found.id or ".", "", found.mtime, problem=problem)


def default_readers() -> dict[str, Reader]:
    from .documents import read_document_entry
    from .evals import read_eval_entry
    from .training import read_training_entry

    return {"document": read_document_entry, "eval": read_eval_entry, "training": read_training_entry}
