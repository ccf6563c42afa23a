"""Fixtures for the viewer's tests: documents and evaluation runs written with llmi's own writers
(``Document.save``, ``RunDir``), hostile ones included, and the viewer served on loopback."""

from __future__ import annotations

import json
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


def scaling_record() -> dict[str, Any]:
    """A ``meta["scaling"]`` record as ``llmi generate --scale 3`` writes it (docs/scaling.md), with
    model-written text that tries to run scripts."""
    cost = {"seconds": 1.25, "writer_calls": 1, "writer_tokens": 120, "prompt_tokens": 900, "tool_calls": 2,
            "judge_calls": 0}
    candidates = [
        {"index": 0, "seed": 7, "status": "valid", "error": None, "problems": [], "satisfies_image_num": True,
         "score": 0.62, "scores": {"judgings": [{"score": 0.6, "llm_score": 0.5}, {"score": 0.64, "llm_score": 0.55}]},
         "cost": cost, "answer": f"Owls hunt at night. {XSS_TEXT}\n<imgen>{{'source': 'search', ...}}</imgen>",
         "images": [{"tag": 0, "tool": "search", "status": "failed", "description": "an owl", "error_type": "NotFound",
                     "error": "nothing found"}]},
        {"index": 1, "seed": 8, "status": "dropped", "error": None, "problems": [f"tag 0 cannot be read: {XSS_TEXT}"],
         "satisfies_image_num": False, "score": None, "scores": {}, "cost": cost, "answer": "<script>window.PWNED=1</script>",
         "images": []},
        {"index": 2, "seed": 9, "status": "failed", "error": "the writer is unreachable", "problems": [],
         "satisfies_image_num": False, "score": None, "scores": {}, "cost": {"seconds": 0.1}},
    ]
    return {
        "version": "llmi.scaling/1",
        "config": {"n": 3, "select": "tournament", "seed": 7},
        "candidates": candidates,
        "selection": {"chosen": 0, "method": "tournament", "reason": f"won every match {XSS_TEXT}", "pool": [0],
                      "matches": [{"a": 0, "b": 2, "winner": 0, "verdicts": ["a", None], "decided_by": "rules",
                                   "reason": "the judge contradicted itself"}], "ranking": [0, 2, 1]},
        "enhancements": [
            {"tag": 0, "kind": "search_query", "attempt": 1, "before": "owl", "after": "a barn owl in flight",
             "outcome": "fixed", "kept": True, "error_before": "nothing found", "error_after": None},
            {"tag": 1, "kind": "code_repair", "attempt": 1, "before": "plt.plot(x)",
             "after": "x = [1, 2]\nplt.plot(x)\nplt.title('<script>window.PWNED=2</script>')", "outcome": "failed",
             "kept": False, "error_before": "NameError: name 'x' is not defined", "error_after": XSS_TEXT},
        ],
        "polish": {"status": "reverted", "segments": [{"segment": 0, "before": "Owls hunt.", "after": f"Owls, {XSS_TEXT}",
                                                      "status": "revised"}]},
        "stages": [{"name": "sample", "summary": "3 candidates, 1 failed", "cost": cost},
                   {"name": "select", "summary": "a tournament of 1 match", "cost": {"seconds": 0.5, "judge_calls": 2}}],
        "cost": {**cost, "seconds": 4.0, "judge_calls": 2},
        "scores": {"selected": 0.62, "before_polish": 0.64, "polished": 0.6, "final": 0.64},
        "answers": {"selected": "Owls hunt at night.", "enhanced": "Owls hunt at night!", "final": "Owls hunt at night!"},
        "notes": [f"the polish was reverted: it scored lower {XSS_TEXT}"],
    }


def write_training(path: Path, steps: int = 6, *, samples_at: Sequence[int] = (1, 5), model: str = "SmolLM2-135M",
                   extra_lines: Sequence[str] = ()) -> Path:
    """A training run laid out as ``llmi train grpo`` leaves it (docs/training.md):
    ``llmi-train.json``, ``metrics.jsonl`` (a line per step, an evaluation, the closing summary)
    and ``samples/step-NNNNNN/sample-I/`` (a best and a worst document; one sample with only its page)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "llmi-train.json").write_text(json.dumps({
        "train_files": ["data/train.parquet"], "output_dir": str(path), "model": model, "loss": "dapo",
        "rewards": [["combined", 1.0]], "num_generations": 4, "prompts_per_step": 2, "max_steps": steps,
        "learning_rate": 1e-5, "lora": True, "generation": "llama-cpp", "samples_every": 4, "seed": 0}))
    lines = []
    for step in range(1, steps + 1):
        lines.append({"step": step, "loss": 0.05 / step, "grad_norm": 0.3, "learning_rate": 1e-5 * (1 - step / (steps + 1)),
                      "reward": 0.2 + 0.1 * step, "reward_std": 0.1, "rewards/combined/mean": 0.2 + 0.1 * step,
                      "completions/mean_length": 120.0, "tags/well_formed": min(1.0, 0.4 + 0.1 * step),
                      "tags/answers_with_tags": 0.75, "tags/answers_well_formed": 0.5, "tags/images_ok": 0.6,
                      "time/step": 12.5, "time/generation": 8.0, "time/rewards": 3.0, "time/tools": 2.0,
                      "time/judges": 1.0, "time/optimisation": 1.5})
        if step == steps // 2:
            lines.append({"step": step, "eval_reward": 0.4, "eval_loss": 0.04, "eval_tags/well_formed": 0.7})
    lines.append({"step": steps, "train_runtime": 75.0, "train_samples_per_second": 0.6, "train_loss": 0.02})
    text = "".join(json.dumps(line) + "\n" for line in lines) + "".join(f"{line}\n" for line in extra_lines)
    (path / "metrics.jsonl").write_text(text)
    for step in samples_at:
        folder = path / "samples" / f"step-{step:06d}"
        save(simple_document(f"Explain photosynthesis (best at step {step})", images=1), folder / "sample-0")
        save(simple_document(f"Explain photosynthesis (worst at step {step})", images=0, failed=1), folder / "sample-3")
        (folder / "sample-5").mkdir(parents=True)
        (folder / "sample-5" / "index.html").write_text("<!doctype html><p>a page only</p>")
        (folder / "index.html").write_text("<!doctype html><table></table>")
    return path
