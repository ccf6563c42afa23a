"""Training runs (``llmi train grpo``, docs/training.md) as the viewer shows them: the settings,
the reward curves and the other figures of each step, and the sample documents of each step.

A run's folder holds ``llmi-train.json`` (the settings), ``metrics.jsonl`` (one JSON line per
logging step: TRL's figures, ``tags/*``, ``time/*``; evaluation lines carry ``eval_*`` figures
and the closing line ``train_runtime``) and ``samples/step-NNNNNN/`` (every few steps, the
documents the reward scored, one folder each). The settings and metrics are read once per
version of those two files (``TrainingStore``); a step's samples are listed when it is shown.
Every value is shown as text; a line that is not a JSON object is counted, not fatal.

>>> rows = [{"step": 1, "reward": 0.2, "tags/well_formed": 0.5}, {"step": 2, "reward": 0.4}]
>>> [(s.name, s.points) for s in series(rows, ("reward",))]
[('reward', ((1.0, 0.2), (2.0, 0.4)))]
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..evaluate.plots import _FONT, _GRID, _INK, _e, _frame, _W
from ..renderers._common import one_line
from .index import DOCUMENT_FILE, MAX_JSON_BYTES, Entry, NotThere, StampCache, Unreadable, read_json, resolve_inside

__all__ = ["METRICS_FILE", "SETTINGS_FILE", "Series", "StepSamples", "TrainingStore", "TrainingView", "line_chart",
           "figure", "headline", "load_training", "read_training_entry", "sample_entries", "series", "step_samples", "steps_with_samples"]

SETTINGS_FILE = "llmi-train.json"
METRICS_FILE = "metrics.jsonl"
SAMPLES_FOLDER = "samples"
_STEP = re.compile(r"step-(\d{1,12})")
#: the charts of a run: title, the figures drawn, the value range (None: from the data)
CHARTS: tuple[tuple[str, tuple[str, ...], tuple[float, float] | None], ...] = (
    ("Reward per step", ("reward", "eval_reward", "rewards/*/mean"), None),
    ("Tags per step (shares)", ("tags/well_formed", "tags/answers_with_tags", "tags/answers_well_formed",
                                "tags/images_ok"), (0.0, 1.0)),
    ("Loss per step", ("loss", "eval_loss"), None),
    ("Seconds per step", ("time/step", "time/generation", "time/tools", "time/judges", "time/optimisation"), None),
)
#: the columns of the step table, when the run logged them
TABLE_COLUMNS = ("reward", "reward_std", "loss", "grad_norm", "learning_rate", "completions/mean_length",
                 "tags/well_formed", "tags/images_ok", "time/step")
#: the most rows the step table shows
MAX_TABLE_ROWS = 500
_COLOURS = ("#3b6fb6", "#c05621", "#2f855a", "#805ad5", "#b83280", "#2c7a7b", "#718096")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# -- the curves -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[tuple[float, float], ...]  # (step, value)


def _names(rows: Sequence[Mapping[str, Any]], wanted: Iterable[str]) -> list[str]:
    """The figures ``wanted`` names, in order; ``a/*/b`` stands for every such figure logged."""
    logged = list(dict.fromkeys(k for row in rows for k in row))
    out: list[str] = []
    for name in wanted:
        if "*" in name:
            head, tail = name.split("*", 1)
            out += sorted(k for k in logged if k.startswith(head) and k.endswith(tail) and len(k) > len(head + tail))
        elif name in logged:
            out.append(name)
    return list(dict.fromkeys(out))


def series(rows: Sequence[Mapping[str, Any]], wanted: Iterable[str]) -> list[Series]:
    """The curves of the figures ``wanted`` over ``rows`` (steps without the figure are skipped)."""
    out = []
    for name in _names(rows, wanted):
        points = tuple((step, value) for row in rows
                       if (step := _number(row.get("step"))) is not None and (value := _number(row.get(name))) is not None)
        if points:
            out.append(Series(name, points))
    return out


def _ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    return [lo + (hi - lo) * i / count for i in range(count + 1)]


def line_chart(curves: Sequence[Series], *, title: str, span: tuple[float, float] | None = None,
               max_points: int = 400) -> str:
    """The curves as one inline SVG chart, a legend under it (escaped labels, no style
    attribute); a curve of more than ``max_points`` points is thinned evenly, keeping its last.

    >>> svg = line_chart([Series("reward", ((1, 0.1), (2, 0.3), (3, 0.2)))], title="<Reward>")
    >>> svg.startswith("<svg") and svg.count("<polyline") == 1 and "&lt;Reward&gt;" in svg
    True
    """
    left, top, width, height = 56, 26, _W - 72, 170
    steps = [x for c in curves for x, _ in c.points]
    values = [y for c in curves for _, y in c.points]
    x_lo, x_hi = (min(steps), max(steps)) if steps else (0.0, 1.0)
    y_lo, y_hi = span or ((min(values), max(values)) if values else (0.0, 1.0))
    if y_hi - y_lo < 1e-12:
        y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
    x_span = (x_hi - x_lo) or 1.0

    def at(x: float, y: float) -> str:
        return f"{left + width * (x - x_lo) / x_span:.1f},{top + height * (1 - (y - y_lo) / (y_hi - y_lo)):.1f}"

    parts = [f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="{_GRID}"/>']
    for y in _ticks(y_lo, y_hi):
        py = top + height * (1 - (y - y_lo) / (y_hi - y_lo))
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + width}" y2="{py:.1f}" stroke="{_GRID}"/>')
        parts.append(f'<text x="{left - 4}" y="{py + 4:.1f}" text-anchor="end" {_FONT} fill="{_INK}">{y:.3g}</text>')
    # steps are whole numbers: so are the ticks, once there are enough steps to spread them
    for x in sorted({round(x) for x in _ticks(x_lo, x_hi)} if x_hi - x_lo >= 4 else set(_ticks(x_lo, x_hi))):
        parts.append(f'<text x="{left + width * (x - x_lo) / x_span:.1f}" y="{top + height + 14}" text-anchor="middle" '
                     f'{_FONT} fill="{_INK}">{x:.4g}</text>')
    legend_y = top + height + 32
    for i, curve in enumerate(curves):
        colour = _COLOURS[i % len(_COLOURS)]
        points = curve.points
        if len(points) > max_points:
            stride = math.ceil(len(points) / max_points)
            points = points[::stride] + ((points[-1],) if (len(points) - 1) % stride else ())
        last = curve.points[-1]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{" ".join(at(x, y) for x, y in points)}">'
                     f"<title>{_e(f'{curve.name}: {last[1]:.4g} at step {last[0]:.4g}')}</title></polyline>")
        if len(points) == 1:
            cx, cy = at(*points[0]).split(",")
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="3" fill="{colour}"/>')
        y = legend_y + i * 16
        parts.append(f'<rect x="{left}" y="{y - 9}" width="12" height="4" fill="{colour}"/>')
        parts.append(f'<text x="{left + 18}" y="{y}" {_FONT} fill="{_INK}">{_e(f"{curve.name} (last {last[1]:.4g})")}</text>')
    return _frame(legend_y + len(curves) * 16, title, "".join(parts))


# -- a run ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingView:
    """One training run, read: its settings, its logged steps and its charts."""

    rel: str
    path: Path
    settings: Mapping[str, Any]
    rows: tuple[Mapping[str, Any], ...]  # the training steps' lines, in order
    eval_rows: tuple[Mapping[str, Any], ...]
    closing: Mapping[str, Any]  # the closing summary line (train_runtime ...), or {}
    skipped: int  # lines that were not JSON objects
    plots: str  # inline SVG (safe HTML)
    columns: tuple[str, ...]  # the step table's figures
    table: tuple[tuple[str, ...], ...]  # a row per step shown (at most MAX_TABLE_ROWS): the step, each column's figure

    @property
    def title(self) -> str:
        return training_title(self.settings)

    @property
    def last_step(self) -> int | None:
        steps = [int(s) for row in self.rows if (s := _number(row.get("step"))) is not None]
        return max(steps) if steps else None


def training_title(settings: Mapping[str, Any]) -> str:
    model = settings.get("model")
    loss = settings.get("loss")
    return "llmi train grpo" + (f" ({loss})" if isinstance(loss, str) and loss else "") + (
        f": {one_line(model, 80)}" if isinstance(model, str) and model else "")


def _settings(path: Path) -> Mapping[str, Any]:
    if not (path / SETTINGS_FILE).is_file():
        return {}
    data = read_json(path / SETTINGS_FILE)
    if not isinstance(data, Mapping):
        raise Unreadable(f"{SETTINGS_FILE} does not hold a JSON object")
    return data


def _metrics(path: Path) -> tuple[list[Mapping[str, Any]], int]:
    file = path / METRICS_FILE
    if not file.is_file():
        return [], 0
    if file.stat().st_size > MAX_JSON_BYTES:
        raise Unreadable(f"{METRICS_FILE} is larger than the viewer reads ({MAX_JSON_BYTES >> 20} MB)")
    rows, skipped = [], 0
    with open(file, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                row = None
            if isinstance(row, dict):
                rows.append(row)
            else:
                skipped += 1
    return rows, skipped


def load_training(path: Path, rel: str) -> TrainingView:
    """Read the training run in ``path``; ``Unreadable`` when its settings cannot be read."""
    settings = _settings(path)
    lines, skipped = _metrics(path)
    closing = next((r for r in reversed(lines) if "train_runtime" in r), {})
    evals = [r for r in lines if any(isinstance(k, str) and k.startswith("eval_") for k in r)]
    apart = {id(closing), *map(id, evals)}
    steps = [r for r in lines if id(r) not in apart]
    plots = "".join(line_chart(curves, title=title, span=span) for title, wanted, span in CHARTS
                    if (curves := series(sorted([*steps, *evals], key=_step_of), wanted)))
    columns = tuple(_names(steps, TABLE_COLUMNS))
    # a long run's table shows every k-th step and the last (the curves show them all)
    stride = math.ceil(len(steps) / MAX_TABLE_ROWS) if steps else 1
    shown = steps[::stride] + (steps[-1:] if (len(steps) - 1) % stride else [])
    table = tuple(tuple(figure(row.get(c)) for c in ("step", *columns)) for row in shown)
    return TrainingView(rel, path, settings, tuple(steps), tuple(evals), closing, skipped, plots, columns, table)


def figure(value: Any) -> str:
    """A logged figure for people: four significant digits, ``—`` for none.

    >>> figure(1e-06), figure(0.123456), figure(12), figure(None), figure("x")
    ('1e-06', '0.1235', '12', '—', '—')
    """
    number = _number(value)
    return "—" if number is None else f"{number:.4g}"


def _step_of(row: Mapping[str, Any]) -> float:
    return _number(row.get("step")) or 0.0


class TrainingStore:
    """Training runs under ``root``, each read again only when its settings or metrics change."""

    def __init__(self, root: str | Path, size: int = 16) -> None:
        self.root = Path(root).resolve()
        self._cache: StampCache[TrainingView] = StampCache(size)

    def get(self, rel: str) -> TrainingView:
        """The run in folder ``rel``: ``NotThere`` when there is none."""
        path = resolve_inside(self.root, rel)
        if path is None or not any((path / name).is_file() for name in (SETTINGS_FILE, METRICS_FILE)):
            raise NotThere(f"there is no training run at {rel or '.'}")
        return self._cache.get(rel, (path / SETTINGS_FILE, path / METRICS_FILE), lambda: load_training(path, rel))


# -- samples --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepSamples:
    """One step's sample folder: the documents in it (viewer addresses) and those without a
    ``document.json`` (the run saved only a rendered page)."""

    step: int
    rel: str
    documents: tuple[str, ...]
    pages_only: int


def _folders(path: Path) -> list[str]:
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
    except OSError:
        return []


def steps_with_samples(run: TrainingView) -> list[int]:
    """The steps that left sample documents, in order."""
    samples = run.path / SAMPLES_FOLDER
    if samples.is_symlink():  # the folder is the boundary: a link may lead out of it
        return []
    found = (_STEP.fullmatch(name) for name in _folders(samples))
    return sorted(int(m.group(1)) for m in found if m)


def step_samples(run: TrainingView, step: int) -> StepSamples:
    """The samples of ``step`` (``NotThere`` when the run kept none for it)."""
    folder = run.path / SAMPLES_FOLDER / f"step-{step:06d}"
    if not folder.is_dir() or folder.is_symlink():
        raise NotThere(f"the run kept no samples at step {step}")
    base = f"{run.rel}/{SAMPLES_FOLDER}/{folder.name}" if run.rel else f"{SAMPLES_FOLDER}/{folder.name}"
    names = sorted(_folders(folder), key=lambda n: (len(n), n))
    docs = tuple(f"{base}/{n}" for n in names if (folder / n / DOCUMENT_FILE).is_file())
    return StepSamples(step, base, docs, len(names) - len(docs))


def read_training_entry(folder: Path, rel: str) -> Entry:
    """The list's entry for the training run in ``folder``."""
    run = load_training(folder, rel)
    facts = []
    if run.last_step is not None:
        facts.append(("steps", str(run.last_step)))
    facts += [h for h in headline(run) if h[0] in ("reward", "model")]
    files = run.settings.get("train_files")
    data = ", ".join(str(f) for f in files) if isinstance(files, list) else ""
    stamps = [p.stat().st_mtime for p in (folder / SETTINGS_FILE, folder / METRICS_FILE) if p.is_file()]
    return Entry("training", rel, run.title, one_line(data, 200), max(stamps), tuple(facts))


def headline(run: TrainingView) -> list[tuple[str, str]]:
    """The run at a glance: the reward from the first logged step to the last, the best, the
    run time, and the settings that say what was trained how."""
    out = []
    rewards = [v for row in run.rows if (v := _number(row.get("reward"))) is not None]
    if rewards:
        out.append(("reward", f"{rewards[0]:.3f} → {rewards[-1]:.3f}" if len(rewards) > 1 else f"{rewards[0]:.3f}"))
        out.append(("best reward", f"{max(rewards):.3f}"))
    runtime = _number(run.closing.get("train_runtime"))
    if runtime is not None:
        out.append(("run time", f"{runtime:.0f} s"))
    for label, key in (("model", "model"), ("loss", "loss"), ("rollouts", "generation"),
                       ("completions per prompt", "num_generations"), ("LoRA", "lora")):
        value = run.settings.get(key)
        if isinstance(value, (str, int, float)) and value != "":
            out.append((label, one_line(str(value).lower() if isinstance(value, bool) else str(value), 80)))
    return out


def sample_entries(root: Path, samples: StepSamples) -> list[Entry]:
    """Each sample document of a step as the list would show it (a file that cannot be read is
    shown with the reason)."""
    from .documents import read_document_entry

    out = []
    for rel in samples.documents:
        try:
            out.append(read_document_entry(root / rel, rel))
        except (OSError, TypeError, ValueError, AttributeError, KeyError) as exc:  # Unreadable is a ValueError
            out.append(Entry("document", rel, rel.rsplit("/", 1)[-1], "", 0.0, problem=str(exc)))
    return out
