"""Renderers: HTML, Markdown and document.json for hand-built documents, hostile ones included."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from PIL import Image

from llmi.document import Document, Fallback, ImageSegment, TextSegment
from llmi.errors import ConfigError
from llmi.image import ImageData
from llmi.renderers import save
from llmi.renderers.html import render_html, render_prose
from llmi.renderers.json import SCHEMA_VERSION, document_to_dict, jsonable, load
from llmi.renderers.markdown import defang_prose, render_markdown
from llmi.tags import ImageRequest
from llmi.tools.base import Credit

HOSTILE_PROSE = (
    "Intro <script>document.title='PWNED-TEXT'</script> and "
    "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"> and "
    '[click me](javascript:alert(1)) and <a href="javascript:alert(2)">raw link</a> '
    '<iframe src="https://evil.example"></iframe><style>body{display:none}</style>\n\n'
)
HOSTILE_DESC = "a cat \"><script>document.title='PWNED-DESC'</script>"
HOSTILE_ERROR = "backend said <b onmouseover=alert(1)>boom</b> & <script>alert(3)</script>"

SEGMENT_FIELDS = {
    "type", "index", "status", "tool", "backend", "description", "request", "raw", "error",
    "error_type", "path", "width", "height", "format", "sha256", "elapsed", "attempts",
    "cache_hit", "fallback", "credit", "info", "counted",
}  # fmt: skip


def _req(source: str, description: str, **params) -> ImageRequest:
    return ImageRequest(source, description, params)


def ok_image(index: int, color: str = "red", size=(120, 80), **kw) -> ImageSegment:
    kw.setdefault("request", _req("code", f"chart {index}", code="plt.plot([1, 2])"))
    kw.setdefault("tool", kw["request"].source)
    return ImageSegment(
        index=index, raw="<imgen>...</imgen>", status="ok", image=ImageData.blank(*size, color=color),
        backend="sandbox", elapsed=0.08, attempts=1, **kw,
    )  # fmt: skip


def failed_image(
    index: int, tool: str | None = "search", error: str = "no search backend configured", **kw
) -> ImageSegment:
    kw.setdefault(
        "request", _req(tool, "a lighthouse at dusk", query="lighthouse") if tool else None
    )
    return ImageSegment(
        index=index, raw="<imgen>{'source': 'search'}</imgen>", tool=tool, status="failed",
        error=error, error_type=kw.pop("error_type", "ToolNotConfigured"), **kw,
    )  # fmt: skip


def rich_document() -> Document:
    """One of everything: ok, failed, fallback, credit, cache hit, edit, invalid tag, Chinese."""
    credit = Credit(
        source="Wikimedia Commons", title="Lighthouse <em>Hook</em>",
        page_url="https://commons.wikimedia.org/wiki/File:Hook.jpg", author="J. Doe",
        licence="CC BY-SA 4.0", licence_url="javascript:alert('licence')",
    )  # fmt: skip
    segs = (
        TextSegment("# 太阳系介绍\n\n行星绕太阳运行。The **Sun** is a star.\n\n" + HOSTILE_PROSE),
        ok_image(
            0,
            "red",
            request=_req("code", "行星质量 bar chart", code="plt.bar([1], [2])\nplt.title('质量')"),
        ),
        TextSegment("A photo:\n\n"),
        ok_image(
            1,
            "#2060c0",
            request=_req("search", HOSTILE_DESC, query="cat"),
            credit=credit,
            cache_hit=True,
        ),
        ok_image(
            2,
            "#208040",
            request=_req("diffusion", "a painted owl", prompt="owl, oil painting"),
            fallback=Fallback("diffusion", "search", "no generator configured"),
        ),
        failed_image(3, error=HOSTILE_ERROR, error_type="BackendError"),
        failed_image(
            4,
            tool=None,
            error="tag at character 412: not a dict literal",
            error_type="TagSyntaxError",
        ),
        failed_image(
            5,
            tool="edit",
            request=_req("edit", "the chart in blue", img_index=1, prompt="make it blue"),
            error='Traceback (most recent call last):\n  File "<chart>", line 1\nValueError: bad',
            error_type="SandboxError",
        ),
        TextSegment("\n\nThe end."),
    )
    return Document(
        segs,
        inputs=(ImageData.blank(40, 30, "yellow"),),
        meta={"prompt": "Explain the <b>solar</b> system", "model": "tiny"},
    )


# -- save ----------------------------------------------------------------------------------------


def test_save_writes_each_format_and_images_once(tmp_path: Path) -> None:
    doc = rich_document()
    out = save(doc, tmp_path / "new" / "out", ("html", "md", "json"))
    assert {k: p.name for k, p in out.items()} == {
        "html": "index.html",
        "md": "document.md",
        "json": "document.json",
    }
    images = sorted(p.name for p in (tmp_path / "new" / "out" / "images").iterdir())
    assert images == ["image-0.png", "image-1.png", "image-2.png", "input-0.png"]
    assert (tmp_path / "new/out/images/image-1.png").read_bytes() == doc.segments[3].image.data
    assert not list((tmp_path / "new" / "out").glob(".llmi-*"))  # no temporary files left behind


def test_document_save_delegates_here(tmp_path: Path) -> None:
    out = rich_document().save(tmp_path, ["json"])
    assert (
        list(out) == ["json"]
        and json.loads(out["json"].read_text("utf-8"))["version"] == SCHEMA_VERSION
    )


def test_html_only_writes_no_image_folder(tmp_path: Path) -> None:
    save(rich_document(), tmp_path, ("html",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.html"]


@pytest.mark.parametrize("formats", [("pdf",), ("html", "docx"), ()])
def test_unknown_or_no_format_is_a_config_error(tmp_path: Path, formats) -> None:
    with pytest.raises(ConfigError, match="choose from html, md, json"):
        save(rich_document(), tmp_path, formats)
    assert not list(tmp_path.iterdir())  # nothing written before the check


def test_format_names_are_forgiving(tmp_path: Path) -> None:
    out = save(rich_document(), tmp_path, (" HTML", "markdown", "md"))
    assert list(out) == ["html", "md"]


def test_hostile_image_format_cannot_escape_the_folder(tmp_path: Path) -> None:
    bad = ImageData(data=b"not an image", width=1, height=1, format="../../../evil")
    doc = Document((ImageSegment(0, "<imgen/>", "code", "ok", image=bad),))
    out_dir = tmp_path / "out"
    save(doc, out_dir, ("html", "md", "json"))
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}
    assert written == {
        "out/index.html",
        "out/document.md",
        "out/document.json",
        "out/images/image-0.img",
    }
    page = (out_dir / "index.html").read_text("utf-8")
    assert (
        "../../../evil image could not be embedded" in page
    )  # said, escaped, and not written there


def test_symlinks_in_the_output_folder_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "index.html").symlink_to(outside)
    save(rich_document(), out_dir, ("html",))
    assert outside.read_text() == "precious"
    assert not (out_dir / "index.html").is_symlink()
    (out_dir / "images").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="symbolic link"):
        save(rich_document(), out_dir, ("md",))


# -- document.json ------------------------------------------------------------------------------


def test_json_has_the_documented_fields(tmp_path: Path) -> None:
    doc = rich_document()
    path = save(doc, tmp_path, ("json",))["json"]
    raw = path.read_text("utf-8")
    assert "行星绕太阳运行" in raw  # UTF-8 kept, not \u escapes
    data = json.loads(raw)
    assert data["version"] == "llmi.document/1"
    assert set(data) == {"version", "profile", "meta", "inputs", "segments", "summary", "stats", "judge_view"}
    assert [s["type"] for s in data["segments"]] == [
        "text",
        "image",
        "text",
        "image",
        "image",
        "image",
        "image",
        "image",
        "text",
    ]
    images = [s for s in data["segments"] if s["type"] == "image"]
    assert all(set(s) == SEGMENT_FIELDS for s in images)
    assert [s["status"] for s in images] == ["ok", "ok", "ok", "failed", "failed", "failed"]
    assert [s["path"] for s in images] == [
        "images/image-0.png",
        "images/image-1.png",
        "images/image-2.png",
        None,
        None,
        None,
    ]
    for s in images[:3]:
        assert (tmp_path / s["path"]).is_file() and (s["width"], s["height"]) == (120, 80)
    first = images[0]
    assert first["request"] == {
        "source": "code",
        "description": "行星质量 bar chart",
        "params": {"code": "plt.bar([1], [2])\nplt.title('质量')"},
    }
    assert (first["tool"], first["backend"], first["attempts"], first["cache_hit"]) == (
        "code",
        "sandbox",
        1,
        False,
    )
    assert (
        images[1]["credit"]["page_url"] == "https://commons.wikimedia.org/wiki/File:Hook.jpg"
        and images[1]["cache_hit"]
    )
    assert images[2]["fallback"] == {
        "requested": "diffusion",
        "used": "search",
        "reason": "no generator configured",
    }
    assert images[0]["fallback"] is None and images[0]["credit"] is None
    assert (images[3]["error"], images[3]["error_type"]) == (HOSTILE_ERROR, "BackendError")
    assert images[4]["tool"] is None and images[4]["request"] is None and images[4]["width"] is None
    assert data["stats"] == {
        "search": {"total": 2, "success": 1, "success_rate": 0.5},
        "diffusion": {"total": 1, "success": 1, "success_rate": 1.0},
        "code": {"total": 1, "success": 1, "success_rate": 1.0},
        "edit": {"total": 1, "success": 0, "success_rate": 0.0},
        "invalid": {"total": 1, "success": 0, "success_rate": 0.0},
    }
    assert data["summary"] == {"images": 6, "ok": 3, "failed": 3}
    assert data["judge_view"] == doc.judge_view()
    assert (
        data["judge_view"].count("<image>") == 3
        and data["judge_view"].count("<fail_to_generate_image>") == 3
    )
    assert data["inputs"] == [
        {
            "index": 0,
            "path": "images/input-0.png",
            "width": 40,
            "height": 30,
            "format": "png",
            "sha256": doc.inputs[0].sha256,
        }
    ]
    assert data["meta"] == {"prompt": "Explain the <b>solar</b> system", "model": "tiny"}


def test_the_documented_example_matches_the_format() -> None:
    doc_md = (Path(__file__).resolve().parents[1] / "docs" / "document-json.md").read_text("utf-8")
    example = json.loads(re.search(r"## Example\n\n```json\n(.*?)```", doc_md, re.DOTALL).group(1))
    real = rich_document().to_dict()
    assert set(example) == set(real) and example["version"] == SCHEMA_VERSION
    for seg in example["segments"]:
        assert set(seg) == (SEGMENT_FIELDS if seg["type"] == "image" else {"type", "text"})
    for field in SEGMENT_FIELDS | set(real):
        assert f"`{field}`" in doc_md, field  # every field is described


def test_output_folder_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        save(rich_document(), tmp_path / "taken", ("html",))


def test_to_dict_without_saving_has_null_paths() -> None:
    data = rich_document().to_dict()
    assert all(s["path"] is None for s in data["segments"] if s["type"] == "image")
    assert data["inputs"][0]["path"] is None
    json.dumps(data, allow_nan=False)


def test_json_survives_odd_info_and_meta(tmp_path: Path) -> None:
    seg = ok_image(
        0, info={"score": float("nan"), "blob": b"\x00" * 10, "where": Path("/x"), 3: {"s": {1}}}
    )
    doc = Document((seg,), meta={"inf": float("inf"), "tags": ("a", "b")})
    data = json.loads(save(doc, tmp_path, ("json",))["json"].read_text("utf-8"))
    assert data["segments"][0]["info"] == {
        "score": None,
        "blob": "<10 bytes>",
        "where": "/x",
        "3": {"s": [1]},
    }
    assert data["meta"] == {"inf": None, "tags": ["a", "b"]}
    assert jsonable(float("-inf")) is None


def test_json_round_trips_through_load(tmp_path: Path) -> None:
    doc = rich_document()
    save(doc, tmp_path, ("json",))
    back = load(tmp_path)
    assert back.judge_view() == doc.judge_view() and back.stats() == doc.stats()
    assert [s.image.sha256 for s in back.image_segments if s.ok] == [
        s.image.sha256 for s in doc.image_segments if s.ok
    ]
    assert back.inputs[0].sha256 == doc.inputs[0].sha256
    assert (
        back.segments[4].fallback == doc.segments[4].fallback
        and back.segments[3].credit == doc.segments[3].credit
    )
    assert (
        back.segments[1].request == doc.segments[1].request
        or back.segments[1].request.to_dict() == doc.segments[1].request.to_dict()
    )
    assert document_to_dict(
        back,
        {0: "images/image-0.png", 1: "images/image-1.png", 2: "images/image-2.png"},
        input_paths=["images/input-0.png"],
    ) == json.loads((tmp_path / "document.json").read_text("utf-8"))


def test_load_refuses_other_versions_and_paths_outside(tmp_path: Path) -> None:
    secret = tmp_path / "secret.png"
    ImageData.blank(5, 5).to_pil().save(secret)
    out = tmp_path / "out"
    save(rich_document(), out, ("json",))
    data = json.loads((out / "document.json").read_text("utf-8"))
    data["segments"][1]["path"] = "../secret.png"
    (out / "document.json").write_text(json.dumps(data))
    assert load(out / "document.json").segments[1].image is None
    data["version"] = "llmi.document/99"
    (out / "document.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="unsupported document.json version"):
        load(out)


# -- HTML ---------------------------------------------------------------------------------------


def _article(page: str) -> str:
    return page.split('<article class="prose">', 1)[1].split("</article>", 1)[0]


class _Elements(HTMLParser):
    """Every start tag and its attributes, as a browser's tokeniser would see them."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, dict[str, str]]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, {k: v or "" for k, v in attrs}))


def test_html_escapes_and_sanitises_everything_model_written() -> None:
    page = render_html(rich_document())
    elements = _Elements(page).found
    tags = {t for t, _ in elements}
    assert not tags & {
        "script",
        "iframe",
        "object",
        "embed",
        "form",
        "input",
        "link",
        "base",
        "svg",
        "math",
    }
    assert [t for t in tags if t == "style"] == ["style"] and sum(
        t == "style" for t, _ in elements
    ) == 1
    for tag, attrs in elements:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)  # no event handlers
        assert "style" not in attrs, (tag, attrs)
        for key in ("href", "src"):
            if key in attrs:
                assert re.match(r"(https://|data:image/png;base64,)", attrs[key]), (tag, attrs)
    # every image is embedded; nothing is fetched from anywhere
    srcs = [a["src"] for t, a in elements if "src" in a]
    assert len(srcs) == 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert {a["href"] for t, a in elements if "href" in a} == {
        "https://commons.wikimedia.org/wiki/File:Hook.jpg"
    }
    assert (
        "&lt;script&gt;document.title=&#x27;PWNED-DESC&#x27;&lt;/script&gt;" in page
    )  # description, escaped
    assert (
        "&lt;b onmouseover=alert(1)&gt;boom&lt;/b&gt; &amp; &lt;script&gt;" in page
    )  # error, escaped
    assert "Lighthouse &lt;em&gt;Hook&lt;/em&gt;" in page  # credit title, escaped
    assert "<title>Explain the &lt;b&gt;solar&lt;/b&gt; system</title>" in page


def test_html_csp_allows_exactly_our_style() -> None:
    page = render_html(rich_document())
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', page).group(1)
    assert "default-src 'none'" in csp and "img-src data:" in csp and "script-src" not in csp
    style = re.search(r"<style>(.*?)</style>", page, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in csp
    assert page.index("Content-Security-Policy") < page.index("<style>") < page.index("<body>")


def test_html_prose_is_markdown_and_hostile_links_are_dead() -> None:
    html = render_prose(
        HOSTILE_PROSE + "**bold** [ok](https://example.org) ![pic](https://tracker.example/p.png)"
    )
    assert "<strong>bold</strong>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">ok</a>' in html
    elements = _Elements(html).found
    assert [a["href"] for t, a in elements if t == "a"] == [
        "https://example.org",
        "https://tracker.example/p.png",
    ]
    assert {t for t, _ in elements} == {
        "p",
        "strong",
        "a",
    }  # ![pic](...) is only a link, never an <img>
    assert "[click me](javascript:alert(1))" in html  # shown as text, not a link
    assert '&lt;a href="javascript:alert(2)"&gt;' in html


def test_html_figures_failures_fallbacks_and_credits() -> None:
    page = render_html(rich_document())
    body = _article(page)
    ids = re.findall(r'<figure class="image (ok|failed)" id="figure-(\d+)"', body)
    assert ids == [
        ("ok", "1"),
        ("ok", "2"),
        ("ok", "3"),
        ("failed", "4"),
        ("failed", "5"),
        ("failed", "6"),
    ]
    # the figures sit where their tags were
    assert (
        body.index("太阳系介绍")
        < body.index('id="figure-1"')
        < body.index("A photo:")
        < body.index('id="figure-2"')
    )
    assert body.index('id="figure-6"') < body.index("The end.")
    fail4 = body.split('id="figure-4"')[1].split("</figure>")[0]
    assert (
        "Figure 4 could not be made" in fail4
        and "a lighthouse at dusk" in fail4
        and "BackendError" in fail4
    )
    fail5 = body.split('id="figure-5"')[1].split("</figure>")[0]
    assert "invalid tag" in fail5 and "TagSyntaxError" in fail5 and "not a dict literal" in fail5
    fail6 = body.split('id="figure-6"')[1].split("</figure>")[0]
    assert (
        "edits Figure 1" in fail6 and '<pre class="reason">' in fail6
    )  # img_index 1 with one input
    fig3 = body.split('id="figure-3"')[1].split("</figure>")[0]
    assert "diffusion → search: no generator configured" in fig3 and "search · sandbox" in fig3
    fig2 = body.split('id="figure-2"')[1].split("</figure>")[0]
    assert (
        '<a href="https://commons.wikimedia.org/wiki/File:Hook.jpg" rel="noopener noreferrer nofollow">'
        in fig2
    )
    assert (
        "CC BY-SA 4.0" in fig2
        and "by J. Doe" in fig2
        and "via Wikimedia Commons" in fig2
        and "cached" in fig2
    )
    assert (
        "licence_url" not in fig2 and "alert(&#x27;licence&#x27;)" not in fig2
    )  # the javascript: licence URL is dropped
    stats = page.split('<section class="stats">')[1]
    assert re.search(
        r"<td>search</td><td class=\"num\">2</td><td class=\"num\">1</td><td class=\"num\">50%</td>",
        stats,
    )
    assert '6 images: <span class="ok">3 made</span>, <span class="failed">3 failed</span>' in page
    assert "input image 0" in page and '<html lang="en">' in page
    assert '<html lang="zh">' in render_html(
        Document((TextSegment("行星绕太阳运行。太阳是一颗恒星。"),))
    )


def test_placeholders_cannot_be_forged() -> None:
    # Whatever token format the renderer uses, text the model writes is rendered as text.
    probe = render_html(Document((TextSegment("a"), ok_image(0), TextSegment("b"))))
    assert "LLMIFIG" not in probe  # tokens never leak into the page
    forged = "".join(f"LLMIFIG{'0' * 32}X{i}X <p>LLMIFIG{'f' * 32}X{i}X</p>\n\n" for i in range(3))
    doc = Document((TextSegment(forged), ok_image(0), TextSegment(forged), failed_image(1)))
    body = _article(render_html(doc))
    assert body.count("<figure") == 2 and body.count("LLMIFIG") == 12
    assert body.index("LLMIFIG") < body.index('id="figure-1"') < body.index('id="figure-2"')


def test_one_markdown_stream_across_tags() -> None:
    # A reference link defined after a tag still resolves, a list resumes, a fence spans a tag.
    doc = Document(
        (
            TextSegment("See [the data][src].\n\n1. first\n"),
            ok_image(0),
            TextSegment("\n\n[src]: https://example.org/data\n\n```python\nx = '<b>'\n"),
            failed_image(1),
            TextSegment("\ny = 2\n```\n"),
        )
    )
    body = _article(render_html(doc))
    assert (
        '<a href="https://example.org/data" rel="noopener noreferrer nofollow">the data</a>' in body
    )
    assert "<li>first</li>" in body and body.count("<figure") == 2
    assert "x = &#x27;&lt;b&gt;&#x27;" in body or "x = '&lt;b&gt;'" in body


def test_every_image_appears_exactly_once_even_with_odd_indices() -> None:
    doc = Document((ok_image(7), failed_image(7), TextSegment("*"), ok_image(2)))
    body = _article(render_html(doc))
    assert body.count("<figure") == 3


def test_the_answers_own_heading_becomes_the_title_once() -> None:
    doc = Document((TextSegment("# Tides *and* waves\n\nThe sea rises."), ok_image(0)))
    page = render_html(doc)
    assert "<title>Tides and waves</title>" in page and page.count("<h1>") == 1
    md = render_markdown(doc)
    assert (
        md.startswith("# Tides and waves\n") and md.count("Tides") == 1 and "The sea rises." in md
    )
    titled = Document(doc.segments, meta={"title": "Oceans"})
    assert "<h1>Oceans</h1>" in render_html(
        titled
    ) and "<h1>Tides <em>and</em> waves</h1>" in render_html(titled)


def test_html_of_an_empty_document() -> None:
    page = render_html(Document(()))
    assert "<title>Illustrated document</title>" in page and "No images." in page


def test_unusual_formats_are_converted_for_embedding() -> None:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="TIFF")
    seg = ImageSegment(0, "<imgen/>", "search", "ok", image=ImageData.from_bytes(buf.getvalue()))
    page = render_html(Document((seg,)))
    assert re.search(r'src="data:image/png;base64,', page) and "image/tiff" not in page


# -- Markdown -----------------------------------------------------------------------------------


def test_markdown_document(tmp_path: Path) -> None:
    out = save(rich_document(), tmp_path, ("md",))
    md = out["md"].read_text("utf-8")
    assert md.startswith("# Explain the \\<b\\>solar\\</b\\> system\n")
    assert "![行星质量 bar chart](images/image-0.png)" in md
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (tmp_path / rel).is_file()
    assert (
        "![a cat \"\\>\\<script\\>document.title='PWNED-DESC'\\</script\\>](images/image-1.png)"
        in md
    )
    assert (
        "> **⚠ Figure 4 could not be made** (search)\\\n> a lighthouse at dusk\\\n> BackendError: backend said \\<b"
        in md
    )
    assert "(invalid tag)" in md and "> SandboxError: Traceback (most recent call last):\\\n" in md
    assert "*↪ fallback diffusion → search: no generator configured*" in md
    assert (
        "*Credit: [Lighthouse \\<em\\>Hook\\</em\\>](https://commons.wikimedia.org/wiki/File:Hook.jpg) by J. Doe · CC BY-SA 4.0 · via Wikimedia Commons*"
        in md
    )
    assert "| search | 2 | 1 | 50% |" in md and "| invalid | 1 | 0 | 0% |" in md
    assert "**Input images:** ![input image 0](images/input-0.png)" in md


def test_markdown_is_safe_even_in_a_viewer_that_allows_html(tmp_path: Path) -> None:
    md = render_markdown(rich_document(), {0: "images/image-0.png"})
    html = MarkdownIt("commonmark", {"html": True}).render(md)  # the most permissive viewer
    assert "<script" not in html and "<iframe" not in html and "<style" not in html
    assert not re.search(r"<[^>]+\son\w+\s*=", html) and "javascript:" not in " ".join(
        re.findall(r'href="[^"]*"', html)
    )


def test_defang_leaves_code_alone() -> None:
    text = "```html\n<b>keep</b>\n```\nuse `<i>` then <i>x</i> &amp; [r]: javascript:alert(1)\n[r]: javascript:alert(1)\n"
    out = defang_prose(text)
    assert (
        "```html\n<b>keep</b>\n```\n" in out
        and "`<i>`" in out
        and "\\<i>x\\</i>" in out
        and "\\&amp;" in out
    )
    assert "\n\\[r]: javascript" in out
    html = MarkdownIt("commonmark", {"html": True}).render(out)
    assert (
        "<b>keep</b>" not in html.replace("&lt;b&gt;keep&lt;/b&gt;", "")
        and 'href="javascript' not in html
    )


# -- a real browser -----------------------------------------------------------------------------

CHROMIUM = (
    shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
)


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        "--mute-audio", f"--user-data-dir={profile}", *args,
    ]  # fmt: skip
    env = {**os.environ, "HOME": str(tmp_path)}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, check=True)


@pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install chromium)"
)
def test_in_a_real_browser_no_script_runs_and_images_decode(tmp_path: Path) -> None:
    doc = Document(
        (
            TextSegment(HOSTILE_PROSE),
            ok_image(
                0, "#ff0000", size=(300, 200), request=_req("search", HOSTILE_DESC, query="cat")
            ),
            failed_image(1, error=HOSTILE_ERROR),
        ),
        meta={"title": "Browser check"},
    )
    out = save(doc, tmp_path / "doc", ("html",))["html"]
    # A script that slipped past the sanitiser would still meet the CSP: plant one to prove it.
    planted = tmp_path / "doc" / "planted.html"
    page = out.read_text("utf-8")
    planted.write_text(
        page.replace("</main>", "<script>document.title='PWNED-PLANTED'</script></main>"), "utf-8"
    )

    dom = _chromium(tmp_path, "--dump-dom", out.as_uri()).stdout
    assert "<title>Browser check</title>" in dom and "PWNED" not in dom.replace(
        "PWNED-DESC", ""
    ).replace("PWNED-TEXT", "")
    assert "data-pwned" not in dom.split("<body", 1)[1].split(">", 1)[0]
    assert "<iframe" not in dom and "Figure 2 could not be made" in dom
    planted_dom = _chromium(tmp_path, "--dump-dom", planted.as_uri()).stdout
    assert "<title>Browser check</title>" in planted_dom  # the CSP blocked the planted script

    shot = tmp_path / "shot.png"
    _chromium(tmp_path, "--window-size=900,1400", f"--screenshot={shot}", out.as_uri())
    with Image.open(shot) as im:
        rgb = im.convert("RGB")
        colors = rgb.getcolors(maxcolors=1 << 20) or []
    by_color = {c: n for n, c in colors}
    assert by_color.get((255, 0, 0), 0) > 0.9 * 300 * 200  # the embedded PNG was decoded and shown
    assert (
        by_color.get((180, 35, 24), 0) > 500
    )  # the failure box's red rule: our CSS passed the CSP


def test_the_document_model_owns_its_schema_and_old_names_keep_working() -> None:
    import llmi.document as document
    import llmi.renderers.json as renderers_json
    import llmi.tools as tools
    import llmi.tools.base as tools_base

    assert tools.Credit is tools_base.Credit is document.Credit is Credit
    for name in ("SCHEMA_VERSION", "document_to_dict", "document_from_dict", "dumps", "jsonable", "load"):
        assert getattr(renderers_json, name) is getattr(document, name)
    doc = rich_document()
    assert document.Document.from_dict(doc.to_dict()).judge_view() == doc.judge_view()
