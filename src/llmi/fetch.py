"""The one safe way llmi downloads an image from a URL a model or a search engine handed it.

Every backend that downloads (search results, generated-image URLs) goes through
``SafeFetcher``. The rules, in the order they apply:

1. **Scheme**: ``http`` and ``https`` only.
2. **Address**: the host is resolved first and *every* address it resolves to must be public
   (``is_public_address``: globally routable unicast, and none of the special-purpose ranges —
   loopback, private, shared, link-local, site-local, multicast, reserved, documentation,
   benchmarking, discard, unspecified — also when an IPv4 address hides inside an IPv6 one:
   mapped, compatible, translated, NAT64 well-known and local-use, 6to4, Teredo). The
   connection then goes to the vetted IP itself (the URL is rewritten to the IP, the ``Host``
   header and TLS SNI carry the original name, and the certificate is checked against that
   name), so a DNS answer that changes between check and connect (DNS rebinding) cannot
   redirect the download.
3. **Redirects** are followed by hand, at most ``max_redirects``, each hop checked as in 1-2.
4. **Bytes**: a declared ``Content-Length`` over ``max_bytes`` is refused before reading; the
   body is streamed and cut at ``max_bytes`` whatever the header said. Content encodings
   (``gzip``, ``deflate``, stacked up to 16 deep) are undone here, a bounded step at a time, so
   the *decoded* bytes are capped as they are produced, memory stays near the cap whatever the
   compression ratio, and the work of all layers together is bounded too; any other encoding
   is refused.
5. **Time**: ``connect_timeout`` and ``read_timeout`` per operation, and ``total_timeout`` for
   the whole download, redirects included (a server trickling a byte a second is cut there).
6. **Pixels**: the image header is read as soon as it arrives, and an image declaring more than
   ``max_pixels`` is refused before its body is downloaded or decoded (decompression bombs).
7. **Content**: the bytes must decode completely as an image, whatever ``Content-Type`` says
   (HTML served as ``image/jpeg`` and truncated files are refused), and be at least
   ``min_width`` x ``min_height``. Only the decoders of web image formats are tried (JPEG,
   PNG, WebP, GIF, BMP, TIFF): EPS, which PIL would hand to Ghostscript, ICO, whose embedded
   PNG PIL decodes while opening it, SVG and the rarer formats are refused unread.
8. **Output**: JPEG, PNG and WebP are kept byte for byte; anything else (GIF, BMP, TIFF ...) is
   converted to PNG (first frame).

Every failure — a rule, a transport or protocol error, a malformed URL or redirect, anything
the HTTP stack raises — is a ``FetchError`` naming the URL, so one bad candidate never fails a
search (``first_valid`` moves on to the next).

Residual risks, stated plainly: proxies from the environment are ignored on purpose (a proxy
would resolve the name itself); the allow-list (``FetchPolicy.allow_hosts``) is for tests and
trusted internal mirrors only.

>>> policy = FetchPolicy(min_width=400, min_height=400)
>>> fetcher = SafeFetcher(policy)
>>> # image = await fetcher.fetch("https://upload.wikimedia.org/...")
>>> # image, url = await fetcher.first_valid(candidate_urls, concurrency=4)
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

import httpx

from ._addresses import is_public_address, not_public_because
from ._content_encoding import ContentDecoder
from .errors import FetchError
from .http import ssl_context
from .image import ImageData

__all__ = ["LOOPBACK", "FetchPolicy", "Resolver", "SafeFetcher", "is_public_address", "not_public_because"]

log = logging.getLogger(__name__)

#: resolver hook: ``(host, port) -> addresses`` (IP strings)
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

#: allow-list entries that let tests fetch from a server on this machine
LOOPBACK: tuple[str, ...] = ("127.0.0.0/8", "::1/128")

#: formats kept as they are; everything else is converted to PNG
_KEPT_FORMATS = {"jpeg": "jpeg", "jpg": "jpeg", "mpo": "jpeg", "png": "png", "webp": "webp"}
#: the only decoders PIL may try on downloaded bytes: web image formats (JPEG opens MPO too), not
#: every plugin PIL has (EPS would hand the bytes to Ghostscript; rarer parsers are attack
#: surface). Not ICO either: PIL decodes an icon's embedded PNG while opening it, at whatever
#: size that PNG declares, before any size check can look
_READ_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")

@dataclass(frozen=True)
class FetchPolicy:
    """Limits and rules for one ``SafeFetcher``.

    ``allow_hosts`` lists host names (matched exactly, case-insensitively, and then trusted
    whatever they resolve to) and IP addresses or networks (``"127.0.0.0/8"``) that are allowed
    although not public. Use ``FetchPolicy.allowing_loopback()`` in tests.

    >>> FetchPolicy().permits_address("10.0.0.1")
    False
    >>> FetchPolicy.allowing_loopback().permits_address("127.0.0.1")
    True
    """

    allow_hosts: tuple[str, ...] = ()
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    total_timeout: float = 20.0
    min_width: int = 0
    min_height: int = 0
    max_redirects: int = 5
    user_agent: str = "llmi/0.1 image fetcher (+https://pypi.org/project/llmi/)"
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False, default=()
    )
    _names: frozenset[str] = field(init=False, repr=False, compare=False, default=frozenset())

    def __post_init__(self) -> None:
        if isinstance(self.allow_hosts, str):
            object.__setattr__(self, "allow_hosts", (self.allow_hosts,))
        else:
            object.__setattr__(self, "allow_hosts", tuple(self.allow_hosts))
        networks, names = [], set()
        for entry in self.allow_hosts:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                names.add(entry.strip().lower().rstrip("."))
        object.__setattr__(self, "_networks", tuple(networks))
        object.__setattr__(self, "_names", frozenset(names))
        for name in ("max_bytes", "max_pixels", "max_redirects", "min_width", "min_height"):
            if getattr(self, name) < 0:
                raise ValueError(f"FetchPolicy.{name} must not be negative")

    @classmethod
    def allowing_loopback(cls, **kwargs: object) -> FetchPolicy:
        """A policy that also allows 127.0.0.0/8 and ::1 (for tests against a local server)."""
        extra = tuple(kwargs.pop("allow_hosts", ()))  # type: ignore[arg-type]
        return cls(allow_hosts=LOOPBACK + extra, **kwargs)  # type: ignore[arg-type]

    def permits_name(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._names

    def permits_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address)
        if any(ip.version == net.version and ip in net for net in self._networks):
            return True
        return is_public_address(ip)


async def _system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for *_, sockaddr in infos:
        addr = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone id
        if addr not in seen:
            seen.append(addr)
    return seen


class _Refused(Exception):
    """Internal: a rule refused the download (becomes FetchError with the URL)."""

    def __init__(self, reason: str, transient: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


class SafeFetcher:
    """Downloads images under a ``FetchPolicy``; safe to use from any event loop.

    Nothing loop-bound is kept between calls: each ``fetch`` opens and closes its own HTTP
    client (the TLS context, which is loop-free, is shared).

    ``resolver`` replaces DNS (tests map made-up names to 127.0.0.1 with it); ``ssl_context``
    replaces the system trust store (a private CA, or a test certificate).
    """

    def __init__(
        self,
        policy: FetchPolicy | None = None,
        *,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.policy = policy or FetchPolicy()
        self._resolver: Resolver = resolver or _system_resolver
        self._ssl = ssl_context  # None: llmi.http's shared context

    # -- public -------------------------------------------------------------------------------

    async def fetch(self, url: str) -> ImageData:
        """Download ``url`` and return the image; raises ``FetchError`` saying why not."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.policy.total_timeout):
                data = await self._download(url)
                return await asyncio.to_thread(self._decode, data)
        except _Refused as exc:
            raise FetchError(f"{_short(url)}: {exc.reason}", transient=exc.transient) from None
        except TimeoutError:
            elapsed = time.monotonic() - started
            raise FetchError(
                f"{_short(url)}: download took longer than the total limit of "
                f"{self.policy.total_timeout:g} s (stopped after {elapsed:.1f} s)",
                transient=True,
            ) from None
        except Exception as exc:  # noqa: BLE001 - whatever the HTTP stack raises is this URL's failure
            log.debug("unexpected error fetching %s", url, exc_info=True)
            raise FetchError(f"{_short(url)}: download failed ({type(exc).__name__}: {exc})") from None

    async def first_valid(self, urls: Iterable[str], concurrency: int = 4) -> tuple[ImageData, str]:
        """The first URL in rank order that yields a valid image, and that image.

        Up to ``concurrency`` candidates download at once; a later candidate that finishes
        first waits for the earlier ones to fail. Once the answer is known the rest are
        cancelled. Raises ``FetchError`` listing every candidate's reason when none is valid.
        """
        candidates = list(dict.fromkeys(u for u in urls if u))
        if not candidates:
            raise FetchError("no candidate image URLs to fetch")
        gate = asyncio.Semaphore(max(1, concurrency))

        async def attempt(u: str) -> ImageData:
            async with gate:
                return await self.fetch(u)

        tasks = [asyncio.create_task(attempt(u)) for u in candidates]
        reasons: list[str] = []
        try:
            for u, task in zip(candidates, tasks):
                try:
                    return await task, u
                except FetchError as exc:
                    reasons.append(str(exc))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        shown = "; ".join(reasons[:5]) + (f"; ... and {len(reasons) - 5} more" if len(reasons) > 5 else "")
        error = FetchError(f"none of {len(candidates)} candidate images was usable: {shown}")
        error.reasons = reasons  # type: ignore[attr-defined]
        raise error

    # -- stages -------------------------------------------------------------------------------

    async def _download(self, url: str) -> bytes:
        p = self.policy
        timeout = httpx.Timeout(connect=p.connect_timeout, read=p.read_timeout, write=p.read_timeout, pool=p.connect_timeout)
        # A transport, not a client: a client would resolve each redirect's Location itself
        # (and raise on one it cannot parse); trust_env=False: an environment proxy would
        # resolve the name itself and undo the pinning.
        async with httpx.AsyncHTTPTransport(verify=self._ssl_context(), trust_env=False) as transport:
            current = self._parse(url)
            for hop in range(p.max_redirects + 1):
                targets, headers, extensions = await self._pin(current)
                extensions["timeout"] = timeout.as_dict()
                response = await self._connect(transport, targets, headers, extensions)
                try:
                    if response.is_redirect:
                        if hop == p.max_redirects:
                            raise _Refused(f"more than {p.max_redirects} redirects")
                        current = self._follow(current, response)
                        continue
                    if response.status_code not in (200, 203):
                        transient = response.status_code >= 500 or response.status_code == 429
                        raise _Refused(f"HTTP {response.status_code} from {_short(str(current))}", transient)
                    return await self._read_body(response)
                finally:
                    await response.aclose()
        raise _Refused("redirect loop")  # pragma: no cover - the loop above always returns or raises

    async def _connect(
        self, transport: httpx.AsyncBaseTransport, targets: list[httpx.URL], headers: dict[str, str], extensions: dict[str, object]
    ) -> httpx.Response:
        """Send to the vetted addresses in turn (up to 3) until one accepts the connection."""
        p = self.policy
        failure = ""
        for target in targets[:3]:
            try:
                request = httpx.Request("GET", target, headers=headers, extensions=extensions)
                return await transport.handle_async_request(request)
            except httpx.ConnectTimeout:
                failure = f"could not connect within {p.connect_timeout:g} s"
            except httpx.ConnectError as exc:
                failure = f"connection failed (ConnectError: {exc})"
                if "CERTIFICATE" in str(exc).upper():
                    break  # another address of the same name would show the same certificate
            except httpx.ReadTimeout:
                raise _Refused(f"no response within {p.read_timeout:g} s", True) from None
            except httpx.HTTPError as exc:
                raise _Refused(f"connection failed ({type(exc).__name__}: {exc})", True) from None
        raise _Refused(failure, True)

    def _follow(self, current: httpx.URL, response: httpx.Response) -> httpx.URL:
        """Where a redirect points, checked like any URL."""
        location = response.headers.get("location", "").strip()
        if not location:
            raise _Refused(f"redirect (HTTP {response.status_code}) without a Location")
        try:
            target = str(current.join(location))
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise _Refused(f"redirect to an invalid URL ({exc})") from None
        return self._parse(target, redirected=True)

    def _parse(self, url: str, redirected: bool = False) -> httpx.URL:
        where = "redirect to " if redirected else ""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise _Refused(f"{where}invalid URL ({exc})") from None
        if parsed.scheme not in ("http", "https"):
            raise _Refused(f"{where}scheme {parsed.scheme or '(none)'!r} refused: only http and https")
        if not parsed.raw_host:
            raise _Refused(f"{where}URL has no host")
        return parsed

    async def _pin(self, url: httpx.URL) -> tuple[list[httpx.URL], dict[str, str], dict[str, object]]:
        """Resolve and vet ``url``'s host; the URL rewritten to each vetted IP, with Host and SNI."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            addresses = [str(literal)]
        else:
            try:
                addresses = list(await self._resolver(host, port))
            except (OSError, UnicodeError) as exc:
                raise _Refused(f"cannot resolve host {host!r} ({exc})", True) from None
            if not addresses:
                raise _Refused(f"host {host!r} resolves to no address", True)
        if not self.policy.permits_name(host):
            for address in addresses:
                try:
                    allowed = self.policy.permits_address(address)
                except ValueError:
                    raise _Refused(f"host {host!r} resolved to an invalid address {address!r}") from None
                if not allowed:
                    what = "" if literal is not None else f"host {host!r} resolves to "
                    why = not_public_because(address) or "not allowed"
                    raise _Refused(f"{what}non-public address {address} refused ({why})")
        targets = [url.copy_with(host=address, fragment=None) for address in addresses]
        host_header = f"[{host}]" if ":" in host and not host.startswith("[") else host
        if url.port is not None:
            host_header += f":{url.port}"
        headers = {
            "Host": host_header,
            "User-Agent": self.policy.user_agent,
            "Accept": "image/*,*/*;q=0.5",
            "Accept-Encoding": "identity",
        }
        extensions: dict[str, object] = {}
        if url.scheme == "https" and literal is None:
            extensions["sni_hostname"] = host
        return targets, headers, extensions

    async def _read_body(self, response: httpx.Response) -> bytes:
        cap = self.policy.max_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            raise _Refused(f"response declares {int(declared):,} bytes, over the {cap:,}-byte limit")
        try:
            # work bound: legitimate layers are each smaller than the image they hold
            encodings = response.headers.get_list("content-encoding")
            decoder = ContentDecoder(encodings, budget=cap * (2 + len(encodings)))
        except ValueError as exc:
            raise _Refused(str(exc)) from None
        buf = bytearray()
        received = 0
        size_known = False
        next_probe = 32  # probe the header at doubling sizes: a few probes, however small the chunks
        try:
            # raw bytes, decoded here a bounded step at a time: the cap holds while decoding
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received > cap:
                    raise _Refused(f"response exceeded the {cap:,}-byte limit")
                for piece in decoder.feed(chunk):
                    buf += piece
                    if len(buf) > cap:
                        raise _Refused(f"response exceeded the {cap:,}-byte limit once decoded")
                await asyncio.sleep(0)  # decoding is CPU work: let the time limit fire between chunks
                if not size_known and next_probe <= len(buf) and len(buf) <= 1 << 21:
                    size_known = self._check_header(bytes(buf))
                    next_probe = 2 * len(buf)
        except ValueError as exc:  # a corrupt encoding
            raise _Refused(str(exc)) from None
        except httpx.ReadTimeout:
            raise _Refused(f"server stopped sending for {self.policy.read_timeout:g} s", True) from None
        except httpx.HTTPError as exc:
            raise _Refused(f"download broke off ({type(exc).__name__}: {exc})", True) from None
        return bytes(buf)

    def _check_header(self, prefix: bytes) -> bool:
        """Refuse a too-large image from its header alone; True once the size is known."""
        from PIL import Image

        try:
            with Image.open(io.BytesIO(prefix), formats=_READ_FORMATS) as im:
                width, height = im.size
        except Image.DecompressionBombError as exc:
            raise _Refused(f"decompression bomb refused ({exc})") from None
        except Exception:  # noqa: BLE001 - header not complete yet, or not an image (judged after download)
            return False
        self._check_size(width, height)
        return True

    def _check_size(self, width: int, height: int) -> None:
        p = self.policy
        if width * height > p.max_pixels:
            raise _Refused(
                f"image of {width}x{height} = {width * height:,} pixels is over the "
                f"{p.max_pixels:,}-pixel limit (decompression-bomb guard)"
            )
        if width < p.min_width or height < p.min_height:
            raise _Refused(f"image of {width}x{height} is smaller than the minimum {p.min_width}x{p.min_height}")

    def _decode(self, data: bytes) -> ImageData:
        """Decode fully (catches truncation and non-images); normalise the format."""
        from PIL import Image

        if not data:
            raise _Refused("empty response")
        try:
            with Image.open(io.BytesIO(data), formats=_READ_FORMATS) as im:
                fmt = (im.format or "").lower()
                width, height = im.size
                self._check_size(width, height)
                im.load()
                if fmt in _KEPT_FORMATS:
                    return ImageData(data=data, width=width, height=height, format=_KEPT_FORMATS[fmt])
                frame = im.convert("RGBA" if ("A" in im.getbands() or "transparency" in im.info) else "RGB")
                return ImageData.from_pil(frame, "png")
        except _Refused:
            raise
        except Image.DecompressionBombError as exc:
            raise _Refused(f"decompression bomb refused ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for bad data
            head = data[:64].lstrip().lower()
            hint = " (looks like HTML)" if head.startswith((b"<!doctype html", b"<html")) else ""
            detail = "unrecognised format" if type(exc).__name__ == "UnidentifiedImageError" else f"{type(exc).__name__}: {exc}"
            raise _Refused(f"bytes are not a readable image{hint}: {detail}") from None

    def _ssl_context(self) -> ssl.SSLContext:
        return self._ssl or ssl_context()


def _short(url: str, limit: int = 120) -> str:
    url = str(url)
    return url if len(url) <= limit else url[: limit - 3] + "..."
