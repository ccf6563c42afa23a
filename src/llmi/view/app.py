"""The viewer's web application: FastAPI routes over one folder, read-only, no script.

``create_app(root)`` returns an ASGI application that serves

======================================  ==============================================
``/``                                   everything in the folder, newest first, searchable
``/doc/<folder>``                       a document, a side panel per image (``#image-N``)
``/img/<folder>?tag=N`` / ``?input=N``  one of its pictures (raster images only)
``/eval/<run>?<filters>``               an evaluation run: summary, plots, item table
``/item/<run>?key=K``                   one item: its document, scores and justifications
``/compare?a=<run>&b=<run>``            two runs item by item; ``/compare/item`` side by side
``/train/<run>`` and ``?step=N``        a training run: curves and sample documents per step
======================================  ==============================================

Every response carries a Content-Security-Policy that allows no script at all and nothing
from another origin (``default-src 'none'``; pictures and the stylesheet from the viewer
itself; forms only to itself), plus ``nosniff``, no referrer and no framing. Only ``GET`` and
``HEAD`` are answered, and only for the host names the viewer was started for, so a web page
elsewhere cannot read the folder through a rebound DNS name.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Annotated, Any, Awaitable, Callable, Iterable, Mapping

from ..errors import ConfigError, MissingDependency
from . import pages, urls
from .documents import DocumentStore, document_page, image_file, scores_of
from .evals import PAGE_SIZE, CompareQuery, Comparison, ItemQuery, RunStore, compare_runs, filter_pairs, filter_rows, paginate
from .index import MAX_DEPTH, MAX_FOLDERS, Entry, Index, NotThere, Unreadable
from .scaling import scaling_view
from .training import TrainingStore, headline, sample_entries, step_samples, steps_with_samples

try:  # this module is the web application: it cannot be imported without its framework
    from fastapi import FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, HTMLResponse, Response
    from starlette.exceptions import HTTPException
    from starlette.middleware.trustedhost import TrustedHostMiddleware
except ImportError:  # pragma: no cover - the view extra is missing
    raise MissingDependency("fastapi", "view") from None

__all__ = ["CSP", "LOOPBACK_HOSTS", "create_app"]

CSP = ("default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
KIND_LABELS = {"document": "document", "scaling": "scaling", "eval": "evaluation", "training": "training"}


class _Guard:
    """ASGI middleware: GET and HEAD only, and the security headers on every response."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Mapping[str, Any], receive: Callable[[], Awaitable[Any]],
                       send: Callable[[Any], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        if scope["method"] not in ("GET", "HEAD"):
            await with_headers({"type": "http.response.start", "status": 405,
                                "headers": [(b"allow", b"GET, HEAD"), (b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "http.response.body", "body": b"llmi view is read-only\n"})
            return
        await self.app(scope, receive, with_headers)


def _rel(path: str) -> str:
    """A folder address as the index keys it: no leading, trailing or doubled slashes."""
    path = path.strip("/")
    if not path:
        return ""
    norm = posixpath.normpath(path)
    return "" if norm == "." else norm


def _entry_link(entry: Entry) -> str:
    if entry.kind == "eval":
        return urls.eval_run(entry.id)
    if entry.kind == "training":
        return urls.training(entry.id)
    return urls.doc(entry.id)


def create_app(root: str | Path, *, allowed_hosts: Iterable[str] | None = LOOPBACK_HOSTS) -> FastAPI:
    """The viewer of the folder ``root``. ``allowed_hosts``: the host names requests may name
    (``None``: any, for a server deliberately shared on a network)."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give llmi view the folder to show")
    index, documents, runs, trainings = Index(root), DocumentStore(root), RunStore(root), TrainingStore(root)
    app = FastAPI(title="llmi view", docs_url=None, redoc_url=None, openapi_url=None)
    common = {"root": str(root), "root_name": root.name or str(root)}

    def page(template: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        return HTMLResponse(pages.render(template, **common, **values), status_code=status_code,
                            headers={"cache-control": "no-cache"})

    def problem(status: int, heading: str, message: str) -> HTMLResponse:
        return page("error.html", status, status=status, heading=heading, message=message)

    @app.exception_handler(NotThere)
    async def _missing(request: Request, exc: NotThere) -> HTMLResponse:
        return problem(404, "Not found", str(exc))

    @app.exception_handler(Unreadable)
    async def _unreadable(request: Request, exc: Unreadable) -> HTMLResponse:
        return problem(422, "This cannot be read", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_query(request: Request, exc: RequestValidationError) -> HTMLResponse:
        where = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}" for e in exc.errors())
        return problem(400, "Bad address", f"the address has a value the viewer does not understand ({where})")

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> HTMLResponse:
        return problem(exc.status_code, "Not found" if exc.status_code == 404 else "Error", str(exc.detail))

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get(f"/static/{pages.CSS_NAME}", include_in_schema=False)
    def stylesheet() -> Response:
        return Response(pages.stylesheet(), media_type="text/css; charset=utf-8",
                        headers={"cache-control": "public, max-age=86400"})

    @app.get("/", response_class=HTMLResponse)
    def home(q: str = "", kind: str = "", page_number: Annotated[int, Query(alias="page", ge=1)] = 1) -> HTMLResponse:
        everything = index.found()  # names and stat only: entries are read for the page shown
        counts = {k: sum(1 for f in everything if f.kind == k) for k in ("document", "eval", "training")}
        found = index.search(q, [kind] if kind in KIND_LABELS else [])
        shown, pager = paginate(found, page_number, PAGE_SIZE)
        runs = [f for f in everything if f.kind == "eval" and not index.describe(f).problem]
        return page("index.html", entries=[index.describe(f) for f in shown], found=len(found), q=q, kind=kind,
                    pages=pager, counts={"all": len(everything), **counts}, kinds=list(KIND_LABELS.items()),
                    labels=KIND_LABELS, runs=runs, link=_entry_link,
                    page_link=lambda n: urls.query("/", q=q, kind=kind, page=n), truncated=index.truncated,
                    max_depth=MAX_DEPTH, max_folders=MAX_FOLDERS)

    @app.get("/doc/{rel:path}", response_class=HTMLResponse)
    def document(rel: str) -> HTMLResponse:
        loaded = documents.get(_rel(rel))
        record = loaded.doc.meta.get("scaling")
        return page("document.html", page=document_page(loaded),
                    scaling=scaling_view(record) if isinstance(record, Mapping) else None)

    @app.get("/img/{rel:path}")
    def picture(rel: str, tag: Annotated[int | None, Query(ge=0)] = None,
                input: Annotated[int | None, Query(ge=0)] = None) -> Response:
        if (tag is None) == (input is None):
            raise NotThere("name one picture: ?tag=N or ?input=N")
        path, media = image_file(documents.get(_rel(rel)), tag=tag, input=input)
        return FileResponse(path, media_type=media, headers={"cache-control": "private, max-age=300"})

    @app.get("/eval/{rel:path}", response_class=HTMLResponse)
    def eval_run(rel: str, f: Annotated[ItemQuery, Query()]) -> HTMLResponse:
        run = runs.get(_rel(rel))
        selected = filter_rows(run.rows, f)
        shown, pager = paginate(selected, f.page)
        scores = sorted({v for row in run.rows for v in row.criteria.values() if v is not None})
        return page("eval.html", run=run, rows=shown, selected=len(selected), f=f, pages=pager,
                    scores=[pages.number(v, 0) for v in scores],
                    page_link=lambda n: urls.eval_run(run.rel, **f.params(page=n)),
                    sort_link=lambda column: urls.eval_run(
                        run.rel, **f.params(sort=column, desc=not f.desc if f.sort == column else column != "index",
                                            page=1)))

    @app.get("/item/{rel:path}", response_class=HTMLResponse)
    def item(rel: str, key: str) -> HTMLResponse:
        run = runs.get(_rel(rel))
        record = run.records.get(key)
        if record is None:
            raise NotThere(f"the run has no item {key!r}")
        position = run.position(key)
        prev_row = run.rows[position - 1] if position else None
        next_row = run.rows[position + 1] if position is not None and position + 1 < len(run.rows) else None
        scores = scores_of(record.get("criteria") or ())
        doc_rel = run.document_rel(record)
        doc_page, doc_problem = None, None
        if doc_rel is not None:
            try:
                doc_page = document_page(documents.get(doc_rel), scores)
            except (NotThere, Unreadable) as exc:
                doc_problem = str(exc)
        return page("item.html", run=run, record=record, key=key, row=run.rows[position] if position is not None else None,
                    scores=scores, doc=doc_page, doc_problem=doc_problem, prev_row=prev_row, next_row=next_row)

    comparisons: dict[tuple[str, str], Comparison] = {}

    @app.get("/compare", response_class=HTMLResponse)
    def compare(f: Annotated[CompareQuery, Query()]) -> HTMLResponse:
        a, b = runs.get(_rel(f.a)), runs.get(_rel(f.b))
        comparison = comparisons.get((a.rel, b.rel))
        if comparison is None or comparison.a is not a or comparison.b is not b:  # a run changed since
            comparison = comparisons[(a.rel, b.rel)] = compare_runs(a, b)
            while len(comparisons) > 8:
                comparisons.pop(next(iter(comparisons)))
        selected = filter_pairs(comparison.pairs, f)
        shown, pager = paginate(selected, f.page)
        params = f.model_dump()
        return page("compare.html", c=comparison, pairs=shown, selected=len(selected), f=f, pages=pager,
                    page_link=lambda n: urls.compare(**{**params, "page": n}),
                    sort_link=lambda column: urls.compare(**{**params, "sort": column, "page": 1,
                                                             "desc": not f.desc if f.sort == column else column != "index"}))

    @app.get("/compare/item", response_class=HTMLResponse)
    def compare_item(a: str, b: str, key: str) -> HTMLResponse:
        sides = []
        for label, rel in (("A", a), ("B", b)):
            run = runs.get(_rel(rel))
            record = run.records.get(key)
            side: dict[str, Any] = {"label": label, "run": run, "record": record, "doc": None, "problem": None,
                                    "scores": scores_of((record or {}).get("criteria") or ())}
            if record is None:
                side["problem"] = "this run has no such item"
            elif (doc_rel := run.document_rel(record)) is not None:
                try:
                    side["doc"] = document_page(documents.get(doc_rel), side["scores"], prefix=f"{label.lower()}-")
                except (NotThere, Unreadable) as exc:
                    side["problem"] = str(exc)
            sides.append(side)
        return page("compare_item.html", sides=sides, key=key, a=a, b=b)

    @app.get("/train/{rel:path}", response_class=HTMLResponse)
    def training(rel: str, step: Annotated[int | None, Query(ge=0)] = None) -> HTMLResponse:
        run = trainings.get(_rel(rel))
        steps = steps_with_samples(run)
        if step is not None and step not in steps:
            raise NotThere(f"the run kept no samples at step {step}")
        samples = step_samples(run, steps[-1] if step is None else step) if steps else None
        return page("train.html", run=run, headline=headline(run), steps=steps, samples=samples,
                    docs=sample_entries(root, samples) if samples is not None else [])

    if allowed_hosts is not None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(_Guard)
    app.state.index = index
    return app
