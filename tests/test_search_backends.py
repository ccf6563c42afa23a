"""SerpAPI and Wikimedia Commons backends against a loopback server answering in their formats.

The JSON under ``tests/data/`` follows the services' documented response shapes; image URLs in
it carry a ``{{IMAGES}}`` placeholder that the tests point at the same loopback server.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from search_fixtures import LoopbackServer, noisy_jpeg, png_bytes

from llmi.errors import BackendError, ConfigError, NotFound
from llmi.fetch import FetchPolicy, SafeFetcher
from llmi.tags import ImageRequest
from llmi.tools.base import ToolCall
from llmi.tools.search.serpapi import SerpApiSearch
from llmi.tools.search.wikimedia import WikimediaSearch

DATA = Path(__file__).parent / "data"
KANGAROO = noisy_jpeg(640, 480)


def recorded(name: str, server: LoopbackServer) -> dict:
    text = (DATA / name).read_text().replace("{{IMAGES}}", server.url("/img"))
    return json.loads(text)


def call(query: str, timeout: float = 30.0) -> ToolCall:
    return ToolCall(ImageRequest("search", f"a picture of {query}", {"query": query}), timeout=timeout)


def loopback_fetcher() -> SafeFetcher:
    return SafeFetcher(FetchPolicy.allowing_loopback(min_width=400, min_height=400))


@pytest.fixture(scope="module")
def server():
    with LoopbackServer() as srv:
        srv.route("/img/thumbs/kangaroo-small.jpg", srv.bytes_route(png_bytes(200, 150), "image/jpeg"))
        srv.route("/img/originals/red-kangaroo.jpg", srv.bytes_route(KANGAROO, "image/jpeg"))
        srv.route("/img/originals/outback.png", srv.bytes_route(png_bytes(500, 500)))
        srv.route(
            "/img/wikipedia/commons/thumb/a/a1/Red_Kangaroo_male.jpg/1024px-Red_Kangaroo_male.jpg",
            srv.bytes_route(noisy_jpeg(1024, 768), "image/jpeg"),
        )
        srv.route(
            "/img/wikipedia/commons/thumb/e/e5/Kangaroo_sign.svg/1024px-Kangaroo_sign.svg.png",
            srv.bytes_route(png_bytes(1024, 1024)),
        )
        yield srv


# -- SerpAPI -------------------------------------------------------------------------------------


def serp_check(query: dict[str, list[str]]) -> None:
    assert query.get("engine") == ["google_images"], query
    assert query.get("q") == ["red kangaroo"], query
    assert query.get("api_key") == ["test-key"], query


def test_serpapi_takes_first_valid_original_in_rank_order(server):
    server.route("/serp/ok.json", server.json_route(recorded("serpapi_google_images.json", server), check=serp_check))
    before = len(server.requests)
    tool = SerpApiSearch("test-key", base_url=server.url("/serp/ok.json"), fetcher=loopback_fetcher())
    assert len(server.requests) == before  # no request at construction
    out = asyncio.run(tool.run(call("red kangaroo")))
    # result 1: original is gone (404), its thumbnail is 200x150 (< 400): result 2's original wins
    assert out.image.data == KANGAROO and (out.image.width, out.image.height) == (640, 480)
    assert out.credit.source == "Google Images (SerpAPI)"
    assert out.credit.title == "Red Kangaroo Facts for Kids"
    assert out.credit.page_url == "https://kids.example.org/animals/red-kangaroo"
    assert out.credit.image_url.endswith("/img/originals/red-kangaroo.jpg")
    assert out.info["rank"] == 2 and out.info["used"] == "original"
    assert tool.backend == "serpapi" and "test-key" not in repr(tool)


def test_serpapi_falls_back_to_thumbnail(server):
    payload = recorded("serpapi_google_images.json", server)
    first = payload["images_results"][0]
    first["thumbnail"] = server.url("/img/originals/outback.png")  # a thumbnail large enough
    server.route("/serp/thumb.json", server.json_route({"images_results": [first]}))
    tool = SerpApiSearch("test-key", base_url=server.url("/serp/thumb.json"), fetcher=loopback_fetcher())
    out = asyncio.run(tool.run(call("red kangaroo")))
    assert out.info["used"] == "thumbnail" and out.image.width == 500
    assert out.credit.page_url == "https://en.wikipedia.org/wiki/Red_kangaroo"


@pytest.mark.parametrize(
    ("fixture", "status", "needle"),
    [
        ("serpapi_error_invalid_key.json", 401, "rejected the API key"),
        ("serpapi_error_quota.json", 429, "quota exhausted"),
    ],
)
def test_serpapi_auth_and_quota_errors_are_clear(server, fixture, status, needle):
    path = f"/serp/{fixture}"
    server.route(path, server.json_route(json.loads((DATA / fixture).read_text()), status=status))
    tool = SerpApiSearch("bad-key", base_url=server.url(path), fetcher=loopback_fetcher())
    with pytest.raises(BackendError) as info:
        asyncio.run(tool.run(call("red kangaroo")))
    assert needle in str(info.value) and not info.value.transient


def test_serpapi_no_results_is_not_found(server):
    server.route("/serp/none.json", server.json_route(json.loads((DATA / "serpapi_no_results.json").read_text())))
    tool = SerpApiSearch("test-key", base_url=server.url("/serp/none.json"), fetcher=loopback_fetcher())
    with pytest.raises(NotFound, match="no results .*hasn't returned any results"):
        asyncio.run(tool.run(call("zqxwvy kjhgf plokmn")))


def test_serpapi_all_candidates_broken_is_not_found_with_reasons(server):
    payload = recorded("serpapi_google_images.json", server)
    server.route("/serp/broken.json", server.json_route({"images_results": payload["images_results"][:1]}))
    tool = SerpApiSearch("test-key", base_url=server.url("/serp/broken.json"), fetcher=loopback_fetcher())
    with pytest.raises(NotFound) as info:
        asyncio.run(tool.run(call("red kangaroo")))
    assert "HTTP 404" in str(info.value) and "smaller than the minimum 400x400" in str(info.value)


def test_serpapi_refuses_private_candidates_by_default(server):
    # the default fetcher (no loopback allow-list): SerpAPI pointing at 127.0.0.1 images is refused
    server.route("/serp/ok2.json", server.json_route(recorded("serpapi_google_images.json", server)))
    tool = SerpApiSearch("test-key", base_url=server.url("/serp/ok2.json"))
    with pytest.raises(NotFound, match="non-public address 127.0.0.1"):
        asyncio.run(tool.run(call("red kangaroo")))


def test_serpapi_needs_a_key():
    with pytest.raises(ConfigError, match="SERP_API_KEY"):
        SerpApiSearch("")


# -- Wikimedia Commons ---------------------------------------------------------------------------


def wiki_check(query: dict[str, list[str]]) -> None:
    one = {k: v[0] for k, v in query.items()}
    assert one["action"] == "query" and one["generator"] == "search", one
    assert one["gsrnamespace"] == "6" and one["gsrsearch"] == "red kangaroo", one
    assert one["prop"] == "imageinfo" and one["iiurlwidth"] == "1024", one
    assert set(one["iiprop"].split("|")) >= {"url", "extmetadata", "mime", "size"}, one


def test_wikimedia_picks_best_ranked_image_and_credits_it(server):
    server.route("/w/api.php", server.json_route(recorded("wikimedia_search.json", server), check=wiki_check))
    tool = WikimediaSearch(api_url=server.url("/w/api.php"), fetcher=loopback_fetcher())
    out = asyncio.run(tool.run(call("red kangaroo")))
    # index 1 is a PDF (skipped), index 2 the photo: its 1024px rendition is used
    assert (out.image.width, out.image.height, out.image.format) == (1024, 768, "jpeg")
    credit = out.credit
    assert credit.source == "Wikimedia Commons"
    assert credit.title == "Red Kangaroo (Macropus rufus) male"
    assert credit.author == "Outback Photographer"
    assert credit.licence == "CC BY-SA 4.0"
    assert credit.licence_url == "https://creativecommons.org/licenses/by-sa/4.0"
    assert credit.page_url == "https://commons.wikimedia.org/wiki/File:Red_Kangaroo_(Macropus_rufus)_male.jpg"
    assert credit.image_url.endswith("/a/a1/Red_Kangaroo_male.jpg")
    assert out.info["mime"] == "image/jpeg"
    user_agent = [h for p, h in server.requests if p.startswith("/w/api.php")][-1]["user-agent"]
    assert user_agent.startswith("llmi/")


def test_wikimedia_only_images_and_svg_renditions(server):
    payload = recorded("wikimedia_search.json", server)
    pages = [p for p in payload["query"]["pages"] if not p["title"].startswith("File:Red")]
    server.route("/w/nophoto.php", server.json_route({"batchcomplete": True, "query": {"pages": pages}}))
    tool = WikimediaSearch(api_url=server.url("/w/nophoto.php"), fetcher=loopback_fetcher())
    out = asyncio.run(tool.run(call("red kangaroo")))
    assert out.info["file"] == "File:Kangaroo sign.svg" and out.image.format == "png"
    assert out.credit.author == "Unknown author Road Traffic Authority"


def test_wikimedia_no_results_and_api_errors(server):
    server.route("/w/empty.php", server.json_route(json.loads((DATA / "wikimedia_no_results.json").read_text())))
    server.route("/w/error.php", server.json_route(json.loads((DATA / "wikimedia_error.json").read_text())))
    empty = WikimediaSearch(api_url=server.url("/w/empty.php"), fetcher=loopback_fetcher())
    with pytest.raises(NotFound, match="no image files"):
        asyncio.run(empty.run(call("red kangaroo")))
    broken = WikimediaSearch(api_url=server.url("/w/error.php"), fetcher=loopback_fetcher())
    with pytest.raises(BackendError, match="badvalue"):
        asyncio.run(broken.run(call("red kangaroo")))


# -- through the engine: the backend and the reasons are recorded on the image ------------------


def test_engine_records_backend_credit_and_refusal_reasons(server):
    from llmi.engine import Engine

    hostile = {"images_results": [
        {"position": 1, "title": "private", "link": "https://a.example/1", "original": "http://10.0.0.1/secret.png"},
        {"position": 2, "title": "html", "link": "https://a.example/2", "original": server.url("/img/page.jpg")},
        {"position": 3, "title": "metadata", "link": "https://a.example/3", "original": "http://169.254.169.254/latest/"},
    ]}
    server.route("/img/page.jpg", server.bytes_route(b"<!DOCTYPE html><html></html>", "image/jpeg"))
    server.route("/serp/hostile.json", server.json_route(hostile))
    server.route("/serp/engine-ok.json", server.json_route(recorded("serpapi_google_images.json", server)))
    good = SerpApiSearch("k", base_url=server.url("/serp/engine-ok.json"), fetcher=loopback_fetcher())
    bad = SerpApiSearch("k", base_url=server.url("/serp/hostile.json"), fetcher=loopback_fetcher())
    tag = "<imgen>{'source': 'search', 'description': 'd', 'params': {'query': 'red kangaroo'}}</imgen>"

    ok = Engine({"search": good}).run(f"Look:{tag}")
    image = next(s for s in ok.segments if s.type == "image")
    assert image.ok and image.backend == "serpapi"
    assert image.credit.page_url == "https://kids.example.org/animals/red-kangaroo"

    failed = Engine({"search": bad}).run(f"Look:{tag}")
    image = next(s for s in failed.segments if s.type == "image")
    assert not image.ok and image.backend == "serpapi" and image.error_type == "NotFound"
    assert "non-public address 10.0.0.1 refused (private)" in image.error
    assert "looks like HTML" in image.error
    assert "169.254.169.254 refused (link-local)" in image.error
