"""The viewer's index and stores: what a folder holds, read lazily, cached by modification time,
and never a step outside the folder."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from view_fixtures import dangerous, hostile_document, save, simple_document, standard_items, write_run

from llmi.view import index as index_module
from llmi.view.documents import DocumentStore, document_page, image_file, read_document_entry
from llmi.view.evals import ItemQuery, RunStore, compare_runs, filter_rows, read_eval_entry
from llmi.view.index import Index, NotThere, Unreadable


def touch(path: Path, seconds_ago: float) -> None:
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


class CountingReaders(dict):
    """The default readers, counting how often each folder is read."""

    def __init__(self) -> None:
        super().__init__(document=self._doc, eval=self._eval)
        self.reads: list[str] = []

    def _doc(self, folder: Path, rel: str):
        self.reads.append(rel)
        return read_document_entry(folder, rel)

    def _eval(self, folder: Path, rel: str):
        self.reads.append(rel)
        return read_eval_entry(folder, rel)


def test_finds_documents_and_runs_newest_first_without_entering_them(tmp_path: Path) -> None:
    save(simple_document("Old prompt"), tmp_path / "docs" / "old")
    save(simple_document("New prompt about owls"), tmp_path / "docs" / "new")
    write_run(tmp_path / "runs" / "r1", standard_items(3))
    touch(tmp_path / "docs" / "old" / "document.json", 3600)
    touch(tmp_path / "runs" / "r1" / "results.jsonl", 60)
    touch(tmp_path / "runs" / "r1" / "config.json", 120)
    entries = Index(tmp_path).entries()
    # the run's own item documents (runs/r1/items/...) are part of the run, not entries of their own
    assert [(e.kind, e.id) for e in entries] == [("document", "docs/new"), ("eval", "runs/r1"), ("document", "docs/old")]
    new, run, _ = entries
    assert new.title == "New prompt about owls" and ("images", "1: 1 made, 0 failed") in new.facts
    assert run.title == "llmi eval rubric: bench.json" and ("items", "3 of 3") in run.facts
    idx = Index(tmp_path, readers := CountingReaders())
    assert [f.id for f in idx.search("", ["eval"])] == ["runs/r1"] and readers.reads == []  # nothing read
    assert [f.id for f in idx.search("OWLS")] == ["docs/new"] and len(readers.reads) == 3
    assert [f.id for f in idx.search("prompt new")] == ["docs/new"] and len(readers.reads) == 3  # read once


def test_reads_each_file_once_and_again_only_when_it_changes(tmp_path: Path) -> None:
    for i in range(5):
        save(simple_document(f"prompt {i}"), tmp_path / f"d{i}")
    readers = CountingReaders()
    idx = Index(tmp_path, readers)
    assert len(idx.entries()) == 5 and len(readers.reads) == 5
    idx.entries()
    assert len(readers.reads) == 5  # nothing changed: nothing read
    save(simple_document("prompt 2, rewritten"), tmp_path / "d2")
    save(simple_document("a sixth"), tmp_path / "d5")
    (tmp_path / "d0" / "document.json").unlink()
    titles = {e.id: e.title for e in idx.entries()}
    assert sorted(readers.reads[5:]) == ["d2", "d5"]
    assert titles["d2"] == "prompt 2, rewritten" and "d5" in titles and "d0" not in titles


def test_a_run_is_reread_when_results_are_appended(tmp_path: Path) -> None:
    write_run(tmp_path / "run", standard_items(2))
    store = RunStore(tmp_path)
    first = store.get("run")
    assert store.get("run") is first
    with open(tmp_path / "run" / "results.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"key": "late", "index": 9, "status": "ok", "score": 1.0}) + "\n")
    again = store.get("run")
    assert again is not first and [r.key for r in again.rows][-1] == "late"
    assert Index(tmp_path).entries()[0].facts[0] == ("items", "3 of 2")


def test_the_walk_stays_inside_the_folder(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    save(simple_document("secret outside"), outside / "doc")
    save(simple_document("inside"), root / "doc")
    (root / "link").symlink_to(outside, target_is_directory=True)
    save(simple_document("hidden"), root / ".cache" / "doc")
    save(simple_document("in images"), root / "doc2" / "images" / "nested")
    assert [e.title for e in Index(root).entries()] == ["inside"]
    store = DocumentStore(root)
    for rel in ("../outside/doc", "link/doc", "/etc", "doc/../../outside/doc", "doc\x00"):
        with pytest.raises(NotThere):
            store.get(rel)


def test_a_huge_tree_is_cut_off_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "MAX_FOLDERS", 5)
    for i in range(10):
        (tmp_path / f"empty-{i}").mkdir()
    idx = Index(tmp_path)
    idx.entries()
    assert idx.truncated
    monkeypatch.setattr(index_module, "MAX_DEPTH", 2)
    monkeypatch.setattr(index_module, "MAX_FOLDERS", 1000)
    deep = tmp_path / "a" / "b" / "c" / "d"
    save(simple_document("deep"), deep)
    idx = Index(tmp_path)
    assert "deep" not in [e.title for e in idx.entries()] and idx.truncated


@pytest.mark.parametrize("content, reason, listed", [
    (b"{not json", "not valid JSON", True),
    (b"[1, 2]", "does not hold a JSON object", True),
    (json.dumps({"version": "llmi.document/9", "segments": []}).encode(), "unsupported document.json version", True),
    (json.dumps({"version": "llmi.document/1", "segments": "text"}).encode(), "not a list of objects", True),
    (b"\xff\xfe garbage", "not valid JSON", True),
    # the list reads a document lightly; its page reads it whole and finds the rest
    (json.dumps({"version": "llmi.document/1", "segments": [{"type": "image"}]}).encode(), "does not follow", False),
])
def test_a_broken_document_is_listed_with_the_reason_and_refused_politely(tmp_path: Path, content: bytes,
                                                                        reason: str, listed: bool) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "document.json").write_bytes(content)
    save(simple_document("fine"), tmp_path / "good")
    entries = {e.id: e for e in Index(tmp_path).entries()}
    assert entries["good"].problem is None
    assert (reason in (entries["bad"].problem or "")) is listed
    with pytest.raises(Unreadable, match=reason.split()[0]):
        DocumentStore(tmp_path).get("bad")


def test_a_run_folder_that_is_not_llmi_s_is_refused(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"kind": "something-else"}))
    (tmp_path / "other" / "results.jsonl").write_text("")
    with pytest.raises(Unreadable, match="not an llmi evaluation run"):
        RunStore(tmp_path).get("other")
    (tmp_path / "other" / "config.json").write_text("[]")
    assert "configuration object" in (Index(tmp_path).entries()[0].problem or "")


def test_pictures_are_served_only_from_the_document_s_folder_and_only_as_pictures(tmp_path: Path) -> None:
    folder = save(simple_document(images=3), tmp_path / "doc")
    (tmp_path / "secret.png").write_bytes((folder / "images" / "image-0.png").read_bytes())
    data = json.loads((folder / "document.json").read_text())
    images = [s for s in data["segments"] if s["type"] == "image"]
    images[1]["path"] = "../secret.png"
    (folder / "images" / "page.png").write_text("<script>alert(1)</script>")  # a web page named .png
    images[2]["path"] = "images/page.png"
    (folder / "document.json").write_text(json.dumps(data))
    loaded = DocumentStore(tmp_path).get("doc")
    path, media = image_file(loaded, tag=0)
    assert media == "image/png" and path.name == "image-0.png"
    with pytest.raises(NotThere, match="not in the document's folder"):
        image_file(loaded, tag=1)
    with pytest.raises(NotThere, match="not a picture"):
        image_file(loaded, tag=2)
    for bad in ({"tag": 3}, {"tag": -1}, {"input": 0}):
        with pytest.raises(NotThere):
            image_file(loaded, **bad)


def test_the_document_page_escapes_every_model_written_field(tmp_path: Path) -> None:
    save(hostile_document(), tmp_path / "doc")
    page = document_page(DocumentStore(tmp_path).get("doc"))
    from llmi.view import pages

    html = pages.render("document.html", page=page, scaling=None, root="r", root_name="r")
    assert dangerous(html) == []
    assert "&lt;script&gt;window.PWNED=&#39;field&#39;&lt;/script&gt;" in html  # shown, as text
    assert '<span class="s2">"&lt;script&gt;window.PWNED' in html  # chart code highlighted, escaped
    assert "中文的结尾" in html and len(page.figures) == 5


def _rows(tmp_path: Path):
    write_run(tmp_path / "run", standard_items(6))
    return RunStore(tmp_path).get("run")


def test_the_item_table_filters_by_score_criterion_tool_and_failure(tmp_path: Path) -> None:
    run = _rows(tmp_path)
    keys = lambda **q: [r.key for r in filter_rows(run.rows, ItemQuery(**q))]  # noqa: E731
    assert keys() == [f"item-{i}" for i in range(6)]
    assert keys(status="error") == ["item-5"]
    assert keys(q="owls") == ["item-1", "item-3", "item-5"]
    assert keys(min=0.6) == ["item-1", "item-2", "item-4"] and keys(max=0.5) == ["item-0", "item-3"]
    assert keys(criterion="r1", cscore="0") == ["item-0", "item-3"]
    assert keys(criterion="r3", cscore="failed") == ["item-3"]
    assert keys(tool="search:failed") == ["item-1", "item-3"] and keys(tool="code") == [f"item-{i}" for i in range(5)]
    assert keys(failure="judge · r3 · InvalidReply") == ["item-3"]
    assert keys(failure="item · WriterError") == ["item-5"]
    assert keys(failure="image · search · ToolNotConfigured") == ["item-1", "item-3"]
    # sorting: by score, unscored items last whichever the direction
    assert keys(sort="score", desc=True)[:3] == ["item-1", "item-4", "item-2"] and keys(sort="score")[-1] == "item-5"
    assert keys(sort="crit:r2", desc=True)[:2] == ["item-1", "item-4"]
    assert dict(run.failures)["image · search · ToolNotConfigured"] == 2 and run.criteria == ("r1", "r2", "r3")


def test_two_runs_compare_item_by_item(tmp_path: Path) -> None:
    a_items = standard_items(4)
    b_items = [{**it, "scores": [2, 2, 2]} for it in standard_items(4)[1:]] + [
        {"key": "only-b", "prompt": "new", "scores": [0]}]
    write_run(tmp_path / "a", a_items)
    write_run(tmp_path / "b", b_items, judge="judge-b", sha="c" * 64)
    store = RunStore(tmp_path)
    c = compare_runs(store.get("a"), store.get("b"))
    pairs = {p.key: p for p in c.pairs}
    assert pairs["item-0"].b is None and pairs["only-b"].a is None
    assert pairs["item-1"].delta == pytest.approx(1.0 - 5 / 6)
    assert any("different benchmark" in w for w in c.warnings) and any("different judges" in w for w in c.warnings)
    assert dict(c.headline)["only in A / only in B"] == "1 / 1"
