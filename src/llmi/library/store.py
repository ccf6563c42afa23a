"""The on-disk caption index of a local image library.

Layout under ``home`` (default ``$LLMI_HOME/library``, else ``$XDG_DATA_HOME/llmi/library``, else
``~/.local/share/llmi/library``)::

    index.sqlite   the manifest: one row per image (path, signature, caption, credit, vector),
                   the folders added (with a default licence), and meta (model, generation)
    vectors-G.npy  a numpy snapshot of every vector (and ids-G.npy of their row ids) for
                   manifest generation G, memory-mapped by queries; rebuilt from the manifest
                   when the generation changes (it is only a fast path)
    renders/       SVGs rendered to PNG, by path, signature and size

Re-indexing is incremental: a file whose (mtime, size) and sidecar text are unchanged keeps its
row; changed ones are re-captioned and re-embedded; files gone from a re-scanned folder are
dropped. A search embeds the query, ranks by cosine similarity, and the best match must reach
the threshold, else ``NotFound`` (so the engine's fallback policy can act).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, NotFound
from ..image import ImageData
from .captions import IMAGE_SUFFIXES, read_caption
from .embed import DIMENSIONS, Embedder
from .render import fit_raster, render_svg

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = ["DEFAULT_SOURCES", "AddReport", "Library", "LibraryHit", "LibraryItem", "LibraryStats", "default_home"]

#: folders Debian installs, with the licence to record where the file does not say
DEFAULT_SOURCES: tuple[tuple[str, str | None, str | None], ...] = (
    ("/usr/share/openclipart/svg", "Public domain", "https://creativecommons.org/publicdomain/zero/1.0/"),
    ("/usr/share/tuxpaint/stamps", "GPL-2.0", "https://www.gnu.org/licenses/old-licenses/gpl-2.0.html"),
)
DEFAULT_THRESHOLD = 0.5
_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    path TEXT UNIQUE NOT NULL,
    root TEXT NOT NULL,
    signature TEXT NOT NULL,
    caption TEXT NOT NULL,
    title TEXT NOT NULL,
    author TEXT,
    licence TEXT,
    licence_url TEXT,
    origin TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_root ON items(root);
CREATE TABLE IF NOT EXISTS roots (path TEXT PRIMARY KEY, licence TEXT, licence_url TEXT, added REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """Where the library lives: ``$LLMI_HOME/library``, else the XDG data folder."""
    env = os.environ if env is None else env
    if env.get("LLMI_LIBRARY_HOME"):
        return Path(env["LLMI_LIBRARY_HOME"]).expanduser()
    if env.get("LLMI_HOME"):
        return Path(env["LLMI_HOME"]).expanduser() / "library"
    data = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "share")
    return Path(data).expanduser() / "llmi" / "library"


@dataclass(frozen=True)
class LibraryItem:
    id: int
    path: str
    caption: str
    title: str
    author: str | None
    licence: str | None
    licence_url: str | None
    origin: str

    @property
    def is_svg(self) -> bool:
        return self.path.lower().endswith(".svg")


@dataclass(frozen=True)
class LibraryHit:
    item: LibraryItem
    score: float


@dataclass(frozen=True)
class AddReport:
    scanned: int
    added: int
    updated: int
    unchanged: int
    removed: int
    failed: tuple[str, ...]
    seconds: float

    @property
    def embedded(self) -> int:
        return self.added + self.updated


@dataclass(frozen=True)
class LibraryStats:
    home: str
    items: int
    roots: tuple[tuple[str, int], ...]
    origins: Mapping[str, int]
    svg: int
    bytes_on_disk: int
    model: str | None


Progress = Callable[[int, int], None]


class Library:
    """A persistent caption index over image folders.

    >>> lib = Library("/tmp/llmi-doctest-library")   # nothing is created until add()
    >>> lib.exists()
    False
    """

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        embedder: Embedder | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        display_size: int = 512,
    ) -> None:
        self.home = Path(home).expanduser() if home else default_home()
        self.embedder = embedder or Embedder()
        self.threshold = threshold
        self.display_size = display_size
        self._lock = threading.RLock()
        self._matrix: np.ndarray | None = None
        self._ids: np.ndarray | None = None
        self._generation: str | None = None
        self._recent: dict[str, np.ndarray] = {}

    # -- paths and connection ---------------------------------------------------------------------

    @property
    def db_path(self) -> Path:
        return self.home / "index.sqlite"

    def exists(self) -> bool:
        """True when the index holds at least one image."""
        if not self.db_path.is_file():
            return False
        with self._connect() as db:
            return db.execute("SELECT EXISTS(SELECT 1 FROM items)").fetchone()[0] == 1

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection per operation (commits on success, always closed): thread- and loop-free."""
        self.home.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            db.executescript(_SCHEMA)
            yield db
            db.commit()
        finally:
            db.close()

    # -- indexing --------------------------------------------------------------------------------

    def add(
        self,
        paths: Iterable[str | Path],
        *,
        licence: str | None = None,
        licence_url: str | None = None,
        progress: Progress | None = None,
        batch: int = 256,
    ) -> AddReport:
        """Index image files and folders (recursively); incremental; returns what changed."""
        import numpy as np

        started = time.monotonic()
        with self._lock, self._connect() as db:
            found: dict[str, tuple[str, str]] = {}  # real path -> (root, signature)
            scanned_roots: list[str] = []
            for raw in paths:
                root = Path(raw).expanduser().resolve()
                if not root.exists():
                    raise ConfigError(f"no such file or folder: {raw}")
                if root.is_dir():
                    scanned_roots.append(str(root))
                    db.execute(
                        "INSERT INTO roots(path, licence, licence_url, added) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(path) DO UPDATE SET licence=coalesce(excluded.licence, licence), "
                        "licence_url=coalesce(excluded.licence_url, licence_url)",
                        (str(root), licence, licence_url, time.time()),
                    )
                for file in _image_files(root):
                    signature = _signature(file)
                    if signature is not None:
                        found.setdefault(str(file), (str(root), signature))
            known = dict(db.execute("SELECT path, signature FROM items"))
            todo = [(p, r, s) for p, (r, s) in found.items() if known.get(p) != s]
            root_licences = {r: (lic, url) for r, lic, url in db.execute("SELECT path, licence, licence_url FROM roots")}
            failed: list[str] = []
            added = updated = 0
            for start in range(0, len(todo), batch):
                chunk = todo[start : start + batch]
                rows = []
                for path, root, signature in chunk:
                    try:
                        caption = read_caption(Path(path), Path(root))
                    except Exception as exc:  # noqa: BLE001 - one odd file must not stop the index
                        failed.append(f"{path}: {type(exc).__name__}: {exc}")
                        continue
                    default_lic, default_url = root_licences.get(root, (licence, licence_url))
                    rows.append((path, root, signature, caption, default_lic or licence, default_url or licence_url))
                vectors = self.embedder.encode([r[3].text for r in rows])
                for (path, root, signature, cap, lic, lic_url), vec in zip(rows, vectors):
                    if path in known:
                        updated += 1
                    else:
                        added += 1
                    db.execute(
                        "INSERT INTO items(path, root, signature, caption, title, author, licence, licence_url, origin, vector) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET root=excluded.root, "
                        "signature=excluded.signature, caption=excluded.caption, title=excluded.title, "
                        "author=excluded.author, licence=excluded.licence, licence_url=excluded.licence_url, "
                        "origin=excluded.origin, vector=excluded.vector",
                        (path, root, signature, cap.text, cap.title, cap.author, cap.licence or lic,
                         cap.licence_url or (lic_url if not cap.licence else None), cap.origin,
                         np.asarray(vec, dtype=np.float32).tobytes()),
                    )
                db.commit()
                if progress is not None:
                    progress(min(start + batch, len(todo)), len(todo))
            removed = 0
            for root in scanned_roots:
                gone = [p for (p,) in db.execute("SELECT path FROM items WHERE root = ?", (root,)) if p not in found]
                removed += len(gone)
                db.executemany("DELETE FROM items WHERE path = ?", [(p,) for p in gone])
            self._bump(db, changed=bool(todo or removed))
        return AddReport(
            scanned=len(found), added=added, updated=updated, unchanged=len(found) - len(todo),
            removed=removed, failed=tuple(failed), seconds=time.monotonic() - started,
        )

    def update(self, progress: Progress | None = None) -> AddReport:
        """Re-scan every folder added before (new, changed and deleted files)."""
        with self._connect() as db:
            roots = [r for (r,) in db.execute("SELECT path FROM roots")]
            missing = [r for r in roots if not Path(r).is_dir()]
            for r in missing:  # a folder that disappeared takes its images with it
                db.execute("DELETE FROM items WHERE root = ?", (r,))
                db.execute("DELETE FROM roots WHERE path = ?", (r,))
            self._bump(db, changed=bool(missing))
        return self.add([r for r in roots if r not in missing], progress=progress)

    def remove(self, paths: Iterable[str | Path]) -> int:
        """Forget files or whole folders (the files themselves are untouched)."""
        count = 0
        with self._lock, self._connect() as db:
            for raw in paths:
                target = str(Path(raw).expanduser().resolve())
                cur = db.execute("DELETE FROM items WHERE path = ? OR path LIKE ? ESCAPE '\\'",
                                 (target, _like_prefix(target)))
                count += cur.rowcount
                db.execute("DELETE FROM roots WHERE path = ? OR path LIKE ? ESCAPE '\\'", (target, _like_prefix(target)))
            self._bump(db, changed=count > 0)
        return count

    def _bump(self, db: sqlite3.Connection, changed: bool) -> None:
        if changed:
            gen = str(time.time_ns())
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('generation', ?)", (gen,))
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('model', ?)", (self.embedder.name,))
            db.commit()
            self._matrix = None

    # -- querying --------------------------------------------------------------------------------

    def _vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix) for every item, memory-mapped from the snapshot when it is current."""
        with self._lock, self._connect() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            generation = row[0] if row else ""
            if self._matrix is None or self._generation != generation:
                loaded = self._read_snapshot(generation)
                if loaded is None:
                    loaded = self._write_snapshot(db, generation)
                self._ids, self._matrix = loaded
                self._generation = generation
            return self._ids, self._matrix  # type: ignore[return-value]

    def _snapshot_paths(self, generation: str) -> tuple[Path, Path]:
        tag = "".join(c for c in generation if c.isalnum()) or "0"
        return self.home / f"vectors-{tag}.npy", self.home / f"ids-{tag}.npy"

    def _read_snapshot(self, generation: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The snapshot of this generation, mapped (no copy: a query reads it in place)."""
        import numpy as np

        vectors, ids = self._snapshot_paths(generation)
        try:
            matrix = np.load(vectors, mmap_mode="r")
            rows = np.load(ids, mmap_mode="r")
        except (OSError, ValueError):
            return None
        if matrix.ndim != 2 or matrix.shape[1] != DIMENSIONS or rows.shape != (matrix.shape[0],):
            return None
        return rows, matrix

    def _write_snapshot(self, db: sqlite3.Connection, generation: str) -> tuple[np.ndarray, np.ndarray]:
        """Every vector from the manifest; saved as this generation's snapshot when possible."""
        import numpy as np

        rows = db.execute("SELECT id, vector FROM items ORDER BY id").fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(-1, DIMENSIONS)
        vectors_path, ids_path = self._snapshot_paths(generation)
        try:  # only a fast path: a read-only library works without it
            for path, array in ((vectors_path, matrix), (ids_path, ids)):
                tmp = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npy")
                np.save(tmp, array)
                os.replace(tmp, path)
            for old in [*self.home.glob("vectors-*.npy"), *self.home.glob("ids-*.npy"), self.home / "vectors.npz"]:
                if old not in (vectors_path, ids_path):
                    old.unlink(missing_ok=True)
        except OSError:
            pass
        return ids, matrix

    def search(self, query: str, k: int = 5) -> list[LibraryHit]:
        """The ``k`` best matches for ``query``, best first (any score)."""
        import numpy as np

        ids, matrix = self._vectors()
        if len(ids) == 0 or not query.strip():
            return []
        q = self._query_vector(query)
        scores = matrix @ q
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        with self._connect() as db:
            hits = []
            for i in top:
                item = self._item(db, int(ids[i]))
                if item is not None:
                    hits.append(LibraryHit(item, float(scores[i])))
        return hits

    def _query_vector(self, query: str) -> np.ndarray:
        """Embed a query, remembering recent ones (a GRPO group asks the same query many times)."""
        key = " ".join(query.split()).lower()
        with self._lock:
            vector = self._recent.pop(key, None)
            if vector is None:
                vector = self.embedder.encode([query])[0]
            self._recent[key] = vector  # most recent last
            while len(self._recent) > 1024:
                self._recent.pop(next(iter(self._recent)))
            return vector

    def matches(self, query: str, threshold: float | None = None, candidates: int = 5) -> list[LibraryHit]:
        """The matches among the ``candidates`` best that reach the threshold and whose file still
        exists, best first; ``NotFound`` (saying how close the best came) when there is none."""
        limit = self.threshold if threshold is None else threshold
        hits = self.search(query, k=candidates)
        if not hits:
            raise NotFound("the local image library is empty: run `llmi library add --defaults` or `llmi library add FOLDER`")
        good = [hit for hit in hits if hit.score >= limit and Path(hit.item.path).is_file()]
        if good:
            return good
        top = hits[0]
        raise NotFound(
            f"no library image matches {query!r} well enough: best was {top.item.title!r} "
            f"at {top.score:.2f}, under the {limit:.2f} threshold"
        )

    def best(self, query: str, threshold: float | None = None, candidates: int = 5) -> LibraryHit:
        """The best match whose file still exists, if it reaches the threshold; else ``NotFound``."""
        return self.matches(query, threshold, candidates)[0]

    def image(self, item: LibraryItem) -> ImageData:
        """The picture for ``item`` at a size fit to show: SVGs rendered so the longer side is
        ``display_size``, rasters smaller than that scaled up to it (Tux Paint stamps are often
        100-200 pixels), larger ones as they are; PNG, JPEG or WebP; renders cached."""
        path = Path(item.path)
        key = _signature(path) or ""
        cache = self.home / "renders"
        if item.is_svg:
            return render_svg(path, self.display_size, cache, key)
        return fit_raster(path, self.display_size, cache, key)

    def warm_up(self) -> None:
        """Load the index and the encoder now, so the first query costs only itself."""
        if self.exists():
            self._vectors()
            self._query_vector("warm up")

    def stats(self) -> LibraryStats:
        with self._connect() as db:
            items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            roots = tuple(db.execute(
                "SELECT r.path, COUNT(i.id) FROM roots r LEFT JOIN items i ON i.root = r.path GROUP BY r.path ORDER BY r.path"
            ))
            origins = dict(db.execute("SELECT origin, COUNT(*) FROM items GROUP BY origin"))
            svg = db.execute("SELECT COUNT(*) FROM items WHERE lower(path) LIKE '%.svg'").fetchone()[0]
            model = db.execute("SELECT value FROM meta WHERE key = 'model'").fetchone()
        size = sum(f.stat().st_size for f in self.home.rglob("*") if f.is_file())
        return LibraryStats(str(self.home), items, roots, origins, svg, size, model[0] if model else None)

    @staticmethod
    def _item(db: sqlite3.Connection, item_id: int) -> LibraryItem | None:
        row = db.execute(
            "SELECT id, path, caption, title, author, licence, licence_url, origin FROM items WHERE id = ?", (item_id,)
        ).fetchone()
        return LibraryItem(*row) if row else None


def _image_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        if root.suffix.lower() in IMAGE_SUFFIXES:
            yield root
        return
    for dirpath, _dirs, files in os.walk(root, followlinks=False):
        names = set(files)
        for name in sorted(files):
            stem, dot, ext = name.rpartition(".")
            if "." + ext.lower() not in IMAGE_SUFFIXES or not dot:
                continue
            if ext.lower() != "svg" and f"{stem}.svg" in names:
                continue  # Tux Paint ships some stamps as both; the SVG scales
            yield Path(os.path.realpath(os.path.join(dirpath, name)))


def _signature(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    parts = [str(st.st_mtime_ns), str(st.st_size)]
    for sidecar in (path.with_suffix(".txt"), path.with_name(path.name + ".txt")):
        try:
            parts.append(str(sidecar.stat().st_mtime_ns))
        except OSError:
            pass
    return ":".join(parts)


def _like_prefix(path: str) -> str:
    escaped = path.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.rstrip("/") + "/%"
