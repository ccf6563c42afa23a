"""The run report: self-contained, every item with its document and scores, everything the model
or the judge wrote escaped or sanitised, and a strict Content-Security-Policy (checked in a real
browser where one is installed)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import shutil

import pytest
from eval_fixtures import ScriptedJudge

from llmi.engine import Engine
from llmi.evaluate.answers import GivenAnswers
from llmi.evaluate.job import aevaluate, finish_run
from llmi.evaluate.rubric import RubricBenchmark
from llmi.evaluate.runs import RunDir
from llmi.testing import LatencyTool

HOSTILE_PROMPT = "Draw <script>window.pwned = 'prompt'</script> a cat & a dog"
HOSTILE_ANSWER = ("**Bold** <script>window.pwned = 'answer'</script> [x](javascript:window.pwned='link') "
                  "<img src=x onerror=\"window.pwned='img'\">\n"
                  "<imgen>{'source': 'search', 'description': 'a \"cat\" <b>', 'params': {'query': 'cat'}}</imgen>\n"
                  "<imgen>{'source': 'diffusion', 'description': 'broken', 'params': {'prompt': 'x'}}</imgen>")
HOSTILE_WHY = "</td></tr></table><script>window.pwned = 'judge'</script><img src=x onerror=\"window.pwned='why'\">"


@pytest.fixture
def hostile_run(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps([
        {"prompt": HOSTILE_PROMPT, "r1": "Has <b onmouseover=\"window.pwned='criterion'\">a cat</b>", "r2": "Kind."},
        {"prompt": "Second", "r1": "x", "images": ["missing.png"]},
    ]))
    engine = Engine({"search": LatencyTool("search", latency=0.0)})
    judge = ScriptedJudge(lambda s, u, schema: json.dumps({"score": 1, "justification": HOSTILE_WHY}))
    answers = GivenAnswers.parse([HOSTILE_ANSWER, "unused"], engine=engine)
    result = asyncio.run(aevaluate(RubricBenchmark(bench), tmp_path / "run", answers=answers, judge=judge))
    engine.close()
    return result


def test_report_is_self_contained_and_escapes_everything(hostile_run):
    html = hostile_run.report.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert not re.search(r"<img[^>]+onerror", html, re.I) and 'href="javascript' not in html.lower()
    assert "onmouseover=" not in html.replace("onmouseover=&quot;", "")  # only as escaped text
    assert "&lt;script&gt;window.pwned = &#x27;prompt&#x27;&lt;/script&gt;" in html
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;/table&gt;" in html
    assert "<strong>Bold</strong>" in html  # the answer's Markdown is rendered, then sanitised
    # no external resource: every src is a data: URI, the CSP says so and hashes the one style block
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]+)"', html))
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "img-src data:" in csp and "script-src" not in csp
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp and html.count("<style>") == 1
    # every item, its scores and its document; the plots; the configuration
    assert html.count('<details class="item') == 2 and 'class="item error"' in html
    assert "Figure 2 could not be made" in html and "<svg" in html and "Item scores" in html
    assert "&quot;kind&quot;: &quot;rubric&quot;" in html


def test_report_is_rewritten_from_the_records_alone(hostile_run):
    run = RunDir(hostile_run.run.path)
    hostile_run.report.unlink()
    summary, path = finish_run(run)
    assert path.is_file() and dict(summary.headline)["items scored"] == "1 of 2"
    shutil.rmtree(run.path / "items")  # the documents are gone: the report says so, and still shows scores
    _, path = finish_run(run)
    html = path.read_text(encoding="utf-8")
    assert "The document is missing" in html and "1/2" in html


def test_report_in_a_real_browser(hostile_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        messages: list[str] = []
        page.on("console", lambda m: messages.append(m.text))
        page.goto(hostile_run.report.as_uri())
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        for el in page.query_selector_all("img, a, b"):
            try:
                el.hover(timeout=200)
            except Exception:  # noqa: BLE001 - hidden elements cannot be hovered; that is fine
                pass
        pwned = page.evaluate("window.pwned")
        images = page.evaluate("Array.from(document.images).map(i => i.naturalWidth)")
        background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        browser.close()
    assert pwned is None
    assert images and all(w > 0 for w in images)  # the embedded pictures load
    assert background in ("rgb(255, 255, 255)", "rgb(13, 17, 23)")  # the hashed stylesheet applied
    assert not [m for m in messages if "Content Security Policy" in m or "Refused" in m], messages


def test_report_command_prints_the_summary_as_json(hostile_run):
    from click.testing import CliRunner

    from llmi.cli import main

    result = CliRunner().invoke(main, ["eval", "report", str(hostile_run.run.path), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["kind"] == "rubric" and ["items scored", "1 of 2"] in summary["headline"]
    assert {t["title"] for t in summary["tables"]} >= {"Per criterion", "Tool calls", "Failures"}
