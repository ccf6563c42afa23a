"""The viewer over HTTP: the real app under uvicorn on loopback, as a browser (or an attacker)
talks to it; and ``llmi view`` as a user starts it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from view_fixtures import (
    dangerous, hostile_document, save, scaling_record, simple_document, standard_items, viewer, write_run,  # noqa: F401
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    save(hostile_document(), tmp_path / "docs" / "hostile")
    save(simple_document("A calm prompt about rivers", images=2, failed=1), tmp_path / "docs" / "calm")
    write_run(tmp_path / "runs" / "a", standard_items(6))
    write_run(tmp_path / "runs" / "b", [{**it, "scores": [2, 2, 2]} for it in standard_items(6)])
    return tmp_path


def test_every_response_forbids_scripts_and_foreign_resources(folder: Path, viewer) -> None:
    v = viewer(folder)
    responses = [v.get(p) for p in ("/", "/doc/docs/hostile", "/img/docs/hostile?tag=0", "/static/view.css",
                                    "/eval/runs/a", "/item/runs/a?key=item-1", "/compare?a=runs/a&b=runs/b",
                                    "/compare/item?a=runs/a&b=runs/b&key=item-2", "/no/such/page", "/doc/nothing",
                                    "/eval/runs/a?min=abc", "/favicon.ico")]
    responses.append(v.http.post("/"))
    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200, 200, 200, 200, 200, 200, 404, 404, 400, 204, 405]
    for r in responses:
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src" not in csp  # no script source at all
        assert "img-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "no-referrer"
    for r in responses:
        if r.headers.get("content-type", "").startswith("text/html"):
            assert dangerous(r.text) == [], r.url
            assert "<script" not in r.text


def test_model_text_is_shown_as_text(folder: Path, viewer) -> None:
    page = viewer(folder).get("/doc/docs/hostile").text
    assert "&lt;script&gt;window.PWNED=&#39;prose&#39;&lt;/script&gt;" in page
    assert "[click me](javascript:window.PWNED=&#39;link&#39;)" in page  # a link that is not one
    assert 'href="/img' not in page and 'src="/img/docs/hostile?tag=0"' in page
    assert page.count('class="panel image') == 5 and "TagSyntaxError" in page and "diffusion → search" in page


@pytest.mark.parametrize("path", [
    "/doc/..%2F..%2Fetc", "/doc/%2e%2e/%2e%2e/etc", "/doc/docs/../../../etc", "/doc/../../etc", "/doc//etc",
    "/doc/docs%00", "/doc/%2Fetc", "/doc/docs/hostile/../../../outside",
    "/img/..%2Foutside?tag=0", "/eval/..%2F..", "/item/%2Fetc?key=x", "/doc/link-out",
    "/compare?a=..%2F..&b=runs/a", "/img/docs/hostile?tag=99", "/img/docs/hostile", "/img/docs/hostile?tag=0&input=0",
])
def test_addresses_outside_the_folder_are_not_found(folder: Path, viewer, path: str, tmp_path_factory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    save(simple_document("secret"), outside / "doc")
    (folder / "link-out").symlink_to(outside / "doc", target_is_directory=True)
    status, body = viewer(folder).raw(path)
    assert status in (400, 404) and "secret" not in body


def test_a_foreign_host_name_is_refused(folder: Path, viewer) -> None:
    v = viewer(folder)
    # a page on another site whose name was rebound to 127.0.0.1 cannot read the folder
    assert v.get("/", headers={"host": "attacker.example"}).status_code == 400
    assert v.get("/", headers={"host": f"localhost:{v.server.port}"}).status_code == 200


def test_the_search_query_is_escaped_where_it_is_shown(folder: Path, viewer) -> None:
    q = "\"><script>window.PWNED='q'</script>"
    page = viewer(folder).get("/", params={"q": q}).text
    assert dangerous(page) == [] and "&#34;&gt;&lt;script&gt;" in page and "0 found for" in page


def test_the_eval_page_filters_sorts_and_pages(folder: Path, viewer) -> None:
    v = viewer(folder)

    def keys(**params) -> list[str]:
        page = v.get("/eval/runs/a", params=params).text
        return re.findall(r'<td><a href="/item/runs/a\?key=([^"]+)">', page)

    assert keys() == [f"item-{i}" for i in range(6)]
    assert keys(criterion="r3", cscore="failed") == ["item-3"]
    assert keys(tool="search:failed", sort="score", desc="true") == ["item-1", "item-3"]
    assert keys(failure="item · WriterError") == ["item-5"]
    assert keys(q="owls", min="0.5") == ["item-1"]
    assert keys(q="owls", min="", max=" ", criterion="") == ["item-1", "item-3", "item-5"]  # a form's empty boxes
    page = v.get("/eval/runs/a").text
    assert "benchmark score (mean item score, 0-1)" in page and "<svg" in page and "Item scores" in page
    many = [{"key": f"k{i:04d}", "prompt": f"p {i}", "scores": [i % 3], "images": 0} for i in range(450)]
    write_run(folder / "runs" / "big", many)
    first = v.get("/eval/runs/big").text
    assert "page 1 of 3" in first and first.count('<tr class="ok">') == 200
    last = v.get("/eval/runs/big", params={"page": 3}).text
    assert "page 3 of 3" in last and last.count('<tr class="ok">') == 50 and "k0449" in last


def test_an_item_page_shows_its_document_scores_and_neighbours(folder: Path, viewer) -> None:
    v = viewer(folder)
    page = v.get("/item/runs/a", params={"key": "item-1"}).text
    assert "Question number 1 about owls" in page and "because 0" in page and 'rel="prev"' in page
    assert 'src="/img/runs/a/items/item-1?tag=0"' in page
    assert v.get("/img/runs/a/items/item-1", params={"tag": 0}).headers["content-type"] == "image/png"
    assert "judge failure (InvalidReply)" in v.get("/item/runs/a", params={"key": "item-3"}).text
    failed = v.get("/item/runs/a", params={"key": "item-5"}).text
    assert "could not be evaluated (WriterError)" in failed and "no document" in failed
    assert v.get("/item/runs/a", params={"key": "nope"}).status_code == 404


def test_two_runs_side_by_side(folder: Path, viewer) -> None:
    v = viewer(folder)
    page = v.get("/compare", params={"a": "runs/a", "b": "runs/b", "show": "better", "sort": "delta", "desc": "true"}).text
    rows = re.findall(r"<td>(item-\d)</td>", page)
    assert rows[:2] == ["item-3", "item-0"] and "item-5" not in rows and "B better / equal / A better" in page
    side = v.get("/compare/item", params={"a": "runs/a", "b": "runs/b", "key": "item-1"}).text
    assert side.count('class="side"') == 2 and 'id="a-image-1"' in side and 'id="b-image-1"' in side


def test_llmi_view_prints_its_address_and_serves_the_folder(folder: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "llmi", "view", str(folder / "docs" / "calm"), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(lines)
        url = re.search(r"http://127\.0\.0\.1:\d+/\S*", text).group(0)  # type: ignore[union-attr]
        assert "(1 document)" in text and url.endswith("/doc/")  # the folder is one document: its address
        page = httpx.get(url, timeout=30)
        assert page.status_code == 200 and "A calm prompt about rivers" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 0


def test_llmi_view_says_what_is_wrong(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-m", "llmi", "view", str(tmp_path / "missing")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 2 and "is not a folder" in proc.stderr


def test_a_scaling_record_shows_its_candidates_side_by_side_and_every_stage(tmp_path: Path, viewer) -> None:
    save(simple_document("Owls at night", meta={"scaling": scaling_record()}), tmp_path / "scaled")
    save(simple_document("Plain"), tmp_path / "plain")
    v = viewer(tmp_path)
    listed = v.get("/", params={"kind": "scaling"}).text
    assert "Owls at night" in listed and "Plain" not in listed and "candidates: 3" in listed
    page = v.get("/doc/scaled").text
    assert dangerous(page) == []
    assert page.count('<article class="candidate') == 3 and 'class="candidate valid chosen"' in page
    assert "chosen by <strong>tournament</strong>" in page and "0 vs 2" in page and "a, none" in page
    assert "the judge contradicted itself" in page and "search query" in page and "a barn owl in flight" in page
    assert "not kept: the tag as the model wrote it stays" in page  # the failed chart repair
    assert '<div class="hl">' in page and "&lt;script&gt;window.PWNED=2&lt;/script&gt;" in page
    assert "Polish: reverted" in page and "reward, before polish" in page and "4.00 s" in page
    assert "the writer is unreachable" in page and "tag 0 cannot be read" in page
    assert "scaling" not in re.findall(r"<dt>([^<]+)</dt>", page)  # not repeated as a metadata row
