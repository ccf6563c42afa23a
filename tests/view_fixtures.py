"""Fixtures for the viewer's tests: documents and evaluation runs written with llmi's own writers
(``Document.save``, ``RunDir``), hostile ones included, and the viewer served on loopback."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator, Sequence

import httpx
import pytest

from llmi.document import Credit, Document, Fallback, ImageSegment, TextSegment
from llmi.evaluate.runs import RunDir
from llmi.image import ImageData
from llmi.tags import ImageRequest

# Things a model (or a prompt, a judge, a search result) could write to run a script in the viewer.
XSS_PROSE = (
    "# Hostile <script>window.PWNED='title'</script>\n\n"
    "Intro <script>window.PWNED='prose'</script> and <img src=x onerror=\"window.PWNED='onerror'\"> "
    "[click me](javascript:window.PWNED='link') and <a href=\"javascript:window.PWNED='raw'\">raw link</a> "
    "<iframe src=\"javascript:window.PWNED='iframe'\"></iframe> <svg onload=\"window.PWNED='svg'\"></svg>\n\n"
)
XSS_CODE = "plt.plot([1, 2, 3])\nplt.title(\"<script>window.PWNED='chart'</script><img src=x onerror=alert(1)>\")"
XSS_TEXT = "\"><script>window.PWNED='field'</script><b onmouseover=\"window.PWNED='hover'\">x</b>"


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "iframe", "object", "embed", "base", "meta", "link", "form") and not (
                tag == "meta" or (tag == "link" and dict(attrs).get("rel") == "stylesheet") or tag == "form"):
            self.found.append(f"<{tag}>")
        for name, value in attrs:
            value = (value or "").strip().lower()
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}>")
            if name in ("href", "src", "action", "formaction", "xlink:href") and not value.startswith(
                    ("/", "#", "http://", "https://", "mailto:")):
                self.found.append(f"<{tag} {name}={value[:40]}>")
            if name == "style":
                self.found.append(f"<{tag} style>")


def dangerous(html: str) -> list[str]:
    """The elements and attributes of ``html`` that could run a script or load from elsewhere."""
    parser = _Elements()
    parser.feed(html)
    return parser.found


def red_png(width: int = 240, height: int = 160, color: str = "#ff0000") -> ImageData:
    return ImageData.blank(width, height, color=color)


def request(source: str, description: str, **params: Any) -> ImageRequest:
    return ImageRequest(source, description, params)


def chart_segment(index: int, code: str = "plt.plot([1, 2])", description: str = "a chart", **kw: Any) -> ImageSegment:
    return ImageSegment(index=index, raw=f"<imgen>{{'source': 'code', 'params': {{'code': {code!r}}}}}</imgen>",
                        tool="code", status="ok", request=request("code", description, code=code),
                        image=kw.pop("image", red_png()), backend="sandbox", elapsed=0.08, attempts=1, **kw)


def failed_segment(index: int, tool: str = "search", error: str = "no search backend is configured",
                   error_type: str = "ToolNotConfigured", **kw: Any) -> ImageSegment:
    params = {"query": "a lighthouse"} if tool == "search" else {"prompt": "a lighthouse"}
    return ImageSegment(index=index, raw="<imgen>{'source': 'search'}</imgen>", tool=tool, status="failed",
                        request=kw.pop("request", request(tool, "a lighthouse at dusk", **params)), error=error,
                        error_type=error_type, **kw)


def simple_document(prompt: str = "Draw a chart", *, images: int = 1, failed: int = 0, meta: dict | None = None) -> Document:
    segments: list[Any] = [TextSegment(f"An answer to {prompt}.\n\n")]
    for i in range(images):
        segments.append(chart_segment(i, description=f"chart {i}"))
    for j in range(failed):
        segments.append(failed_segment(images + j))
    return Document(tuple(segments), meta={"prompt": prompt, **(meta or {})})


def hostile_document() -> Document:
    """A document whose every model-written field tries to run a script."""
    credit = Credit(source="Wikimedia Commons", title=XSS_TEXT, page_url="javascript:window.PWNED='credit'",
                    author=XSS_TEXT, licence="CC BY-SA 4.0", licence_url="javascript:window.PWNED='licence'")
    segments = (
        TextSegment(XSS_PROSE),
        chart_segment(0, code=XSS_CODE, description=XSS_TEXT),
        TextSegment("\n\nA found picture:\n\n"),
        ImageSegment(index=1, raw="<imgen>...</imgen>", tool="search", status="ok",
                     request=request("search", "a lighthouse", query=XSS_TEXT), image=red_png(color="#00ff00"),
                     backend="wikimedia", credit=credit, info={"query": XSS_TEXT, "rank": 2}),
        TextSegment("\n\n"),
        ImageSegment(index=2, raw="<imgen>{'source': 'diffusion'}</imgen>", tool="diffusion", status="ok",
                     request=request("diffusion", "a lighthouse", prompt=XSS_TEXT), image=red_png(color="#0000ff"),
                     backend="library", fallback=Fallback("diffusion", "search", XSS_TEXT), cache_hit=True),
        failed_segment(3, error=XSS_TEXT, error_type="BackendError"),
        ImageSegment(index=4, raw="<imgen><script>window.PWNED='raw'</script></imgen>", tool=None, status="failed",
                     error="the tag is not a dict", error_type="TagSyntaxError"),
        TextSegment("\n\n中文的结尾。"),
    )
    return Document(segments, meta={"prompt": f"Tell me {XSS_TEXT}", "writer": XSS_TEXT})


def save(doc: Document, folder: Path) -> Path:
    doc.save(folder, ("json",))
    return folder


def write_run(path: Path, items: Sequence[dict[str, Any]], *, judge: str = "judge-a", sha: str = "b" * 64,
              kind: str = "rubric") -> Path:
    """A rubric-shaped run: ``items`` are ``{key, prompt, scores: [0|1|2|None, ...], tools?, failures?,
    status?}``; each item's document is saved as ``llmi eval`` saves it."""
    run = RunDir(path)
    run.start({"kind": kind, "benchmark": {"path": "bench.json", "sha256": sha, "items": len(items), "limit": None},
               "answers": {"name": "given answers"}, "judge": {"model": judge}, "seed": 0})
    try:
        for i, item in enumerate(items):
            key = item["key"]
            record: dict[str, Any] = {"key": key, "index": i, "prompt": item["prompt"], "seconds": 1.0 + i,
                                      "finished": "2026-12-01T00:00:00+0000"}
            if item.get("status") == "error":
                record.update(status="error", error="the writer is unreachable", error_type="WriterError")
                run.append(record)
                continue
            doc = simple_document(item["prompt"], images=item.get("images", 1), failed=item.get("failed", 0))
            folder = run.item_dir(key)
            save(doc, folder)
            criteria = [{"name": f"r{n + 1}", "text": f"criterion {n + 1}", "max": 2, "score": s,
                         "justification": item.get("why", f"because {n}")}
                        | ({"error": "the judge's reply holds no JSON object", "error_type": "InvalidReply"} if s is None else {})
                        for n, s in enumerate(item["scores"])]
            valid = [s for s in item["scores"] if s is not None]
            failures = [{"index": s.index, "tool": s.tool, "error_type": s.error_type, "error": s.error}
                        for s in doc.image_segments if not s.ok]
            record.update(
                status="ok", doc=(folder / "document.json").relative_to(path).as_posix(),
                images={"tags": len(doc.image_segments), "made": len(doc.images)},
                tools={t: {"total": r["total"], "success": r["success"]} for t, r in doc.stats().items() if r["total"]},
                image_failures=failures, timing={"write": 0.0, "tools": 0.5, "judge": 0.2}, criteria=criteria,
                valid=len(valid), total=sum(valid), score=sum(valid) / (2 * len(valid)) if valid else None,
            )
            run.append(record)
    finally:
        run.close()
    return path


def standard_items(n: int = 6) -> list[dict[str, Any]]:
    """Items with a spread of scores, tools, judge failures and one failed item."""
    items = []
    for i in range(n):
        items.append({"key": f"item-{i}", "prompt": f"Question number {i} about {'owls' if i % 2 else 'rivers'}",
                      "scores": [i % 3, (i + 1) % 3, None if i == 3 else 2], "failed": 1 if i % 2 else 0})
    items[-1] = {**items[-1], "status": "error"}
    return items


class Viewer:
    """The viewer served on loopback with an HTTP client."""

    def __init__(self, root: Path) -> None:
        from llmi.view.server import ViewServer

        self.server = ViewServer(root, port=0)
        self.server.__enter__()
        self.url = self.server.url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=30)

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.http.get(path, **kw)

    def raw(self, path: str, host: str | None = None) -> tuple[int, str]:
        """GET ``path`` exactly as written (no client tidies ``..`` away): (status, body)."""
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        try:
            conn.putrequest("GET", path, skip_host=True)
            conn.putheader("Host", host or f"127.0.0.1:{self.server.port}")
            conn.endheaders()
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def close(self) -> None:
        self.http.close()
        self.server.__exit__(None, None, None)


@pytest.fixture
def viewer() -> Iterator[Any]:
    """A factory: ``viewer(root)`` serves ``root``; every server is stopped after the test."""
    started: list[Viewer] = []

    def start(root: Path) -> Viewer:
        started.append(Viewer(root))
        return started[-1]

    yield start
    for v in started:
        v.close()
