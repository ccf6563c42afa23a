"""`llmi data prepare` and `llmi data inspect`: every input shape, every row checked, verl's layout."""

from __future__ import annotations

import csv
import io
import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from llmi.cli import main
from llmi.errors import DataError
from llmi.train.data import parquet_schema, prepare_sync, summarise
from llmi.train.rows import RowRules, read_item_sync

SYSTEM = "You write illustrated documents."


def png(path: Path, size=(40, 30), color="red") -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def rows_of(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_flat_rows_become_verl_rows_with_the_system_prompt_and_embedded_images(tmp_path) -> None:
    photo = png(tmp_path / "photo.png")
    src = jsonl(tmp_path / "in.jsonl", [
        {"prompt": "Tell me about owls.", "image_num": 2, "tools": ["search", "diffusion"]},
        {"prompt": "Brighten this photo.", "images": ["photo.png"], "tools": "edit", "image_num": 1},
    ])
    report = prepare_sync([src], tmp_path / "out", RowRules(system_prompt=SYSTEM))
    assert report.ok and report.counts == {"train": 2}
    table = pq.read_table(report.outputs["train"])
    assert table.schema.equals(parquet_schema())
    text, multimodal = table.to_pylist()
    assert text["data_source"] == "interleaved" and text["images"] == []
    assert text["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Tell me about owls."}]
    assert text["extra_info"] == {"split": "train", "index": 0, "image_num": 2, "tools": ["search", "diffusion"],
                                  "question": "Tell me about owls."}
    assert text["reward_model"] == {"style": "rule", "ground_truth": ""}
    assert multimodal["data_source"] == "interleaved_mm"
    assert multimodal["prompt"][1]["content"] == "<image>Brighten this photo."
    assert multimodal["images"][0]["bytes"] == photo.read_bytes()
    assert multimodal["images"][0]["max_pixels"] == 1024 * 1024
    assert multimodal["extra_info"]["question"] == "Brighten this photo." and multimodal["extra_info"]["index"] == 1


@pytest.mark.parametrize("row, reason", [
    ({"prompt": ""}, "the prompt is empty"),
    ({"prompt": "   "}, "the prompt is empty"),
    ({}, "no prompt"),
    ({"prompt": "x", "image_num": "two"}, "image_num must be an integer"),
    ({"prompt": "x", "image_num": True}, "image_num must be an integer"),
    ({"prompt": "x", "image_num": 1.5}, "image_num must be an integer"),
    ({"prompt": "x", "image_num": -2}, "image_num -2 is not allowed"),
    ({"prompt": "x", "tools": ["painting"]}, "unknown tool 'painting'"),
    ({"prompt": "x", "tools": 3}, "tools must be a list"),
    ({"prompt": "x", "split": "dev"}, "split must be 'train' or 'test'"),
    ({"prompt": "x", "colour": "red"}, "unknown column 'colour'"),
    ({"prompt": [{"role": "system", "content": "a"}, {"role": "system", "content": "b"},
                 {"role": "user", "content": "q"}]}, "2 system turns"),
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "system", "content": "s"}]}, "must be the first turn"),
    ({"prompt": [{"role": "robot", "content": "q"}]}, "role 'robot'"),
    ({"prompt": [{"role": "system", "content": "only a system turn"}]}, "no user turn"),
    ({"prompt": [{"role": "user", "content": "<image> and <image>"}], "images": ["a.png"]}, "2 <image> placeholders"),
    ({"prompt": "x", "images": ["missing.png"]}, "'missing.png' does not exist"),
    ({"prompt": "x", "images": [{"bytes": b"not an image".hex()}]}, "not a readable image"),
    ({"prompt": "x", "data_source": "interleaved_mm"}, "expected 'interleaved'"),
    ({"prompt": "x", "data_source": "gsm8k"}, "data_source 'gsm8k'"),
    ('"not an object"', "must be an object"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_each_bad_row_is_reported_with_its_number_and_reason(tmp_path, row, reason) -> None:
    png(tmp_path / "a.png")
    src = jsonl(tmp_path / "in.jsonl", [{"prompt": "a good row"}, row])
    report = prepare_sync([src], tmp_path / "out", RowRules(system_prompt=SYSTEM))
    assert not report.written and not (tmp_path / "out").exists()
    [error] = report.errors
    assert isinstance(error, DataError) and error.row == 2 and error.source == str(src)
    assert reason in error.reason, error.reason


def test_skip_invalid_writes_the_good_rows_and_reports_the_others(tmp_path) -> None:
    src = jsonl(tmp_path / "in.jsonl", [{"prompt": "one"}, "{broken json", {"prompt": "two", "tools": "nope"}, {"prompt": "three"}])
    report = prepare_sync([src], tmp_path / "out", RowRules(), skip_invalid=True)
    assert report.counts == {"train": 2} and report.total == 4
    assert [(e.row, e.reason.split(";")[0].split(":")[0]) for e in report.errors] == [
        (2, "not JSON"), (3, "unknown tool 'nope' in tools")]
    assert [r["extra_info"]["question"] for r in rows_of(report.outputs["train"])] == ["one", "three"]


def test_csv_cells_hold_lists_and_chat_turns(tmp_path) -> None:
    png(tmp_path / "a.png")
    png(tmp_path / "b.png", color="blue")
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "image_num", "tools", "images", "split"])
        writer.writerow(["Compare the two.", "2", "search, code", "a.png; b.png", ""])
        turns = json.dumps([{"role": "system", "content": "old"}, {"role": "user", "content": "Chart rain."}])
        writer.writerow([turns, "", '["code"]', "", "test"])
    report = prepare_sync([path], tmp_path / "out", RowRules(system_prompt=SYSTEM, image_num=1))
    assert report.ok, report.errors
    [first] = rows_of(report.outputs["train"])
    assert first["extra_info"]["tools"] == ["search", "code"] and first["extra_info"]["image_num"] == 2
    assert first["prompt"][1]["content"] == "<image><image>Compare the two." and len(first["images"]) == 2
    [second] = rows_of(report.outputs["test"])
    assert second["prompt"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Chart rain."}]
    assert second["extra_info"]["image_num"] == 1  # the default for rows without one


def test_chat_turns_follow_llmi_system_prompt_rule_and_content_parts(tmp_path) -> None:
    png(tmp_path / "a.png")
    rules = RowRules(system_prompt=SYSTEM, base_dir=tmp_path)
    inserted = read_item_sync({"prompt": [{"role": "user", "content": "<image>What is this?"}], "images": ["a.png"]}, 1, rules)
    assert [t.role for t in inserted.prompt] == ["system", "user"] and inserted.prompt[0].content == SYSTEM
    replaced = read_item_sync({"prompt": [{"role": "system", "content": "old"}, {"role": "user", "content": "hi"}]}, 1, rules)
    assert [(t.role, t.content) for t in replaced.prompt] == [("system", SYSTEM), ("user", "hi")]
    parts = read_item_sync({"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe."}]}],
                            "images": ["a.png"]}, 1, rules)
    assert parts.prompt[-1].content == "<image>Describe." and parts.question == "Describe."
    kept = read_item_sync({"prompt": [{"role": "system", "content": "mine"}, {"role": "user", "content": "hi"}]}, 1, RowRules())
    assert kept.prompt[0].content == "mine"


def test_dummy_image_for_text_rows_in_multimodal_training(tmp_path) -> None:
    png(tmp_path / "a.png")
    src = jsonl(tmp_path / "in.jsonl", [{"prompt": "Text only."}, {"prompt": "With a photo.", "images": ["a.png"]}])
    report = prepare_sync([src], tmp_path / "out", RowRules(system_prompt=SYSTEM, dummy_image=True), tag="mm")
    assert report.outputs["train"].name == "train_mm.parquet"
    text, photo = rows_of(report.outputs["train"])
    assert text["data_source"] == "interleaved" and text["prompt"][-1]["content"] == "<image>Text only."
    dummy = Image.open(io.BytesIO(text["images"][0]["bytes"]))
    assert dummy.size == (28, 28) and dummy.convert("RGB").getpixel((5, 5)) == (255, 255, 255)
    assert photo["data_source"] == "interleaved_mm" and len(photo["images"]) == 1
    summary = summarise(report.outputs["train"])
    assert summary.dummy_images == 1 and summary.by_modality == {"multimodal": 1, "text": 1}
    assert summary.errors == ()


def test_prepared_files_read_back_unchanged_and_prepare_is_idempotent(tmp_path) -> None:
    src = jsonl(tmp_path / "in.jsonl", [{"prompt": f"Prompt {i}", "image_num": i % 3, "tools": ["code"]} for i in range(6)])
    first = prepare_sync([src], tmp_path / "a", RowRules(system_prompt=SYSTEM), test_size=2, seed=3)
    again = prepare_sync([first.outputs["train"], first.outputs["test"]], tmp_path / "b", RowRules(system_prompt=SYSTEM))
    assert again.counts == first.counts == {"train": 4, "test": 2}
    for split in ("train", "test"):
        assert rows_of(again.outputs[split]) == rows_of(first.outputs[split])


def test_test_split_is_seeded_and_respects_rows_that_name_their_split(tmp_path) -> None:
    rows = [{"prompt": f"p{i}"} for i in range(20)] + [{"prompt": "fixed", "split": "test"}]
    src = jsonl(tmp_path / "in.jsonl", rows)

    def test_questions(seed, size):
        report = prepare_sync([src], tmp_path / f"out-{seed}-{size}", RowRules(), test_size=size, seed=seed)
        return [r["extra_info"]["question"] for r in rows_of(report.outputs["test"])]

    assert test_questions(1, 0.25) == test_questions(1, 0.25)
    assert len(test_questions(1, 0.25)) == 6 and "fixed" in test_questions(1, 0.25)
    assert test_questions(1, 0.25) != test_questions(2, 0.25)
    assert len(test_questions(1, 3)) == 4
    with pytest.raises(Exception, match="only 20 rows have no split"):
        test_questions(1, 50)


def test_urls_go_through_the_safe_fetcher_so_a_dataset_cannot_reach_private_addresses(tmp_path) -> None:
    photo = png(tmp_path / "served.png").read_bytes()

    class Handler(BaseHTTPRequestHandler):
        hits = 0

        def do_GET(self):  # noqa: N802
            Handler.hits += 1
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(photo)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/x.png"
        src = jsonl(tmp_path / "in.jsonl", [{"prompt": "look", "images": [url]}])
        report = prepare_sync([src], tmp_path / "out", RowRules())
    finally:
        server.shutdown()
    [error] = report.errors
    assert "image 0" in error.reason and Handler.hits == 0


def test_decompression_bombs_and_huge_images_are_refused(tmp_path) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    def header_only_png(width: int, height: int) -> bytes:  # a few bytes that claim a huge picture
        ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")

    (tmp_path / "bomb.png").write_bytes(header_only_png(60000, 60000))
    (tmp_path / "big.png").write_bytes(header_only_png(8000, 6000))
    src = jsonl(tmp_path / "in.jsonl", [{"prompt": "a", "images": ["bomb.png"]}, {"prompt": "b", "images": ["big.png"]}])
    report = prepare_sync([src], tmp_path / "out", RowRules())
    reasons = [e.reason for e in report.errors]
    assert "not a readable image" in reasons[0] and "8000 x 6000 pixels" in reasons[1]


def test_files_that_cannot_be_read_are_clear_errors(tmp_path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    for source, message in [(tmp_path / "x.txt", "cannot read .txt"), (tmp_path / "nope.jsonl", "no such file"),
                            (tmp_path, "is a folder"), (tmp_path / "broken.parquet", "not a readable parquet file"),
                            ("ByteDance-BandAI/LLM-I", "switched off by HF_HUB_OFFLINE")]:
        with pytest.raises(DataError, match=message):
            prepare_sync([source], tmp_path / "out", RowRules())


def test_hub_dataset_without_network_says_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(DataError, match="not reachable from here.*pass the files"):
        prepare_sync(["ByteDance-BandAI/LLM-I"], tmp_path / "out", RowRules())


def test_cli_prepare_and_inspect(tmp_path) -> None:
    png(tmp_path / "a.png")
    src = jsonl(tmp_path / "in.jsonl", [
        {"prompt": "Tell me about owls.", "image_num": 1, "tools": ["search"]},
        {"prompt": "Edit it.", "images": ["a.png"], "tools": ["edit"]},
        {"prompt": "Chart it.", "image_num": 1, "tools": ["code"], "split": "test"},
    ])
    runner = CliRunner()
    out = tmp_path / "data"
    result = runner.invoke(main, ["data", "prepare", str(src), "--out", str(out), "--system-prompt", "compact"])
    assert result.exit_code == 0, result.output
    assert f"{out / 'train.parquet'}: 2 rows (train)" in result.output
    assert rows_of(out / "train.parquet")[0]["prompt"][0]["content"].startswith("You write illustrated documents")

    result = runner.invoke(main, ["data", "inspect", str(out / "train.parquet"), "--json"])
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)
    assert counts["by_tool"] == {"search": 1, "edit": 1} and counts["by_modality"] == {"multimodal": 1, "text": 1}
    assert counts["by_image_num"] == {"1": 1, "99": 1} and counts["errors"] == []
    result = runner.invoke(main, ["data", "inspect", str(out / "test.parquet"), "--rows", "1"])
    assert result.exit_code == 0 and "Chart it." in result.output and "code" in result.output

    bad = jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"prompt": "x", "image_num": "many"}])
    result = runner.invoke(main, ["data", "prepare", str(bad), "--out", str(tmp_path / "nothing")])
    assert result.exit_code == 1 and "row 2: image_num must be an integer" in result.output
    assert "1 of 2 rows are invalid; nothing was written" in result.output and not (tmp_path / "nothing").exists()
    result = runner.invoke(main, ["data", "inspect", str(bad)])
    assert result.exit_code == 1 and "row 2" in result.output


def test_rows_from_the_hub_may_not_name_local_files(tmp_path) -> None:
    png(tmp_path / "secret.png")
    hub_rules = RowRules(base_dir=None)
    for ref in (str(tmp_path / "secret.png"), "secret.png", f"file://{tmp_path / 'secret.png'}"):
        with pytest.raises(DataError, match="a local path, which a dataset from the hub may not name"):
            read_item_sync({"prompt": "x", "images": [ref]}, 3, hub_rules)
    encoded = (tmp_path / "secret.png").read_bytes()
    assert len(read_item_sync({"prompt": "x", "images": [{"bytes": encoded}]}, 3, hub_rules).images) == 1
