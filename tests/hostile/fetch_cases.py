"""A corpus of hostile downloads, each with the reason ``SafeFetcher`` must give for refusing it.

Every case is a URL a model, a search engine or an image provider could hand llmi, served by
a real HTTP server on 127.0.0.1 that only the made-up name ``images.test`` is trusted to reach
(``FetchPolicy(allow_hosts=("images.test",))`` with a resolver mapping it to 127.0.0.1): every
literal address, redirect target and other name is judged by the public-address rules.

``url`` is a path on that server (``/x``, fetched as ``http://images.test:PORT/x``) or a whole
URL where ``@PORT@`` is the server's port; ``route`` (``(handler) -> None``) is what the server
does at that path; ``dns`` are the addresses the resolver gives for ``evil.test``.

Whatever the case, the test also checks that the refusal is a ``FetchError``, that
``first_valid([case, good])`` still returns the good image, and that the next fetch works.
"""

from __future__ import annotations

import gzip
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler

from search_fixtures import png_bytes

GOOD_PNG = png_bytes(64, 64)


@dataclass(frozen=True)
class FetchCase:
    name: str
    url: str
    reason: str  # regex the FetchError must match
    route: Callable[[BaseHTTPRequestHandler], None] | None = None
    dns: tuple[str, ...] = ()


def _raw(data: bytes) -> Callable[[BaseHTTPRequestHandler], None]:
    """A route that writes ``data`` as the whole response, status line and all."""

    def fn(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        h.wfile.write(data)
        h.wfile.flush()

    return fn


def encoded(body: bytes, encoding: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def fn(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Encoding", encoding)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return fn


def _nested_gzip(data: bytes, times: int) -> bytes:
    for _ in range(times):
        data = gzip.compress(data, compresslevel=9)
    return data


def _zeros_gzip(megabytes: int) -> bytes:
    """A gzip stream of a PNG signature and ``megabytes`` MB of zeros, made in milliseconds.

    After a full flush the compressor starts afresh, so every megabyte of zeros compresses to
    the same bytes: one is made and repeated. The stream has no end (the fetcher must stop
    long before it).
    """
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = z.compress(GOOD_PNG[:16]) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(b"\0" * (1 << 20)) + z.flush(zlib.Z_FULL_FLUSH)
    return head + block * megabytes


# 2 GB of zeros, gzipped twice: a few kB on the wire (the was 1,827 bytes)
GZIP_GZIP_BOMB = gzip.compress(_zeros_gzip(2048), compresslevel=9)


def _swallowed(megabytes: int) -> bytes:
    """gzip around a gzip stream of nothing but empty stored blocks (5 bytes each, no output).

    The outer layer produces ``megabytes`` MB that the inner one swallows without a byte of
    output: a decoder that only counted its final output would work on and on.
    """
    inner_head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    empty_blocks = b"\x00\x00\x00\xff\xff" * 209_715  # 1 MB of them
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = z.compress(inner_head) + z.flush(zlib.Z_FULL_FLUSH)
    block = z.compress(empty_blocks) + z.flush(zlib.Z_FULL_FLUSH)
    return head + block * megabytes


SWALLOWED = _swallowed(1024)


def redirect(location: str) -> Callable[[BaseHTTPRequestHandler], None]:
    def fn(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location.replace("@PORT@", str(h.server.server_address[1])))
        h.send_header("Content-Length", "0")
        h.end_headers()

    return fn


def _body(data: bytes, content_type: str = "image/png") -> Callable[[BaseHTTPRequestHandler], None]:
    def fn(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    return fn


def _endless_chunks(h: BaseHTTPRequestHandler) -> None:
    """A chunked body that never ends: a PNG signature, then 64 kB chunks of zeros."""
    h.close_connection = True
    h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\n")
    h.wfile.write(b"10\r\n" + GOOD_PNG[:16] + b"\r\n")
    block = b"10000\r\n" + bytes(1 << 16) + b"\r\n"
    for _ in range(1000):  # 64 MB at most: the client hangs up long before
        h.wfile.write(block)


def endless_continue(h: BaseHTTPRequestHandler) -> None:
    """``100 Continue`` after ``100 Continue``, never a response: each resets the read timeout."""
    h.close_connection = True
    for _ in range(100_000):
        h.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 100)


def trickled_headers(h: BaseHTTPRequestHandler) -> None:
    """A header line a byte every 50 ms: never silent long enough for the read timeout."""
    h.close_connection = True
    h.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(1000):
        h.wfile.write(b"x")
        h.wfile.flush()
        time.sleep(0.05)


# PostScript that PIL's EPS plugin would hand to Ghostscript to rasterise
EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n(/tmp/llmi-pwned) (w) file closefile\nshowpage\n"
SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="500" '
       b'height="500"><image xlink:href="http://169.254.169.254/latest/meta-data/" width="500" height="500"/></svg>')
# a GIF of 65535x65535 in 30 bytes
GIF_BOMB = (b"GIF89a\xff\xff\xff\xff\x00\x00\x00,\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02D\x01\x00;")
PPM = b"P6\n64 64\n255\n" + bytes(64 * 64 * 3)


def _icon_around(width: int, height: int) -> bytes:
    """An ICO whose one entry says 256x256 and holds a black PNG of ``width`` x ``height``."""
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(b"\0" + bytes(width * 3)) for _ in range(height)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    inner = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    return struct.pack("<HHHBBBBHHII", 0, 1, 1, 0, 0, 0, 0, 1, 32, len(inner), 22) + inner


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# 81 megapixels (243 MB decoded) in 236 kB, which PIL decoded on opening it
ICON_BOMB = _icon_around(9000, 9000)


def _no_location(h: BaseHTTPRequestHandler) -> None:
    h.send_response(302)
    h.send_header("Content-Length", "0")
    h.end_headers()


# fmt: off
FETCH_CASES: tuple[FetchCase, ...] = (
    # --- IPv6 forms of loopback and private addresses, written into the URL -------------------
    FetchCase("IPv4-compatible loopback in the URL", "http://[::7f00:1]:@PORT@/ok.png", r"::7f00:1 refused \(IPv4-compatible"),
    FetchCase("IPv4-translated loopback in the URL", "http://[::ffff:0:7f00:1]:@PORT@/ok.png", r"refused \(IPv4-translated\)"),
    FetchCase("IPv4-mapped loopback in the URL", "http://[::ffff:127.0.0.1]:@PORT@/ok.png", r"refused \(loopback, in IPv4-mapped\)"),
    FetchCase("NAT64 well-known prefix around a private address", "http://[64:ff9b::a00:1]:@PORT@/ok.png", r"refused \(private, in NAT64\)"),
    FetchCase("NAT64 local-use prefix", "http://[64:ff9b:1::808:808]:@PORT@/ok.png", r"refused \(NAT64 local-use\)"),
    FetchCase("6to4 around loopback", "http://[2002:7f00:1::1]:@PORT@/ok.png", r"refused \(loopback, in 6to4\)"),
    FetchCase("Teredo with a private client", "http://[2001:0:4136:e378:8000:63bf:f5ff:fffe]:@PORT@/ok.png", r"refused \(private, in Teredo\)"),
    FetchCase("site-local IPv6", "http://[fec0::1]:@PORT@/ok.png", r"refused \(site-local"),
    FetchCase("documentation IPv6", "http://[2001:db8::1]:@PORT@/ok.png", r"refused \(documentation\)"),
    FetchCase("benchmarking IPv4", "http://198.18.0.1:@PORT@/ok.png", r"refused \(benchmarking\)"),
    FetchCase("reserved IPv4", "http://240.0.0.1:@PORT@/ok.png", r"refused \(reserved\)"),
    FetchCase("shared address space", "http://100.64.0.1:@PORT@/ok.png", r"refused \(shared\)"),
    FetchCase("decimal loopback host", "http://2130706433:@PORT@/ok.png", r"127\.0\.0\.1 refused \(loopback\)|cannot resolve"),
    # --- other spellings of loopback in the URL (the resolver's inet_aton accepts them all) -------
    FetchCase("hex loopback host", "http://0x7f.0.0.1:@PORT@/ok.png", r"resolves to non-public address 127\.0\.0\.1 refused \(loopback\)"),
    FetchCase("short loopback host", "http://127.1:@PORT@/ok.png", r"resolves to non-public address 127\.0\.0\.1 refused \(loopback\)"),
    FetchCase("octal loopback host", "http://0177.0.0.1:@PORT@/ok.png", r"invalid URL|127\.0\.0\.1 refused \(loopback\)"),
    FetchCase("the host 0", "http://0:@PORT@/ok.png", r"0\.0\.0\.0 refused \(this network\)"),
    FetchCase("unspecified IPv6", "http://[::]:@PORT@/ok.png", r":: refused \(unspecified\)"),
    FetchCase("link-local IPv6 with a zone id", "http://[fe80::1%25lo]:@PORT@/ok.png", r"refused \(scoped|refused \(link-local"),
    FetchCase("the trusted name as userinfo", "http://images.test@127.0.0.1:@PORT@/ok.png", r"non-public address 127\.0\.0\.1 refused \(loopback\)"),
    FetchCase("userinfo with a password", "http://images.test:x@127.0.0.1:@PORT@/ok.png", r"non-public address 127\.0\.0\.1 refused \(loopback\)"),
    FetchCase("loopback in fullwidth digits (IDNA)", "http://\u2460\u2461\u2466.\u24ea.\u24ea.\u2460:@PORT@/ok.png", r"Invalid IDNA|127\.0\.0\.1 refused"),
    FetchCase("localhost in fullwidth letters (IDNA)", "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:@PORT@/ok.png", r"Invalid IDNA|127\.0\.0\.1 refused"),
    FetchCase("LOCALHOST", "http://LOCALHOST:@PORT@/ok.png", r"host 'localhost' resolves to non-public address"),
    # --- DNS answers ---------------------------------------------------------------------------
    FetchCase("DNS: a public answer beside a mapped loopback", "http://evil.test:@PORT@/ok.png", r"resolves to non-public address ::ffff:127\.0\.0\.1",
              dns=("93.184.216.34", "::ffff:127.0.0.1")),
    FetchCase("DNS: IPv4-compatible answer", "http://evil.test:@PORT@/ok.png", r"::7f00:1 refused \(IPv4-compatible", dns=("::7f00:1",)),
    FetchCase("DNS: NAT64 local-use answer", "http://evil.test:@PORT@/ok.png", r"refused \(NAT64 local-use\)", dns=("64:ff9b:1::a00:1",)),
    FetchCase("DNS: 6to4 around metadata", "http://evil.test:@PORT@/ok.png", r"refused \(link-local, in 6to4\)", dns=("2002:a9fe:a9fe::1",)),
    FetchCase("DNS: scoped link-local answer", "http://evil.test:@PORT@/ok.png", r"refused \(scoped|refused \(link-local", dns=("fe80::1%1",)),
    FetchCase("DNS: garbage answer", "http://evil.test:@PORT@/ok.png", r"invalid address", dns=("not-an-address",)),
    FetchCase("DNS: the unspecified address", "http://evil.test:@PORT@/ok.png", r"0\.0\.0\.0 refused \(this network\)", dns=("0.0.0.0",)),
    FetchCase("DNS: private after public", "http://evil.test:@PORT@/ok.png", r"resolves to non-public address 10\.1\.2\.3 refused \(private\)",
              dns=("8.8.8.8", "1.1.1.1", "10.1.2.3")),
    FetchCase("DNS: no answer at all", "http://evil.test:@PORT@/ok.png", r"resolves to no address"),
    # --- redirects -------------------------------------------------------------------------------
    FetchCase("redirect to a mapped loopback", "/to-mapped", r"refused \(loopback, in IPv4-mapped\)", redirect("http://[::ffff:127.0.0.1]:@PORT@/ok.png")),
    FetchCase("redirect to an IPv4-compatible address", "/to-compatible", r"refused \(IPv4-compatible", redirect("http://[::a00:1]/ok.png")),
    FetchCase("redirect to Teredo around loopback", "/to-teredo", r"refused \(loopback, in Teredo\)|refused \(\w+, in Teredo\)", redirect("http://[2001:0:7f00:1::]/x.png")),
    FetchCase("redirect to data:", "/to-data", r"redirect to scheme 'data' refused", redirect("data:image/png;base64,iVBORw0KGgo=")),
    FetchCase("redirect to javascript:", "/to-js", r"redirect to scheme 'javascript' refused", redirect("javascript:alert(1)")),
    FetchCase("redirect to a malformed URL", "/to-broken", r"redirect to an invalid URL", redirect("http://[::1")),
    FetchCase("redirect without a Location", "/no-location", r"without a Location", _no_location),
    FetchCase("redirect to ftp:", "/to-ftp", r"redirect to scheme 'ftp' refused", redirect("ftp://images.test/x.png")),
    FetchCase("redirect to file:", "/to-file-hostile", r"redirect to scheme 'file' refused", redirect("file:///etc/passwd")),
    FetchCase("scheme-relative redirect to loopback", "/to-schemeless", r"non-public address 127\.0\.0\.1 refused", redirect("//127.0.0.1:@PORT@/ok.png")),
    FetchCase("redirect to localhost by name", "/to-localhost", r"host 'localhost' resolves to non-public", redirect("http://localhost:@PORT@/ok.png")),
    FetchCase("redirect with the trusted name as userinfo", "/to-userinfo", r"non-public address 127\.0\.0\.1 refused",
              redirect("http://images.test@127.0.0.1:@PORT@/ok.png")),
    FetchCase("redirect to itself", "/self-loop", r"more than \d+ redirects", redirect("/self-loop")),
    # --- content encodings -------------------------------------------------------------------------
    FetchCase("gzip, gzip bomb (2 GB from 2 kB)", "/gzip-gzip", r"exceeded the [\d,]+-byte limit once decoded", encoded(GZIP_GZIP_BOMB, "gzip, gzip")),
    FetchCase("seventeen stacked encodings", "/seventeen", r"17 content encodings stacked", encoded(_nested_gzip(GOOD_PNG, 17), ", ".join(["gzip"] * 17))),
    FetchCase("a middle layer of empty deflate blocks", "/swallowed", r"expand to more than [\d,]+ bytes of work", encoded(SWALLOWED, "gzip, gzip")),
    FetchCase("brotli, which is not supported", "/br", r"unsupported content encoding 'br'", encoded(b"\x1b\x00\x00", "br")),
    FetchCase("corrupt gzip", "/corrupt", r"gzip encoding is corrupt", encoded(b"\x1f\x8b\x08\x00garbage-garbage-garbage", "gzip")),
    # --- protocol errors -------------------------------------------------------------------------------
    FetchCase("garbage instead of a status line", "/garbage", r"connection failed|download failed|broke off", _raw(b"NOT HTTP AT ALL\r\n\r\n")),
    FetchCase("broken chunked encoding", "/bad-chunks", r"broke off|download failed",
              _raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n")),
    FetchCase("body shorter than its Content-Length", "/short", r"broke off|not a readable image",
              _raw(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 5000\r\n\r\n" + GOOD_PNG[:100])),
    FetchCase("an endless chunked body", "/endless-chunks", r"exceeded the [\d,]+-byte limit", _endless_chunks),
    FetchCase("a chunk size past 2**64", "/huge-chunk", r"broke off|connection failed",
              _raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n" + bytes(1000))),
    FetchCase("a transfer encoding besides chunked", "/te-gzip", r"Transfer-Encoding: chunked is supported",
              _raw(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")),
    FetchCase("a 4 MB header", "/huge-header", r"connection failed \(RemoteProtocolError",
              _raw(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (4 << 20) + b"\r\nContent-Length: 10\r\n\r\n")),
    FetchCase("200,000 headers", "/many-headers", r"connection failed \(RemoteProtocolError",
              _raw(b"HTTP/1.1 200 OK\r\n" + b"X-A: b\r\n" * 200_000 + b"Content-Length: 10\r\n\r\n")),
    FetchCase("two Content-Lengths", "/two-lengths", r"conflicting Content-Length",
              _raw(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n" + bytes(20))),
    # --- content that is not a web image -----------------------------------------------------------
    FetchCase("PostScript for Ghostscript", "/eps", r"not a readable image: unrecognised format", _body(EPS, "image/png")),
    FetchCase("SVG with an external reference", "/svg", r"not a readable image: unrecognised format", _body(SVG, "image/svg+xml")),
    FetchCase("a netpbm image", "/ppm", r"not a readable image: unrecognised format", _body(PPM, "image/x-portable-pixmap")),
    FetchCase("a GIF of 65535x65535 in 30 bytes", "/gif-bomb", r"decompression bomb|pixel limit", _body(GIF_BOMB, "image/gif")),
    FetchCase("an icon hiding a 9000x9000 PNG", "/icon-bomb", r"not a readable image: unrecognised format", _body(ICON_BOMB, "image/x-icon")),
    FetchCase("HTML served as an image", "/html", r"looks like HTML", _body(b"<!DOCTYPE html><html><body>nope</body></html>", "image/jpeg")),
)
# fmt: on
