"""The local image library on real files made here, with the real MiniLM model."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmi.errors import ConfigError, NotFound, ToolNotConfigured
from llmi.library import Library
from llmi.library.captions import read_caption
from llmi.library.embed import Embedder
from llmi.tags import ImageRequest
from llmi.tools.base import ToolCall
from llmi.tools.search.library import LibrarySearch
from llmi.tools.search.routing import search_choice, search_from_env

SVG = """<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:dc="http://purl.org/dc/elements/1.1/"
     xmlns:cc="http://creativecommons.org/ns#" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
     width="{w}" height="{h}" viewBox="0 0 {w} {h}">
  <metadata>
    <rdf:RDF>
      <cc:Work rdf:about="">
        <dc:title>{title}</dc:title>
        <dc:description>{description}</dc:description>
        <dc:subject><rdf:Bag>{keywords}</rdf:Bag></dc:subject>
        <dc:creator><cc:Agent><dc:title>Jane Drawer</dc:title></cc:Agent></dc:creator>
        <cc:license rdf:resource="http://creativecommons.org/publicdomain/zero/1.0/"/>
      </cc:Work>
    </rdf:RDF>
  </metadata>
  <rect x="0" y="0" width="{w}" height="{h}" fill="orange"/>
  <circle cx="{cx}" cy="{cy}" r="{r}" fill="brown"/>
</svg>
"""


def write_svg(path: Path, title: str, description: str, keywords: list[str], w: int = 200, h: int = 100) -> None:
    kw = "".join(f"<rdf:li>{k}</rdf:li>" for k in keywords)
    path.write_text(SVG.format(title=title, description=description, keywords=kw, w=w, h=h, cx=w // 2, cy=h // 2, r=h // 3))


def write_png(path: Path, color: str = "navy", text: dict[str, str] | None = None, size: int = 64) -> None:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    Image.new("RGB", (size, size), color).save(path, "PNG", pnginfo=info)


def write_jpeg_with_exif(path: Path, description: str) -> None:
    from PIL import Image

    image = Image.new("RGB", (80, 60), "wheat")
    exif = image.getexif()
    exif[270] = description  # ImageDescription
    image.save(path, "JPEG", exif=exif.tobytes())


def make_collection(root: Path) -> Path:
    (root / "animals").mkdir(parents=True)
    (root / "transport").mkdir()
    (root / "food").mkdir()
    write_svg(root / "animals" / "f001.svg", "Red fox", "A red fox sitting in the snow", ["fox", "wildlife", "unsorted"])
    write_png(root / "transport" / "vehicle7.png")
    (root / "transport" / "vehicle7.txt").write_text(
        "A yellow school bus.\nfr.utf8=Un autobus scolaire jaune.\nde.utf8=Ein gelber Schulbus.\n"
    )
    write_png(root / "animals" / "img_0042.png", "gray", {"Title": "A lighthouse on a rocky coast"})
    write_jpeg_with_exif(root / "food" / "dsc1234.jpg", "A bowl of ramen noodles with egg")
    write_png(root / "transport" / "hot_air_balloon.png", "red")
    return root


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture(scope="module")
def library(tmp_path_factory, embedder) -> Library:
    root = make_collection(tmp_path_factory.mktemp("pictures"))
    lib = Library(tmp_path_factory.mktemp("home"), embedder=embedder)
    report = lib.add([root], licence="CC BY 4.0")
    assert (report.added, report.failed) == (5, ())
    return lib


# -- captions --------------------------------------------------------------------------------------


def test_captions_from_every_source(tmp_path):
    root = make_collection(tmp_path / "pics")
    fox = read_caption(root / "animals" / "f001.svg", root)
    assert fox.origin == "svg" and fox.title == "Red fox"
    assert "A red fox sitting in the snow" in fox.text and "unsorted" not in fox.text
    assert fox.author == "Jane Drawer" and fox.licence == "CC0 1.0"
    bus = read_caption(root / "transport" / "vehicle7.png", root)
    assert (bus.origin, bus.title) == ("sidecar", "A yellow school bus.")
    assert "autobus" not in bus.text  # translations skipped
    assert read_caption(root / "animals" / "img_0042.png", root).title == "A lighthouse on a rocky coast"
    assert read_caption(root / "food" / "dsc1234.jpg", root).title == "A bowl of ramen noodles with egg"
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title><rdf:Alt>'
        '<rdf:li xml:lang="x-default">A windmill in a tulip field</rdf:li></rdf:Alt></dc:title>'
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", xmp)
    Image.new("RGB", (8, 8)).save(root / "p1.png", "PNG", pnginfo=info)
    assert read_caption(root / "p1.png", root).title == "A windmill in a tulip field"
    balloon = read_caption(root / "transport" / "hot_air_balloon.png", root)
    assert balloon.origin == "filename" and balloon.text.startswith("hot air balloon") and "transport" in balloon.text


# -- search ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("a fox in winter", "f001.svg"),
        ("school bus", "vehicle7.png"),
        ("lighthouse by the sea", "img_0042.png"),
        ("a bowl of ramen", "dsc1234.jpg"),
        ("hot air balloon", "hot_air_balloon.png"),
    ],
)
def test_query_finds_the_captioned_image(library, query, expected):
    hit = library.best(query)
    assert Path(hit.item.path).name == expected
    assert hit.score >= library.threshold


def test_absent_concept_is_not_found(library):
    with pytest.raises(NotFound, match="under the 0.50 threshold"):
        library.best("quantum chromodynamics lecture")


def test_svg_rendered_on_white_and_cached(library):
    hit = library.best("a fox in winter")
    image = library.image(hit.item)
    assert (image.format, image.width, image.height) == ("png", 512, 256)  # clip art at display size
    assert image.to_pil().convert("RGB").getpixel((0, 0)) == (255, 165, 0)  # the drawing's orange
    renders = list((library.home / "renders").rglob("*.png"))
    assert len(renders) == 1
    assert library.image(hit.item).data == image.data


def test_licence_from_file_else_from_folder(library):
    assert library.best("a fox in winter").item.licence == "CC0 1.0"
    assert library.best("school bus").item.licence == "CC BY 4.0"


# -- incremental indexing --------------------------------------------------------------------------


def test_incremental_reindexing(tmp_path, embedder):
    root = make_collection(tmp_path / "pics")
    lib = Library(tmp_path / "home", embedder=embedder)
    assert lib.add([root]).added == 5
    again = lib.add([root])
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 5, 0)

    sidecar = root / "transport" / "vehicle7.txt"
    sidecar.write_text("A red double-decker bus in London.\n")
    os.utime(sidecar, ns=(sidecar.stat().st_atime_ns, sidecar.stat().st_mtime_ns + 10**9))
    (root / "food" / "dsc1234.jpg").unlink()
    write_png(root / "food" / "cake.png", text={"Description": "A birthday cake with candles"})
    changed = lib.update()
    assert (changed.added, changed.updated, changed.unchanged, changed.removed) == (1, 1, 3, 1)
    assert Path(lib.best("double-decker bus").item.path).name == "vehicle7.png"
    assert Path(lib.best("birthday cake").item.path).name == "cake.png"

    # a new Library on the same home sees the same index (persistent), then forgets a folder
    reopened = Library(tmp_path / "home", embedder=embedder)
    assert reopened.stats().items == 5
    assert reopened.remove([root / "transport"]) == 2
    assert reopened.stats().items == 3


# -- the tool, routing and CLI -----------------------------------------------------------------------


def call(query: str) -> ToolCall:
    return ToolCall(ImageRequest("search", query, {"query": query}), timeout=60)


def test_library_tool_credits_the_file(library):
    tool = LibrarySearch(library=library)
    out = asyncio.run(tool.run(call("a red fox")))
    assert tool.backend == "library"
    assert out.credit.source == "Local image library"
    assert out.credit.image_url.startswith("file://") and out.credit.image_url.endswith("/animals/f001.svg")
    assert out.credit.author == "Jane Drawer" and out.credit.licence == "CC0 1.0"
    assert out.info["score"] >= 0.5
    with pytest.raises(NotFound):
        asyncio.run(tool.run(call("quantum chromodynamics lecture")))


def test_empty_library_says_how_to_fill_it(tmp_path, embedder):
    tool = LibrarySearch(library=Library(tmp_path / "empty", embedder=embedder))
    with pytest.raises(ToolNotConfigured, match="llmi library add --defaults"):
        asyncio.run(tool.run(call("a fox")))


def test_routing(library, tmp_path):
    home = {"LLMI_LIBRARY_HOME": str(library.home)}
    empty = {"LLMI_HOME": str(tmp_path / "nothing")}
    assert search_choice({"SERP_API_KEY": "k", **home}).backend == "serpapi"
    assert search_choice({"LLMI_ONLINE": "1", **home}).backend == "wikimedia"
    assert search_choice(home).backend == "library"
    assert search_choice(empty).backend is None and search_from_env(empty) is None
    assert search_choice({"LLMI_SEARCH_BACKEND": "wikimedia", "SERP_API_KEY": "k"}).backend == "wikimedia"
    assert search_choice({"LLMI_SEARCH_BACKEND": "none", "SERP_API_KEY": "k"}).backend is None
    # a named backend the environment does not configure is an error when it is built
    with pytest.raises(ConfigError, match="SERP_API_KEY"):
        search_from_env({"LLMI_SEARCH_BACKEND": "serpapi"})
    with pytest.raises(ConfigError, match="llmi library add"):
        search_from_env({"LLMI_SEARCH_BACKEND": "library", **empty})
    with pytest.raises(ConfigError, match="not one of"):
        search_choice({"LLMI_SEARCH_BACKEND": "bing"})
    tool = search_from_env({**home, "LLMI_LIBRARY_THRESHOLD": "0.7"})
    assert tool.backend == "library" and tool.library.threshold == 0.7
    assert search_from_env({"SERP_API_KEY": "k"}).backend == "serpapi"


def test_cli_add_stats_search(tmp_path):
    from llmi.cli import main

    root = make_collection(tmp_path / "pics")
    shutil.rmtree(root / "food")
    home = str(tmp_path / "home")
    runner = CliRunner()
    added = runner.invoke(main, ["library", "add", str(root), "--home", home, "--licence", "CC BY 4.0"])
    assert added.exit_code == 0, added.output
    assert "4 added" in added.output
    stats = runner.invoke(main, ["library", "stats", "--home", home])
    assert "images:   4 (1 SVG)" in stats.output and "sidecar 1" in stats.output
    out = tmp_path / "best.png"
    found = runner.invoke(main, ["library", "search", "a yellow bus", "--home", home, "-k", "2", "--save", str(out)])
    assert found.exit_code == 0, found.output
    assert found.output.splitlines()[0].startswith("* ") and "vehicle7.png" in found.output.splitlines()[0]
    assert out.read_bytes().startswith(b"\x89PNG")
    missing = runner.invoke(main, ["library", "search", "quantum chromodynamics", "--home", home])
    assert "not found" in missing.output


def test_svg_render_never_fetches_external_resources(tmp_path):
    from llmi.library.render import render_svg

    svg = tmp_path / "sneaky.svg"
    svg.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="100" height="50">'
        '<rect width="100" height="50" fill="blue"/>'
        '<image xlink:href="http://169.254.169.254/latest/meta-data/x.png" width="10" height="10"/>'
        '<image xlink:href="file:///etc/passwd" width="10" height="10"/></svg>'
    )
    image = render_svg(svg, 400, None)  # the refused images become empty pixels; the rest renders
    assert (image.width, image.height) == (400, 200)
    assert image.to_pil().convert("RGB").getpixel((399, 199)) == (0, 0, 255)


def test_repeated_query_takes_the_next_distinct_match(tmp_path, embedder):
    root = tmp_path / "foxes"
    root.mkdir()
    write_svg(root / "fox1.svg", "Red fox", "A red fox in the snow", ["fox"])
    write_svg(root / "fox2.svg", "Red fox sleeping", "A red fox asleep in the snow", ["fox"], w=120)
    lib = Library(tmp_path / "home", embedder=embedder)
    lib.add([root])
    tool = LibrarySearch(library=lib)
    first = asyncio.run(tool.run(call("a red fox in snow")))
    second = asyncio.run(tool.run(ToolCall(call("a red fox in snow").request, timeout=60,
                                           avoid=frozenset({first.image.sha256}))))
    assert first.info["path"] != second.info["path"] and second.info["skipped_repeats"] == 1
    both = frozenset({first.image.sha256, second.image.sha256})
    with pytest.raises(NotFound, match="already in the document"):
        asyncio.run(tool.run(ToolCall(call("a red fox in snow").request, timeout=60, avoid=both)))


def test_small_raster_is_scaled_to_display_size(library):
    hit = library.best("hot air balloon")  # a 64x64 PNG
    image = library.image(hit.item)
    assert (image.width, image.height, image.format) == (512, 512, "png")
    assert library.image(hit.item).data == image.data  # cached


def test_warm_up_loads_index_and_encoder(library):
    fresh = Library(library.home, embedder=library.embedder)
    fresh.warm_up()
    assert fresh._matrix is not None and fresh._matrix.shape[0] == 5
    Library(library.home.parent / "never-made").warm_up()  # an empty library: nothing to do
