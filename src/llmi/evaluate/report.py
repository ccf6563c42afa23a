"""One self-contained HTML report per run, built from ``results.jsonl`` and the saved documents.

The page has the run's headline and tables, charts (score distribution, per-criterion means,
tool success, failure reasons, time per stage), the configuration it ran with, and every item
with its rendered document, scores and justifications. Like llmi's document pages it runs no
script and loads nothing: documents are rendered by ``llmi.renderers.html`` (model prose through
Markdown with raw HTML off, then sanitised), everything else the model or the judge wrote is
escaped, and a Content-Security-Policy forbids scripts and external resources.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .plots import hbars, histogram, stacked
from .runs import RunDir, atomic_write
from .summary import Summary, Table, stage_latencies

__all__ = ["plots_html", "render_report", "table_html", "write_report"]

_REPORT_CSS = """
main.report { max-width: 64rem; }
.report .headline { display: grid; grid-template-columns: max-content 1fr; gap: 0.2em 1em; }
.report .headline dt { color: var(--muted); }
.report .headline dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; }
.report .plots { display: flex; flex-wrap: wrap; gap: 1.2em; }
.report .plots svg { max-width: 100%; height: auto; }
.report details.item { border: 1px solid var(--line); border-radius: 6px; padding: 0.4em 0.8em; margin: 0.6em 0;
  font-size: 1em; color: var(--fg); }
.report details.item > summary { cursor: pointer; font-weight: 600; }
.report details.item.error { border-left: 5px solid var(--bad); }
.report .score { font-variant-numeric: tabular-nums; }
.report table { font-size: 0.85em; }
.report th, .report td { overflow-wrap: normal; word-break: keep-all; }
.report td.num { white-space: nowrap; }
.report td.s0 { background: var(--bad-bg); }
.report td.s2 { color: var(--ok); font-weight: 600; }
.report .judge-error { color: var(--bad); }
.report .document { border-top: 1px dashed var(--line); margin-top: 1em; padding-top: 0.5em; }
.report pre.config { white-space: pre-wrap; font-size: 0.8em; }
.report .note { color: var(--muted); font-size: 0.9em; }
"""


def _e(text: Any) -> str:
    return escape(str(text), quote=True)


def _css() -> tuple[str, str]:
    from ..renderers.html import stylesheet

    css = stylesheet() + _REPORT_CSS
    digest = base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode("ascii")
    return css, f"'sha256-{digest}'"


def table_html(table: Table) -> str:
    """One summary table, escaped (the report and the viewer show tables alike)."""
    if not table.rows:
        return f"<h3>{_e(table.title)}</h3><p class=\"note\">Nothing to show.</p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{_e(v)}</td>' if isinstance(v, (int, float)) else f"<td>{_e(v)}</td>"
                         for v in row) + "</tr>"
        for row in table.rows
    )
    note = f'<p class="note">{_e(table.note)}</p>' if table.note else ""
    return f"<h3>{_e(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def plots_html(summary: Summary, records: Sequence[Mapping[str, Any]]) -> str:
    """The run's charts as inline SVG: item scores, criteria, tools, failure reasons, time per stage."""
    charts = []
    if summary.scores:
        charts.append(histogram(summary.scores, lo=summary.scale[0], hi=summary.scale[1], title="Item scores"))
    if summary.bars:
        charts.append(hbars(summary.bars, lo=summary.bar_scale[0], hi=summary.bar_scale[1], title="Mean per criterion"))
    tools: dict[str, list[int]] = {}
    reasons: Counter[str] = Counter()
    for r in records:
        for tool, row in (r.get("tools") or {}).items():
            t = tools.setdefault(tool, [0, 0])
            t[0] += int(row.get("success", 0))
            t[1] += int(row.get("total", 0)) - int(row.get("success", 0))
        for f in r.get("image_failures") or ():
            reasons[f"{f.get('tool') or 'invalid'}: {f.get('error_type') or 'error'}"] += 1
        for c in r.get("criteria") or ():
            if c.get("error"):
                reasons[f"judge: {c.get('error_type') or 'error'}"] += 1
        if r.get("status") != "ok":
            reasons[f"item: {r.get('error_type') or 'error'}"] += 1
    if tools:
        charts.append(stacked([(t, ok, bad) for t, (ok, bad) in tools.items()], title="Images per tool",
                              labels=("made", "failed")))
    if reasons:
        top = reasons.most_common(12)
        charts.append(hbars([(k, float(n)) for k, n in top], hi=float(top[0][1]), title="Failure reasons"))
    stages = stage_latencies(records)
    if stages:
        rows, p90 = [], []
        for stage, values in stages.items():
            values.sort()
            rows.append((stage, values[len(values) // 2]))
            p90.append(values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))])
        charts.append(hbars(rows, hi=max(p90) or 1.0, title="Seconds per item and stage (median)", unit=" s",
                            whiskers=p90))
    return f'<section class="plots">{"".join(charts)}</section>' if charts else ""


def _criteria(record: Mapping[str, Any]) -> str:
    rows = []
    for c in record.get("criteria") or ():
        score = c.get("score")
        cell = "—" if score is None else f"{score}/{c['max']}" if c.get("max") else str(score)
        css = f' class="s{score}"' if score in (0, 2) and c.get("max") == 2 else ""
        why = _e(c.get("justification") or "")
        if c.get("error"):
            why += f'<div class="judge-error">judge failure ({_e(c.get("error_type") or "error")}): {_e(c["error"])}</div>'
        rows.append(f"<tr><td>{_e(c.get('name'))}</td><td>{_e(c.get('text') or '')}</td>"
                    f'<td{css} class="score">{_e(cell)}</td><td>{why}</td></tr>')
    if not rows:
        return ""
    return ("<table><thead><tr><th></th><th>criterion</th><th>score</th><th>justification</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _document(run: RunDir, record: Mapping[str, Any]) -> str:
    rel = record.get("doc")
    if not isinstance(rel, str):
        return ""
    from ..errors import LlmiError
    from ..renderers.html import render_fragment
    from ..renderers.json import load

    path = (run.path / rel).resolve()
    if not path.is_relative_to(run.path.resolve()) or not path.is_file():
        return '<p class="note">The document is missing from the run folder.</p>'
    try:
        doc = load(path)
    except (OSError, ValueError, KeyError, TypeError, LlmiError) as exc:
        return f'<p class="note">The document could not be read: {_e(exc)}</p>'
    return f'<div class="document">{render_fragment(doc)}</div>'


def _item(run: RunDir, record: Mapping[str, Any], extra: Any) -> str:
    key = record.get("key")
    failed = record.get("status") != "ok"
    score = record.get("score")
    label = "failed" if failed else ("no score" if score is None else f"{score:.3f}" if isinstance(score, float) else str(score))
    head = f"{_e(key)} · <span class=\"score\">{_e(label)}</span>"
    title = record.get("title") or record.get("prompt") or ""
    if title:
        head += f" · {_e(str(title)[:100])}"
    body = []
    if record.get("prompt"):
        body.append(f'<blockquote class="prompt">{_e(record["prompt"])}</blockquote>')
    if failed:
        body.append(f'<p class="judge-error">{_e(record.get("error_type") or "error")}: {_e(record.get("error") or "")}</p>')
    if extra is not None:
        body.append(extra(record))
    body.append(_criteria(record))
    body.append(_document(run, record))
    css = "item error" if failed else "item"
    return f'<details class="{css}" id="item-{_e(key)}"><summary>{head}</summary>{"".join(body)}</details>'


def render_report(run: RunDir, summary: Summary, records: Iterable[Mapping[str, Any]] | None = None,
                  *, item_extra: Any = None) -> str:
    """The report page for ``run`` as a string."""
    records = list(run.records() if records is None else records)
    config = run.config()
    css, css_hash = _css()
    csp = f"default-src 'none'; img-src data:; style-src {css_hash}; base-uri 'none'; form-action 'none'"
    bench = (config.get("benchmark") or {}).get("path") or ""
    title = f"llmi eval {summary.kind}" + (f": {Path(str(bench)).name}" if bench else "")
    headline = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in summary.headline)
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in summary.notes)
    tables = "".join(table_html(t) for t in summary.tables)
    items = "".join(_item(run, r, item_extra) for r in sorted(records, key=lambda r: (r.get("index", 0), r["key"])))
    config_text = json.dumps(config, ensure_ascii=False, indent=2)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n<meta name="generator" content="llmi">\n'
        f"<title>{_e(title)}</title>\n<style>{css}</style>\n</head>\n<body>\n<main class=\"report\">\n"
        f"<header><h1>{_e(title)}</h1><dl class=\"headline\">{headline}</dl>{notes}</header>\n"
        f"{plots_html(summary, records)}\n<section><h2>Tables</h2>{tables}</section>\n"
        f"<section><h2>Items ({len(records)})</h2>{items}</section>\n"
        f"<section><h2>Configuration</h2><pre class=\"config\">{_e(config_text)}</pre></section>\n"
        f"<footer><p>Written by llmi {_e(config.get('llmi_version', ''))} from {_e(run.results_path.name)}.</p></footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def write_report(run: RunDir, summary: Summary, **kwargs: Any) -> Path:
    """Write ``report.html`` into the run folder; returns its path."""
    atomic_write(run.report_path, render_report(run, summary, **kwargs))
    return run.report_path
