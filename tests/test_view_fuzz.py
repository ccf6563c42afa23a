"""Files the viewer did not write itself: any value in any field of a ``document.json``, a
``results.jsonl`` record, a scaling record or a training run's settings and metrics gives a page
or a clear refusal, never a crash, and never a page that could run a script."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from view_fixtures import dangerous, hostile_document, save, scaling_record, simple_document, standard_items, write_run, write_training

from llmi.view.app import create_app

pytest.importorskip("fastapi")

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["<script>window.PWNED=1</script>", "javascript:alert(1)", "../../etc/passwd", "ok", "failed",
                       "text", "image", "code", "", "\x00"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    """Every place in a JSON value, as a path of keys and indexes."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def replaced(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    out = list(value)
    out[head] = replaced(value[head], rest, new)
    return out


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from starlette.testclient import TestClient

    root = tmp_path_factory.mktemp("fuzz")
    save(hostile_document(), root / "doc")
    save(simple_document("scaled", meta={"scaling": scaling_record()}), root / "scaled")
    write_run(root / "run", standard_items(3))
    write_training(root / "train", steps=3, samples_at=(1,))
    originals = {
        "doc": json.loads((root / "doc" / "document.json").read_text()),
        "scaled": json.loads((root / "scaled" / "document.json").read_text()),
        "run": (root / "run" / "results.jsonl").read_text().splitlines(),
        "settings": json.loads((root / "train" / "llmi-train.json").read_text()),
        "metrics": (root / "train" / "metrics.jsonl").read_text().splitlines(),
    }
    client = TestClient(create_app(root), base_url="http://127.0.0.1", raise_server_exceptions=True)
    return root, originals, client


def _check(client: Any, path: str) -> None:
    r = client.get(path)
    assert r.status_code in (200, 404, 422), (path, r.status_code, r.text[:300])
    if r.headers.get("content-type", "").startswith("text/html"):
        assert dangerous(r.text) == [], path


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


@FUZZ
@given(data=st.data())
def test_any_value_in_a_document_gives_a_page_or_a_reason(site: Any, data: Any) -> None:
    root, originals, client = site
    name = data.draw(st.sampled_from(["doc", "scaled"]))
    original = originals[name]
    where = data.draw(st.sampled_from(list(paths(original))))
    (root / name / "document.json").write_text(json.dumps(replaced(original, where, data.draw(JSON))))
    for path in (f"/doc/{name}", f"/img/{name}?tag=0", f"/img/{name}?tag=1", f"/img/{name}?input=0", "/",
                 "/?q=owls", "/?kind=scaling"):
        _check(client, path)


@FUZZ
@given(data=st.data())
def test_any_value_in_a_result_record_gives_a_page(site: Any, data: Any) -> None:
    root, originals, client = site
    lines = list(originals["run"])
    i = data.draw(st.integers(0, len(lines) - 1))
    record = json.loads(lines[i])
    where = data.draw(st.sampled_from([p for p in paths(record) if p != ("key",)]))
    lines[i] = json.dumps(replaced(record, where, data.draw(JSON)))
    (root / "run" / "results.jsonl").write_text("\n".join(lines) + "\n")
    key = record["key"]
    for path in ("/eval/run", "/eval/run?sort=score&desc=true", "/eval/run?criterion=r1&cscore=1",
                 "/eval/run?tool=search:failed", f"/item/run?key={key}", "/compare?a=run&b=run",
                 f"/compare/item?a=run&b=run&key={key}", "/"):
        _check(client, path)


@FUZZ
@given(data=st.data())
def test_any_value_in_a_training_run_gives_a_page_or_a_reason(site: Any, data: Any) -> None:
    root, originals, client = site
    settings = originals["settings"]
    where = data.draw(st.sampled_from(list(paths(settings))))
    (root / "train" / "llmi-train.json").write_text(json.dumps(replaced(settings, where, data.draw(JSON))))
    lines = list(originals["metrics"])
    i = data.draw(st.integers(0, len(lines) - 1))
    record = json.loads(lines[i])
    lines[i] = json.dumps(replaced(record, data.draw(st.sampled_from(list(paths(record)))), data.draw(JSON)))
    (root / "train" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for path in ("/train/train", "/train/train?step=1", "/?kind=training", "/?q=train"):
        _check(client, path)


def test_a_deeply_nested_file_is_refused_not_a_crash(site: Any) -> None:
    root, _, client = site
    (root / "deep").mkdir(exist_ok=True)
    (root / "deep" / "document.json").write_text("[" * 100_000 + "]" * 100_000)
    r = client.get("/doc/deep")
    assert r.status_code == 422 and "too deeply" in r.text
