"""The hostile download corpus (``tests/hostile/fetch_cases.py``) against a real server on loopback.

Each case must be refused with a ``FetchError`` giving its reason; ``first_valid`` must then still
find the good candidate behind it, and the next download must work.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import tracemalloc

import pytest
from hostile.fetch_cases import (
    FETCH_CASES,
    GOOD_PNG,
    GZIP_GZIP_BOMB,
    FetchCase,
    encoded,
    endless_continue,
    redirect,
    trickled_headers,
)
from search_fixtures import LoopbackServer

from llmi.errors import FetchError
from llmi.fetch import FetchPolicy, SafeFetcher

CAP = 2_000_000


@pytest.fixture(scope="module")
def server():
    with LoopbackServer() as srv:
        srv.route("/ok.png", srv.bytes_route(GOOD_PNG))
        for case in FETCH_CASES:
            if case.route is not None:
                srv.route(case.url, case.route)
        yield srv


def _fetcher(dns: tuple[str, ...] = ()) -> SafeFetcher:
    """Only ``images.test`` (the server) is trusted; ``evil.test`` answers ``dns``; other names
    go to the system's resolver."""

    async def resolver(host: str, port: int) -> list[str]:
        if host == "images.test":
            return ["127.0.0.1"]
        if host == "evil.test":
            return list(dns)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]) for info in infos]

    return SafeFetcher(FetchPolicy(allow_hosts=("images.test",), max_bytes=CAP), resolver=resolver)


def _url(server, case_url: str) -> str:
    if case_url.startswith("/"):
        return server.url(case_url, host="images.test")
    return case_url.replace("@PORT@", str(server.port))


def test_corpus_is_big_enough():
    assert len(FETCH_CASES) >= 10
    assert len({c.name for c in FETCH_CASES}) == len(FETCH_CASES)


@pytest.mark.parametrize("case", FETCH_CASES, ids=[c.name for c in FETCH_CASES])
def test_hostile_download_is_refused(case: FetchCase, server):
    fetcher = _fetcher(case.dns)
    bad, good = _url(server, case.url), server.url("/ok.png", host="images.test")
    # 1. refused, with the reason
    with pytest.raises(FetchError) as info:
        asyncio.run(fetcher.fetch(bad))
    assert re.search(case.reason, str(info.value)), str(info.value)
    # 2. one bad candidate never fails a search
    image, url = asyncio.run(fetcher.first_valid([bad, good]))
    assert url == good and image.data == GOOD_PNG
    # 3. the next download is unaffected
    assert asyncio.run(fetcher.fetch(good)).width == 64


def test_gzip_gzip_bomb_stays_within_memory(server):
    """The issue's case: a few kB that decode to 2 GB; memory must stay near the 2 MB cap."""
    assert len(GZIP_GZIP_BOMB) < 10_000
    fetcher = _fetcher()
    tracemalloc.start()
    try:
        with pytest.raises(FetchError, match="once decoded"):
            asyncio.run(fetcher.fetch(server.url("/gzip-gzip", host="images.test")))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * CAP, f"peak {peak:,} bytes"


@pytest.mark.parametrize("url", ["http://[::1", "", "http://images.test:99999/x.png", "mailto:x@y", 12345],
                         ids=["unclosed bracket", "empty", "bad port", "mailto", "not a string"])
def test_bad_urls_are_fetch_errors(url, server):
    fetcher = _fetcher()
    with pytest.raises(FetchError):
        asyncio.run(fetcher.fetch(url))  # type: ignore[arg-type]
    image, _ = asyncio.run(fetcher.first_valid([url, server.url("/ok.png", host="images.test")]))
    assert image.data == GOOD_PNG


def test_stacked_encodings_of_a_real_image_are_undone(server):
    import gzip
    import zlib

    body = gzip.compress(zlib.compress(GOOD_PNG))  # deflate first, then gzip
    server.route("/deflate-gzip.png", encoded(body, "deflate, gzip"))
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    server.route("/raw-deflate.png", encoded(raw_deflate.compress(GOOD_PNG) + raw_deflate.flush(), "deflate"))
    fetcher = _fetcher()
    for path in ("/deflate-gzip.png", "/raw-deflate.png"):
        assert asyncio.run(fetcher.fetch(server.url(path, host="images.test"))).data == GOOD_PNG



def test_dns_rebinding_cannot_move_a_download(server):
    """The name answers a permitted address once, then another: the download goes to the one
    that was checked, and a redirect back to the name is checked against its new answer."""
    answers: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        answers.append(host)
        return ["127.0.0.1"] if len(answers) == 1 else ["127.0.0.2"]

    policy = FetchPolicy(allow_hosts=("127.0.0.1/32",), max_bytes=CAP)
    before = len(server.requests)
    fetcher = SafeFetcher(policy, resolver=rebinding)
    image = asyncio.run(fetcher.fetch(server.url("/ok.png", host="rebind.test")))
    assert image.data == GOOD_PNG and answers == ["rebind.test"]
    assert server.requests[before][1]["host"] == f"rebind.test:{server.port}"
    server.route("/to-rebind", redirect("http://rebind.test:@PORT@/ok.png"))
    answers.clear()
    with pytest.raises(FetchError, match=r"resolves to non-public address 127\.0\.0\.2"):
        asyncio.run(fetcher.fetch(server.url("/to-rebind", host="rebind.test")))
    assert answers == ["rebind.test", "rebind.test"]
    assert asyncio.run(_fetcher().fetch(server.url("/ok.png", host="images.test"))).data == GOOD_PNG


def test_postscript_never_reaches_ghostscript(server, tmp_path, monkeypatch):
    """PIL would rasterise EPS by running Ghostscript on the downloaded bytes; the fetcher must
    not let it try, whether or not Ghostscript is installed."""
    from PIL import EpsImagePlugin

    marker = tmp_path / "gs-ran"
    fake = tmp_path / "gs"
    fake.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None, raising=False)
    monkeypatch.setattr(EpsImagePlugin, "gs_windows_binary", None, raising=False)
    with pytest.raises(FetchError, match="unrecognised format"):
        asyncio.run(_fetcher().fetch(server.url("/eps", host="images.test")))
    assert not marker.exists()
    candidates = [server.url(p, host="images.test") for p in ("/eps", "/ok.png")]
    image, url = asyncio.run(_fetcher().first_valid(candidates))
    assert url.endswith("/ok.png") and not marker.exists()


def test_an_icon_bomb_is_refused_unopened(server, monkeypatch):
    """PIL decodes an icon's embedded PNG while opening it, at whatever size that PNG declares
    (here 81 megapixels, 243 MB): the fetcher must never let PIL open an icon."""
    from PIL import IcoImagePlugin

    opened: list[object] = []
    real_open = IcoImagePlugin.IcoImageFile._open
    monkeypatch.setattr(IcoImagePlugin.IcoImageFile, "_open", lambda im: opened.append(im) or real_open(im))
    with pytest.raises(FetchError, match="unrecognised format"):
        asyncio.run(_fetcher().fetch(server.url("/icon-bomb", host="images.test")))
    assert opened == []


@pytest.mark.parametrize("route", [endless_continue, trickled_headers], ids=["endless 100 Continue", "trickled headers"])
def test_servers_that_never_answer_are_cut_at_the_total_limit(route, server):
    """Neither is ever silent for the read timeout: only the total limit stops them."""
    path = f"/never-{route.__name__}"
    server.route(path, route)
    policy = FetchPolicy(allow_hosts=("images.test",), total_timeout=1.0, read_timeout=0.8, max_bytes=CAP)
    fetcher = SafeFetcher(policy, resolver=_fetcher()._resolver)
    bad, good = server.url(path, host="images.test"), server.url("/ok.png", host="images.test")
    with pytest.raises(FetchError, match="longer than the total limit of 1 s"):
        asyncio.run(fetcher.fetch(bad))
    assert asyncio.run(fetcher.first_valid([bad, good]))[1] == good
