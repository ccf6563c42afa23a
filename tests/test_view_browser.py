"""The viewer in a real browser: Debian's Chromium driven by Playwright (never a downloaded
browser), against ``llmi view`` serving what ``llmi generate``, ``llmi render`` and ``llmi eval``
wrote.

A user opens a document and an image's panel, filters an evaluation table, compares two runs,
opens a training run's curves and a step's sample documents;
screenshots are not blank; and nothing a model, a judge or a search query wrote runs: every
hostile script would set ``window.PWNED`` or open a dialog, and the tests watch both, the
console and the DOM.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from view_fixtures import XSS_TEXT, hostile_document, save, write_run, write_training

from llmi.testing import LatencyChatServer

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LAUNCH_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)")

HOSTILE_ANSWER = (
    "# Charts <script>window.PWNED='heading'</script>\n\n"
    "Some <b onmouseover=\"window.PWNED='hover'\">bold</b> text and [a link](javascript:window.PWNED='md') "
    "<img src=x onerror=\"window.PWNED='img'\">.\n\n"
    "<imgen>{'source': 'code', 'description': 'Squares <script>window.PWNED=1</script>', 'params': {'code': "
    "'plt.bar([1, 2, 3, 4, 5], [1, 4, 9, 16, 25], color=\"#1f77b4\")\\nplt.title(\"<script>alert(1)</script>\")'}}</imgen>\n\n"
    "And a photo: <imgen>{'source': 'search', 'description': 'a lighthouse', 'params': "
    "{'query': '<img src=x onerror=alert(2)>'}}</imgen>\n"
)


def llmi(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LLMI_SEARCH_BACKEND": "none"}
    proc = subprocess.run([sys.executable, "-m", "llmi", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"llmi {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def judge_reply(body: dict[str, Any]) -> str:
    """Criterion r2 always fails the JSON (a judge failure), the others score by item."""
    text = json.dumps(body["messages"])
    if "placed next to the text" in text or "names the wettest month" in text:
        return "I cannot decide <script>window.PWNED='judge'</script>"
    score = 2 if "water cycle" in text else 0
    return json.dumps({"score": score, "justification": f"score {score} <script>window.PWNED='why'</script>"})


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as a user's would be after llmi generate, llmi render and llmi eval."""
    root = tmp_path_factory.mktemp("made")
    answer = root / "answer.txt"
    answer.write_text(HOSTILE_ANSWER, encoding="utf-8")
    llmi("render", str(answer), "--out", str(root / "rendered"), "-q")
    llmi("generate", "Tell me about kangaroos", "--seed", "1", "--max-tokens", "64", "--out", str(root / "generated"),
         "-q")
    with LatencyChatServer(0.0, respond=judge_reply) as judge:
        llmi("eval", "rubric", "--bench", str(ROOT / "examples" / "rubric-bench.json"), "--answers",
             str(ROOT / "examples" / "rubric-answers.json"), "--judge-base-url", judge.base_url,
             "--out", str(root / "runs" / "first"), "-q")
    # the same benchmark judged again, kinder: the second run to compare with
    first = [json.loads(line) for line in (root / "runs" / "first" / "results.jsonl").read_text().splitlines()]
    write_run(root / "runs" / "second", [{"key": r["key"], "prompt": r["prompt"], "scores": [2, 2, 1]} for r in first])
    save(hostile_document(), root / "hostile")
    write_training(root / "train" / "grpo", model=XSS_TEXT)  # laid out as llmi train grpo leaves a run
    return root


@pytest.fixture(scope="module")
def served(made: Path) -> Iterator[str]:
    """``llmi view`` on the folder, as a user starts it; its printed address."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "llmi", "view", str(made), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        printed = ""
        for line in proc.stdout:  # type: ignore[union-attr]
            printed += line
            if "Ctrl-C" in line:
                break
        match = re.search(r"http://127\.0\.0\.1:\d+/", printed)
        assert match, printed + (proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        assert "3 documents, 2 evaluations, 1 training run" in printed
        yield match.group(0).rstrip("/")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_FLAGS)
        yield b
        b.close()


class Watched:
    """A page whose dialogs, console messages and page errors are recorded."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000})
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.console: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.console.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def pwned(self) -> Any:
        """What a hostile script would have left behind (evaluated by the test, not the page)."""
        return self.page.evaluate("window.PWNED")

    def dom_problems(self) -> list[str]:
        return self.page.evaluate("""() => {
            const out = [];
            document.querySelectorAll('script, iframe, object, embed').forEach(e => out.push(e.tagName));
            document.querySelectorAll('*').forEach(e => {
                for (const a of e.attributes) {
                    if (a.name.startsWith('on')) out.push(e.tagName + ' ' + a.name);
                    if (['href', 'src', 'action'].includes(a.name) && /^\\s*(javascript|data|vbscript):/i.test(a.value))
                        out.push(e.tagName + ' ' + a.name + '=' + a.value.slice(0, 30));
                }
            });
            return out;
        }""")

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Any) -> Iterator[Watched]:
    w = Watched(browser)
    yield w
    assert w.dialogs == [] and w.errors == []  # no alert(), no script error, on any page
    w.close()


def not_blank(png: bytes, *, min_share: float = 0.03, min_colours: int = 8) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 22) or []
    background = max(colours)[0]
    total = rgb.width * rgb.height
    return (total - background) / total >= min_share and len(colours) >= min_colours


def test_a_generated_document_opens_as_a_reader_sees_it(served: str, made: Path, watched: Watched) -> None:
    saved = json.loads((made / "generated" / "document.json").read_text(encoding="utf-8"))
    page = watched.page
    page.goto(served + "/")
    page.get_by_role("link", name="Tell me about kangaroos").click()
    page.wait_for_url(re.compile(r"/doc/generated$"))
    assert page.locator("h1").first.inner_text() == "Tell me about kangaroos"
    words = lambda text: " ".join(re.findall(r"[A-Za-z]{3,}", text))  # noqa: E731 - Markdown marks aside
    written = "".join(s["text"] for s in saved["segments"] if s["type"] == "text")
    assert words(written)[:60] in words(page.inner_text("article.prose"))
    overview = page.locator("#overview")
    assert overview.is_visible() and "SmolLM2" in overview.inner_text()  # the writer it was generated with
    assert not_blank(page.screenshot(), min_share=0.01)


def test_an_image_s_panel_opens_and_closes(served: str, watched: Watched) -> None:
    page = watched.page
    page.goto(served + "/doc/rendered")
    assert page.locator("#overview").is_visible()
    page.locator("article.prose figure a").first.click()
    page.wait_for_url(re.compile(r"#image-1$"))
    panel = page.locator("#image-1")
    assert panel.is_visible() and not page.locator("#overview").is_visible()
    assert "backend" in panel.inner_text() and "attempts" in panel.inner_text()
    page.locator("#image-1 a.close").click()
    assert page.locator("#overview").is_visible() and not panel.is_visible()
    assert not_blank(page.screenshot(full_page=True))


def test_a_chart_s_panel_shows_its_highlighted_code_and_the_page_is_not_blank(served: str, watched: Watched) -> None:
    page = watched.page
    page.goto(served + "/doc/rendered")
    chart = page.locator("figure.image.ok img").first
    assert chart.evaluate("img => img.complete && img.naturalWidth > 100")  # served and decoded
    chart.click()
    panel = page.locator("#image-1")
    assert panel.is_visible() and "sandbox" in panel.inner_text()
    code = panel.locator(".hl")
    assert code.is_visible() and code.locator("span.s2").count() >= 1  # coloured on the server
    assert '<script>alert(1)</script>' in code.inner_text()  # the chart title's HTML is text
    page.locator("figure.image.failed a.details-link").first.click()
    failed = page.locator("#image-2")
    assert failed.is_visible() and "ToolNotConfigured" in failed.inner_text() and not panel.is_visible()
    shot = page.screenshot()
    assert not_blank(shot)
    from PIL import Image

    with Image.open(io.BytesIO(shot)) as im:  # the bars are there, in matplotlib's blue
        blue = sum(n for n, c in (im.convert("RGB").getcolors(1 << 22) or []) if c == (31, 119, 180))
    assert blue > 2000


def test_no_script_from_a_model_a_judge_or_a_query_runs(served: str, watched: Watched) -> None:
    page = watched.page
    for path in ("/doc/rendered", "/doc/hostile", "/eval/runs/first", "/item/runs/first?key=water-cycle",
                 "/item/runs/first?key=rainfall-chart", "/train/train/grpo"):
        page.goto(served + path)
        assert watched.pwned() is None, path
        assert watched.dom_problems() == [], path
    page.goto(served + "/doc/hostile")
    for i in range(1, 6):  # every panel, every hover target
        page.goto(served + f"/doc/hostile#image-{i}")
        assert page.locator(f"#image-{i}").is_visible()
    page.locator("article.prose").hover()
    assert XSS_TEXT in page.locator("#image-2").inner_text(), "the hostile text is shown as text"
    # HTML in a search query, typed into the search box
    page.goto(served + "/")
    page.fill("input[name=q]", "<img src=x onerror=\"window.PWNED='q'\"><script>window.PWNED='q2'</script>")
    page.click("form.search button")
    page.wait_for_url(re.compile(r"\?q="))
    assert "0 found for" in page.inner_text("main")
    assert watched.pwned() is None and watched.dom_problems() == []
    assert not any("PWNED" in m for m in watched.console)


def test_the_content_security_policy_stops_a_script_that_got_into_a_page(served: str, watched: Watched) -> None:
    page = watched.page

    def plant(route: Any) -> None:
        response = route.fetch()  # the viewer's own response and headers, a script slipped into its body
        body = response.text().replace("</main>", "<script>window.PWNED='planted'</script>"
                                                  "<img src=x onerror=\"window.PWNED='planted-img'\"></main>")
        route.fulfill(response=response, body=body)

    page.route("**/doc/hostile", plant)
    page.goto(served + "/doc/hostile")
    assert "window.PWNED='planted'" in page.content()  # it is in the page ...
    assert watched.pwned() is None  # ... and it did not run
    assert any("Content Security Policy" in m for m in watched.console)


def test_an_evaluation_table_filters_and_sorts(served: str, watched: Watched) -> None:
    page = watched.page
    page.goto(served + "/")
    page.locator("tr.eval a", has_text="rubric-bench.json").first.click()
    page.wait_for_url(re.compile(r"/eval/runs/"))
    page.goto(served + "/eval/runs/first")
    assert page.locator("section.plots svg").count() >= 3 and not_blank(page.screenshot())
    rows = page.locator("table.item-table tbody tr")
    assert rows.count() == 3
    page.select_option("select[name=criterion]", "r2")
    page.select_option("select[name=cscore]", "failed")
    page.click("form.filters button")
    page.wait_for_url(re.compile(r"cscore=failed"))
    assert sorted(rows.locator("td:nth-child(2)").all_inner_texts()) == ["rainfall-chart", "water-cycle"]
    page.goto(served + "/eval/runs/first")
    page.select_option("select[name=failure]", index=1)
    page.click("form.filters button")
    page.wait_for_url(re.compile(r"failure="))
    assert 1 <= rows.count() <= 3
    page.goto(served + "/eval/runs/first")
    page.click("th a:text-is('score')")  # a click on a column sorts by it, highest first
    keys = rows.locator("td:nth-child(2)").all_inner_texts()
    assert keys[0] == "water-cycle"
    page.click("td a:text-is('water-cycle')")
    assert "score 2" in page.locator("table.scores").first.inner_text()
    assert page.locator("article.prose").is_visible()


def test_two_runs_compared_item_by_item(served: str, watched: Watched) -> None:
    page = watched.page
    page.goto(served + "/")
    page.select_option("form.compare select[name=a]", "runs/first")
    page.select_option("form.compare select[name=b]", "runs/second")
    page.click("form.compare button")
    page.wait_for_url(re.compile(r"/compare\?"))
    table = page.locator("table.compare-table tbody tr")
    assert table.count() == 3
    assert "B better / equal / A better" in page.inner_text("dl.headline")
    assert page.locator("tr.better").count() >= 1
    page.select_option("select[name=show]", "better")
    page.click("form.filters button")
    page.wait_for_url(re.compile(r"show=better"))
    better = table.count()
    assert 1 <= better <= 3
    table.first.locator("a:text-is('side by side')").click()
    assert page.locator("section.side").count() == 2
    assert not_blank(page.screenshot())


def test_a_training_run_shows_its_curves_and_each_step_s_sample_documents(served: str, watched: Watched) -> None:
    page = watched.page
    page.goto(served + "/")
    page.locator("tr.training a").first.click()
    page.wait_for_url(re.compile(r"/train/train/grpo$"))
    curves = page.locator("section.plots svg")
    assert curves.count() == 4 and curves.first.is_visible()
    assert curves.first.bounding_box()["height"] > 150 and page.locator("section.plots polyline").count() >= 10
    assert not_blank(page.screenshot())
    samples = page.locator("table.samples tbody tr")
    assert samples.count() == 2 and "best at step 5" in samples.first.inner_text()
    page.locator("nav.steps a:text-is('1')").click()
    page.wait_for_url(re.compile(r"\?step=1#samples$"))
    assert "best at step 1" in samples.first.inner_text()
    samples.nth(1).locator("a").click()
    page.wait_for_url(re.compile(r"/doc/train/grpo/samples/step-000001/sample-3$"))
    assert "worst at step 1" in page.locator("h1").first.inner_text()
    assert page.locator("figure.image.failed").count() == 1
