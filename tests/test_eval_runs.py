"""Runs as jobs: append-only results, resume without loss or repetition, shards, merge, locks."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmi.errors import ConfigError, WriterError
from llmi.evaluate.runner import Item, run_items
from llmi.evaluate.runs import RunDir, Shard, item_seed, merge_runs, read_records, safe_name


def _items(n: int) -> list[Item]:
    return [Item(f"k{i}", i, i) for i in range(n)]


async def _double(item: Item) -> dict:
    return {"score": item.data * 2}


def test_shards_partition_the_items_and_parse_strictly():
    shards = [Shard(i, 3) for i in (1, 2, 3)]
    owned = [[p for p in range(10) if s.owns(p)] for s in shards]
    assert sorted(sum(owned, [])) == list(range(10))
    assert [len(o) for o in owned] == [4, 3, 3]
    assert Shard.parse(None) == Shard(1, 1) and Shard.parse("2/5") == Shard(2, 5)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0", "-1/2"):
        with pytest.raises(ConfigError):
            Shard.parse(bad)


def test_item_seed_is_stable_and_per_item():
    assert item_seed(7, "a") == item_seed(7, "a")
    assert len({item_seed(7, k) for k in "abcdefgh"}) == 8
    assert 0 <= item_seed(123, "x") < 2**31


def test_safe_names_never_leave_the_folder_and_never_collide():
    names = {safe_name(k) for k in ("..", ".", "a/b", "a_b", "a b", "/etc/passwd", "", "é", "a" * 300)}
    assert len(names) == 9
    assert all("/" not in n and not n.startswith(".") and len(n) <= 120 for n in names)


def test_results_are_appended_and_a_rerun_skips_finished_items(tmp_path):
    calls: list[str] = []

    async def work(item):
        calls.append(item.key)
        return {"score": item.data}

    for _ in range(2):
        run = RunDir(tmp_path / "run")
        run.start({"kind": "demo", "seed": 1})
        records = asyncio.run(run_items(run, _items(5), work, concurrency=3))
        run.close()
    assert calls == ["k0", "k1", "k2", "k3", "k4"]  # the second session found everything done
    assert [r["key"] for r in records] == ["k0", "k1", "k2", "k3", "k4"]
    lines = (tmp_path / "run" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 5 and all(json.loads(line)["status"] == "ok" for line in lines)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(config["sessions"]) == 2 and config["kind"] == "demo"


def test_failed_items_are_recorded_and_retried_only_when_asked(tmp_path):
    attempts: dict[str, int] = {}

    async def flaky(item):
        attempts[item.key] = attempts.get(item.key, 0) + 1
        if item.data == 1 and attempts[item.key] == 1:
            raise WriterError("the writer is down")
        if item.data == 2:
            raise RuntimeError("a bug")  # not an llmi error: still recorded, the run goes on
        return {"score": 1.0}

    run = RunDir(tmp_path)
    run.start({"kind": "demo"})
    records = asyncio.run(run_items(run, _items(3), flaky))
    assert [(r["status"], r.get("error_type")) for r in records] == [("ok", None), ("error", "WriterError"), ("error", "RuntimeError")]
    records = asyncio.run(run_items(run, _items(3), flaky))
    assert attempts == {"k0": 1, "k1": 1, "k2": 1}  # errors are finished items by default
    records = asyncio.run(run_items(run, _items(3), flaky, retry_errors=True))
    run.close()
    assert attempts == {"k0": 1, "k1": 2, "k2": 2}
    assert [r["status"] for r in records] == ["ok", "ok", "error"]
    assert [r["status"] for r in RunDir(tmp_path).records()] == ["ok", "ok", "error"]  # last record per key


def test_a_half_written_last_line_is_cut_before_appending(tmp_path):
    run = RunDir(tmp_path)
    run.start({"kind": "demo"})
    run.append({"key": "a", "score": 1})
    run.close()
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"key": "b", "sco')  # the process died inside write()
    assert list(read_records(tmp_path / "results.jsonl")) == ["a"]
    run = RunDir(tmp_path)
    run.start({"kind": "demo"})
    records = asyncio.run(run_items(run, [Item("a", 0, 1), Item("b", 1, 2)], _double))
    run.close()
    assert [r["key"] for r in records] == ["a", "b"]
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == ["a", "b"]


def test_resume_refuses_another_configuration(tmp_path):
    run = RunDir(tmp_path)
    run.start({"kind": "demo", "seed": 1, "judge": {"model": "x"}, "runtime": {"concurrency": 4}})
    run.close()
    run = RunDir(tmp_path)
    run.start({"kind": "demo", "seed": 1, "judge": {"model": "x"}, "runtime": {"concurrency": 16}})  # runtime may change
    run.close()
    with pytest.raises(ConfigError, match=r"judge\.model: 'x' -> 'y'"):
        RunDir(tmp_path).start({"kind": "demo", "seed": 1, "judge": {"model": "y"}})
    RunDir(tmp_path).start({"kind": "demo", "seed": 1, "judge": {"model": "x"}})  # the failed start let go of the lock


def test_two_runs_never_write_into_one_folder(tmp_path):
    first = RunDir(tmp_path)
    first.start({"kind": "demo"})
    with pytest.raises(ConfigError, match="another llmi eval"):
        RunDir(tmp_path).start({"kind": "demo"})
    first.close()
    RunDir(tmp_path).start({"kind": "demo"})


def test_a_folder_that_is_a_file_or_not_a_run(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        RunDir(tmp_path / "f").start({"kind": "demo"})
    with pytest.raises(ConfigError, match="not an evaluation run"):
        RunDir(tmp_path).config()


def test_merged_shards_equal_an_unsharded_run(tmp_path):
    items = _items(7)
    whole = RunDir(tmp_path / "whole")
    whole.start({"kind": "demo", "seed": 3, "shard": None})
    asyncio.run(run_items(whole, items, _double))
    whole.close()
    shard_dirs = []
    for i in (1, 2, 3):
        shard = Shard(i, 3)
        run = RunDir(tmp_path / f"s{i}")
        run.start({"kind": "demo", "seed": 3, "shard": str(shard)})
        mine = [it for it in items if shard.owns(it.index)]
        run.item_dir(mine[0].key).mkdir(parents=True)
        (run.item_dir(mine[0].key) / "document.json").write_text("{}")
        asyncio.run(run_items(run, mine, _double, concurrency=2))
        run.close()
        shard_dirs.append(run.path)
    merged, warnings = merge_runs(shard_dirs[::-1], tmp_path / "merged")  # any order
    assert warnings == []

    def essence(records):
        return {r["key"]: (r["index"], r["score"], r["status"]) for r in records}

    assert essence(merged.records()) == essence(whole.records())
    assert [r["index"] for r in merged.records()] == list(range(7))  # benchmark order
    assert all((merged.item_dir(k) / "document.json").is_file() for k in ("k0", "k1", "k2"))  # item folders came along
    config = merged.config()
    assert config["shard"] is None and sorted(config["shards"]) == ["1/3", "2/3", "3/3"]


def test_merge_warns_and_refuses(tmp_path):
    a = RunDir(tmp_path / "a")
    a.start({"kind": "demo", "seed": 1, "shard": "1/2"})
    a.append({"key": "x", "index": 0, "score": 1})
    a.close()
    merged, warnings = merge_runs([a.path], tmp_path / "m")
    assert any("2/2" in w and "missing" in w for w in warnings)
    with pytest.raises(ConfigError, match="already holds a run"):
        merge_runs([a.path], tmp_path / "m")
    b = RunDir(tmp_path / "b")
    b.start({"kind": "demo", "seed": 2, "shard": "2/2"})
    b.close()
    with pytest.raises(ConfigError, match="another configuration"):
        merge_runs([a.path, b.path], tmp_path / "m2")
    with pytest.raises(ConfigError, match="not an evaluation run"):
        merge_runs([tmp_path / "nothing"], tmp_path / "m3")


def test_records_and_configs_stay_strict_json(tmp_path):
    from pathlib import Path

    run = RunDir(tmp_path)
    run.start({"kind": "demo", "benchmark": {"path": Path("/x/b.json"), "shape": (1, 2)}})
    run.append({"key": "a", "score": float("nan"), "where": Path("/y")})
    run.close()
    text = (tmp_path / "results.jsonl").read_text()
    assert json.loads(text) == {"key": "a", "score": None, "where": "/y"}
    run = RunDir(tmp_path)
    run.start({"kind": "demo", "benchmark": {"path": Path("/x/b.json"), "shape": (1, 2)}})  # resumes: same config
    run.close()
