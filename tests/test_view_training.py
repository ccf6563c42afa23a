"""Training runs in the viewer: the list names them, their page draws the reward curves and the
other figures from ``metrics.jsonl``, and each step's sample documents open as documents."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from view_fixtures import XSS_TEXT, dangerous, save, simple_document, viewer, write_training  # noqa: F401

from llmi.view.index import Index
from llmi.view.training import line_chart, load_training, series, step_samples, steps_with_samples

pytest.importorskip("fastapi")


def test_a_run_is_read_into_curves_a_step_table_and_its_sample_steps(tmp_path: Path) -> None:
    run = load_training(write_training(tmp_path / "run", steps=6, extra_lines=["not json", "[1, 2]"]), "run")
    assert run.last_step == 6 and len(run.rows) == 6 and len(run.eval_rows) == 1 and run.skipped == 2
    assert run.closing["train_runtime"] == 75.0
    assert run.plots.count("<svg") == 4 and "rewards/combined/mean" in run.plots and "eval_reward" in run.plots
    assert run.table[0][0] == "1" and run.table[-1][run.columns.index("learning_rate") + 1] == "1.429e-06"
    assert steps_with_samples(run) == [1, 5]
    long = load_training(write_training(tmp_path / "long", steps=1203, samples_at=()), "long")
    assert len(long.rows) == 1203 and [r[0] for r in long.table[:2]] == ["1", "4"] and long.table[-1][0] == "1203"
    assert len(long.table) <= 500
    samples = step_samples(run, 5)
    assert samples.documents == ("run/samples/step-000005/sample-0", "run/samples/step-000005/sample-3")
    assert samples.pages_only == 1


def test_curves_skip_what_is_not_a_number_and_a_long_curve_is_thinned() -> None:
    rows = [{"step": 1, "reward": "high"}, {"step": "two", "reward": 0.5}, {"step": 3, "reward": float("nan")},
            {"step": 4, "reward": True}, {"step": 5, "reward": 0.7}]
    assert [s.points for s in series(rows, ["reward", "missing"])] == [((5.0, 0.7),)]
    long = series([{"step": i, "reward": i / 5000} for i in range(5000)], ["reward"])
    svg = line_chart(long, title="long", max_points=100)
    points = svg.split('points="')[1].split('"')[0].split()
    assert 90 <= len(points) <= 101 and points[-1].startswith(f"{56 + 680 - 72:.1f}")  # the last point kept


def test_the_list_names_a_training_run_and_its_page_shows_curves_and_samples(tmp_path: Path, viewer) -> None:
    write_training(tmp_path / "train" / "grpo-1", model=XSS_TEXT)
    v = viewer(tmp_path)
    listed = v.get("/").text
    assert 'href="/train/train/grpo-1"' in listed and "steps: 6" in listed and "0.300 → 0.800" in listed
    assert dangerous(listed) == []
    r = v.get("/train/train/grpo-1")
    assert r.status_code == 200 and "default-src 'none'" in r.headers["content-security-policy"]
    page = r.text
    assert dangerous(page) == [] and "&lt;script&gt;" in page
    assert page.count("<polyline") >= 10 and "Reward per step" in page and "Seconds per step" in page
    assert '<strong class="current">5</strong>' in page  # the latest step's samples by default
    assert 'href="/doc/train/grpo-1/samples/step-000005/sample-0"' in page and "best at step 5" in page
    assert "1 sample folder of this step holds no document.json" in page
    first = v.get("/train/train/grpo-1", params={"step": 1}).text
    assert "best at step 1" in first and 'href="/train/train/grpo-1?step=5#samples"' in first
    doc = v.get("/doc/train/grpo-1/samples/step-000001/sample-3")
    assert doc.status_code == 200 and "worst at step 1" in doc.text
    assert v.get("/train/train/grpo-1", params={"step": 3}).status_code == 404
    assert v.get("/train/train/grpo-1", params={"step": "x"}).status_code == 400
    assert v.get("/train/nothing").status_code == 404


def test_a_run_that_has_only_started_or_holds_hostile_files_still_has_a_page(tmp_path: Path, viewer) -> None:
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "llmi-train.json").write_text(json.dumps({"model": "m", "loss": "grpo"}))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "metrics.jsonl").write_text('{"step": "<b>", "reward": "<script>x</script>"}\n' + "[" * 50_000 + "\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "llmi-train.json").write_text("[1, 2]")
    (tmp_path / "outside").mkdir()
    write_training(tmp_path / "linked", samples_at=())
    (tmp_path / "linked" / "samples").symlink_to(tmp_path / "outside")
    save(simple_document("secret"), tmp_path / "outside" / "step-000001" / "sample-0")
    v = viewer(tmp_path)
    fresh = v.get("/train/fresh").text
    assert "No step has been logged yet" in fresh and "no sample documents yet" in fresh
    odd = v.get("/train/odd")
    assert odd.status_code == 200 and "1 line of metrics.jsonl could not be read" in odd.text and dangerous(odd.text) == []
    broken = v.get("/train/broken")
    assert broken.status_code == 422 and "does not hold a JSON object" in broken.text
    assert "secret" not in v.get("/train/linked").text and v.get("/train/linked?step=1").status_code == 404
    kinds = {e.id: (e.kind, e.problem) for e in Index(tmp_path).entries()}
    assert kinds["fresh"] == ("training", None) and kinds["odd"][0] == "training"
    assert "does not hold a JSON object" in kinds["broken"][1]


def test_what_llmi_train_grpo_leaves_is_shown(tmp_path: Path, viewer, monkeypatch) -> None:
    """A real two-step run (TRL, a tiny model with SmolLM2's tokenizer, llama.cpp rollouts), then its page."""
    pytest.importorskip("trl")
    from click.testing import CliRunner
    from train_fixtures import build_tiny

    from llmi.cli import main
    from llmi.train.data import prepare_sync
    from llmi.train.model import trainable_model
    from llmi.train.rows import RowRules

    pytest.importorskip("llama_cpp")
    monkeypatch.setenv("LLMI_SEARCH_BACKEND", "none")
    rows = [{"prompt": q, "image_num": 1} for q in ("Tell me about owls.", "Explain tides.", "Describe a lighthouse.")]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    prepare_sync([tmp_path / "p.jsonl"], tmp_path / "data", RowRules(system_prompt="Write with pictures."), test_size=0)
    model = build_tiny(Path(trainable_model()), tmp_path / "tiny")
    out = tmp_path / "views" / "grpo"
    result = CliRunner().invoke(main, [
        "train", "grpo", str(tmp_path / "data" / "train.parquet"), "--out", str(out), "--model", str(model),
        "--without-judges", "--reward", "tag_validity", "--num-generations", "2", "--prompts-per-step", "2",
        "--max-completion-length", "8", "--samples-every", "1", "--max-steps", "2", "--warmup-steps", "0"])
    assert result.exit_code == 0, result.output
    v = viewer(tmp_path / "views")
    listed = v.get("/").text
    assert 'href="/train/grpo"' in listed and "steps: 2" in listed
    page = v.get("/train/grpo").text
    assert dangerous(page) == [] and page.count("<svg") >= 3 and "rewards/llmi_tag_validity/mean" in page
    assert '<strong class="current">2</strong>' in page and 'href="/train/grpo?step=1#samples"' in page
    shown = page.count('href="/doc/grpo/samples/')
    unshown = re.search(r"(\d+) sample folders? of this step", page)
    assert shown >= 1 and unshown is None  # every sample the run kept opens as a document
