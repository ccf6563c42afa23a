"""SafeFetcher against a real HTTP server on 127.0.0.1 serving good images and hostile payloads."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from search_fixtures import LoopbackServer, bomb_png_header, gif_bytes, noisy_jpeg, png_bytes

from llmi.errors import FetchError, ToolError
from llmi.fetch import FetchPolicy, SafeFetcher, is_public_address

GOOD_PNG = png_bytes(500, 500)
GOOD_JPEG = noisy_jpeg(640, 480)


def _endless(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Connection", "close")
    h.end_headers()
    h.close_connection = True
    h.wfile.write(GOOD_PNG[:100])
    chunk = b"\x00" * 65536
    for _ in range(40_000):  # ~2.6 GB if nobody hangs up
        h.wfile.write(chunk)


def _lying_length(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    h.send_header("Content-Length", str(2 * 1024**3))
    h.end_headers()
    h.wfile.write(GOOD_JPEG[:1000])
    time.sleep(2)


def _bomb(h: BaseHTTPRequestHandler) -> None:
    head = bomb_png_header()
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", str(len(head) + 50_000_000))
    h.end_headers()
    h.wfile.write(head)
    h.wfile.flush()
    for _ in range(50):  # the rest would be 50 MB; the client must hang up long before
        time.sleep(0.05)
        h.wfile.write(b"\x00" * 1_000_000)


def _trickle(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", str(len(GOOD_PNG)))
    h.end_headers()
    for i in range(len(GOOD_PNG)):
        h.wfile.write(GOOD_PNG[i : i + 1])
        h.wfile.flush()
        time.sleep(1.0)


def _gzip_bomb(h: BaseHTTPRequestHandler) -> None:
    import gzip

    body = gzip.compress(GOOD_PNG[:100] + b"\x00" * 50_000_000, compresslevel=9)  # ~50 kB on the wire
    h.send_response(200)
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Encoding", "gzip")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _host_checked(expected: list[str]) -> object:
    def fn(h: BaseHTTPRequestHandler) -> None:
        ok = h.headers.get("Host") == expected[0]
        LoopbackServer.bytes_route(GOOD_PNG if ok else b"wrong host", status=200 if ok else 400)(h)

    return fn


@pytest.fixture(scope="module")
def server():
    with LoopbackServer() as srv:
        srv.route("/ok.png", srv.bytes_route(GOOD_PNG))
        srv.route("/ok.jpg", srv.bytes_route(GOOD_JPEG, "image/jpeg"))
        srv.route("/anim.gif", srv.bytes_route(gif_bytes(), "image/gif"))
        srv.route("/small.png", srv.bytes_route(png_bytes(100, 80)))
        srv.route("/wrong-type.png", srv.bytes_route(GOOD_PNG, "text/plain"))
        srv.route("/page.jpg", srv.bytes_route(b"<!DOCTYPE html><html><body>Not found</body></html>", "image/jpeg"))
        srv.route("/truncated.jpg", srv.bytes_route(GOOD_JPEG[: len(GOOD_JPEG) // 2], "image/jpeg"))
        srv.route("/slow-headers.png", srv.bytes_route(GOOD_PNG, delay=3.0))
        srv.route("/slow-ok.png", srv.bytes_route(GOOD_PNG, delay=0.4))
        srv.route("/gone.png", srv.bytes_route(b"", status=404))
        srv.route("/error.png", srv.bytes_route(b"oops", "text/plain", status=503))
        srv.route("/endless.png", _endless)
        srv.route("/lying.jpg", _lying_length)
        srv.route("/bomb.png", _bomb)
        srv.route("/trickle.png", _trickle)
        srv.route("/gzip-bomb.png", _gzip_bomb)
        srv.route("/to-private", srv.redirect_route("http://10.0.0.1/secret.png"))
        srv.route("/to-metadata", srv.redirect_route("http://169.254.169.254/latest/meta-data/"))
        srv.route("/to-loopback", srv.redirect_route(srv.url("/ok.png")))
        srv.route("/to-file", srv.redirect_route("file:///etc/passwd"))
        srv.route("/to-relative", srv.redirect_route("/ok.png", 301))
        srv.route("/loop", srv.redirect_route("/loop"))
        yield srv


@pytest.fixture
def loopback() -> SafeFetcher:
    return SafeFetcher(FetchPolicy.allowing_loopback())


def fetch(fetcher: SafeFetcher, url: str):
    return asyncio.run(fetcher.fetch(url))


def refused(fetcher: SafeFetcher, url: str) -> str:
    with pytest.raises(FetchError) as info:
        fetch(fetcher, url)
    return str(info.value)


# -- good images -------------------------------------------------------------------------------


def test_png_and_jpeg_are_kept_byte_for_byte(server, loopback):
    png = fetch(loopback, server.url("/ok.png"))
    assert (png.format, png.width, png.height, png.data) == ("png", 500, 500, GOOD_PNG)
    jpeg = fetch(loopback, server.url("/ok.jpg"))
    assert (jpeg.format, jpeg.width, jpeg.height, jpeg.data) == ("jpeg", 640, 480, GOOD_JPEG)


def test_other_formats_become_png(server, loopback):
    image = fetch(loopback, server.url("/anim.gif"))
    assert (image.format, image.width, image.height) == ("png", 450, 450)
    assert image.data.startswith(b"\x89PNG")


def test_content_type_is_ignored_bytes_decide(server, loopback):
    assert fetch(loopback, server.url("/wrong-type.png")).format == "png"
    reason = refused(loopback, server.url("/page.jpg"))
    assert "not a readable image" in reason and "HTML" in reason


def test_truncated_jpeg_is_refused(server, loopback):
    assert "not a readable image" in refused(loopback, server.url("/truncated.jpg"))


def test_minimum_size(server):
    fetcher = SafeFetcher(FetchPolicy.allowing_loopback(min_width=400, min_height=400))
    assert "smaller than the minimum 400x400" in refused(fetcher, server.url("/small.png"))
    assert fetch(fetcher, server.url("/ok.png")).width == 500


def test_usable_from_several_event_loops(server, loopback):
    for _ in range(3):
        assert asyncio.run(loopback.fetch(server.url("/ok.png"))).width == 500


# -- addresses -----------------------------------------------------------------------------------


def test_loopback_refused_by_default(server):
    reason = refused(SafeFetcher(), server.url("/ok.png"))
    assert "non-public address 127.0.0.1 refused (loopback)" in reason


def test_hostname_resolving_to_loopback_is_refused():
    # the real system resolver: "localhost" comes from /etc/hosts, no network needed
    reason = refused(SafeFetcher(), "http://localhost:9/x.png")
    assert "host 'localhost' resolves to non-public address" in reason


def test_resolver_hook_rebinding_name_is_refused(server):
    async def evil(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "127.0.0.1"]  # one public answer does not excuse the other

    reason = refused(SafeFetcher(resolver=evil), server.url("/ok.png", host="evil.test"))
    assert "host 'evil.test' resolves to non-public address 127.0.0.1" in reason


def test_connection_goes_to_vetted_ip_with_original_host_header(server):
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return ["127.0.0.1"]

    expected = [f"images.test:{server.port}"]
    server.route("/host-checked.png", _host_checked(expected))
    fetcher = SafeFetcher(FetchPolicy(allow_hosts=("images.test",)), resolver=resolver)
    image = fetch(fetcher, server.url("/host-checked.png", host="images.test"))
    assert image.width == 500 and calls == ["images.test"]


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/to-private", "non-public address 10.0.0.1 refused (private)"),
        ("/to-metadata", "non-public address 169.254.169.254 refused (link-local)"),
        ("/to-loopback", "non-public address 127.0.0.1 refused (loopback)"),
        ("/to-file", "redirect to scheme 'file' refused"),
    ],
)
def test_redirects_are_checked_on_every_hop(server, path, needle):
    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    # only the name images.test is trusted; the literal 127.0.0.1 in a redirect is not
    fetcher = SafeFetcher(FetchPolicy(allow_hosts=("images.test",)), resolver=resolver)
    assert needle in refused(fetcher, server.url(path, host="images.test"))


def test_relative_redirect_followed_and_loops_cut(server, loopback):
    assert fetch(loopback, server.url("/to-relative")).width == 500
    assert "more than 5 redirects" in refused(loopback, server.url("/loop"))


def test_non_http_schemes_refused(loopback):
    assert "only http and https" in refused(loopback, "file:///etc/passwd")
    assert "only http and https" in refused(loopback, "ftp://example.com/a.png")


def test_ipv6_wrappers_of_private_addresses():
    assert not is_public_address("::ffff:127.0.0.1")
    assert not is_public_address("2002:0a00:0001::1")  # 6to4 around 10.0.0.1
    assert not is_public_address("fe80::1")
    assert not is_public_address("224.0.0.1")
    assert is_public_address("2606:4700::1111")


# -- sizes and time ------------------------------------------------------------------------------


def test_declared_two_gigabytes_refused_before_reading(server, loopback):
    reason = refused(loopback, server.url("/lying.jpg"))
    assert "declares 2,147,483,648 bytes" in reason


def test_endless_stream_cut_at_byte_cap(server):
    fetcher = SafeFetcher(FetchPolicy.allowing_loopback(max_bytes=2_000_000))
    assert "exceeded the 2,000,000-byte limit" in refused(fetcher, server.url("/endless.png"))


def test_gzip_bomb_cut_at_decoded_byte_cap(server):
    fetcher = SafeFetcher(FetchPolicy.allowing_loopback(max_bytes=2_000_000))
    assert "exceeded the 2,000,000-byte limit" in refused(fetcher, server.url("/gzip-bomb.png"))


def test_pixel_bomb_refused_from_header(server):
    fetcher = SafeFetcher(FetchPolicy.allowing_loopback(max_bytes=100_000_000))
    reason = refused(fetcher, server.url("/bomb.png"))
    assert "decompression bomb" in reason or "pixel limit" in reason
    # refused from the header: far less than the 50 MB body was requested to be read
    assert "exceeded" not in reason


def test_trickling_server_cut_at_total_time(server):
    fetcher = SafeFetcher(FetchPolicy.allowing_loopback(total_timeout=2.0, read_timeout=5.0))
    reason = refused(fetcher, server.url("/trickle.png"))
    assert "total limit of 2 s" in reason


def test_slow_headers_cut_at_read_timeout(server):
    fetcher = SafeFetcher(FetchPolicy.allowing_loopback(read_timeout=0.5))
    assert "no response within 0.5 s" in refused(fetcher, server.url("/slow-headers.png"))


def test_http_errors_marked_transient_when_worth_retrying(server, loopback):
    with pytest.raises(FetchError) as gone:
        fetch(loopback, server.url("/gone.png"))
    assert "HTTP 404" in str(gone.value) and not gone.value.transient
    with pytest.raises(FetchError) as err:
        fetch(loopback, server.url("/error.png"))
    assert "HTTP 503" in str(err.value) and err.value.transient
    assert isinstance(err.value, ToolError)


# -- first valid in rank order -----------------------------------------------------------------


def test_first_valid_keeps_rank_order(server, loopback):
    urls = [server.url(p) for p in ("/gone.png", "/page.jpg", "/slow-ok.png", "/ok.jpg")]
    image, url = asyncio.run(loopback.first_valid(urls, concurrency=4))
    # /ok.jpg finishes first, but /slow-ok.png ranks higher
    assert url.endswith("/slow-ok.png") and image.format == "png"


def test_first_valid_reports_every_reason(server, loopback):
    urls = [server.url(p) for p in ("/gone.png", "/page.jpg", "/truncated.jpg")]
    with pytest.raises(FetchError) as info:
        asyncio.run(loopback.first_valid(urls))
    text = str(info.value)
    assert "none of 3 candidate images was usable" in text
    assert "HTTP 404" in text and "HTML" in text and "not a readable image" in text


def test_first_valid_bounds_concurrency(server, loopback):
    lock = threading.Lock()
    counts = {"active": 0, "max": 0, "served": 0}
    slow_bad = server.bytes_route(b"nope", "image/png", delay=0.3)

    def counted(h: BaseHTTPRequestHandler) -> None:
        with lock:
            counts["active"] += 1
            counts["served"] += 1
            counts["max"] = max(counts["max"], counts["active"])
        try:
            slow_bad(h)
        finally:
            with lock:
                counts["active"] -= 1

    for i in range(6):
        server.route(f"/slow-bad-{i}.png", counted)
    urls = [server.url(f"/slow-bad-{i}.png") for i in range(6)] + [server.url("/ok.png")]
    image, url = asyncio.run(loopback.first_valid(urls, concurrency=2))
    assert url.endswith("/ok.png") and image.width == 500
    assert counts["served"] == 6 and counts["max"] == 2


# -- TLS: the connection goes to the vetted IP, SNI and the certificate check use the name ---------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=images.test", "-addext", "subjectAltName=DNS:images.test"],
        check=True, capture_output=True,
    )
    seen_sni: list[str | None] = []
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)
    with LoopbackServer() as srv:
        srv.httpd.socket = server_ctx.wrap_socket(srv.httpd.socket, server_side=True)
        srv.route("/ok.png", srv.bytes_route(GOOD_PNG))
        client_ctx = ssl.create_default_context(cafile=str(cert))
        yield srv, client_ctx, seen_sni


def test_https_pins_ip_and_checks_certificate_against_the_name(tls_server):
    srv, client_ctx, seen_sni = tls_server

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    policy = FetchPolicy(allow_hosts=("images.test", "impostor.test"))
    fetcher = SafeFetcher(policy, resolver=resolver, ssl_context=client_ctx)
    image = fetch(fetcher, f"https://images.test:{srv.port}/ok.png")
    assert image.data == GOOD_PNG
    assert seen_sni[-1] == "images.test"
    # same IP, but the certificate is not for this name: refused
    reason = refused(fetcher, f"https://impostor.test:{srv.port}/ok.png")
    assert "certificate" in reason.lower() or "hostname" in reason.lower()


def test_next_vetted_address_tried_when_one_refuses(server):
    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.3", "127.0.0.1"]  # nothing listens on .3: refused, then .1 answers

    fetcher = SafeFetcher(FetchPolicy.allowing_loopback(), resolver=resolver)
    assert fetch(fetcher, server.url("/ok.png", host="two-addresses.test")).width == 500

    async def dead(host: str, port: int) -> list[str]:
        return ["127.0.0.3"]

    assert "connection failed" in refused(SafeFetcher(FetchPolicy.allowing_loopback(), resolver=dead),
                                          server.url("/ok.png", host="dead.test"))
