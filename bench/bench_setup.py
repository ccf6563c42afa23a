"""Benchmark the set-up: ``bash scripts/install.sh`` in a clean clone, from nothing.

Each run clones this checkout's HEAD into a temporary folder (so uncommitted changes do not
count) and runs the install script there with a fresh virtual environment, an empty library
home and a chosen pip cache: first an empty cache (everything downloaded and llama.cpp built),
then the same cache again (warm: wheels, llama-cpp-python's built wheel included, come from it).
Wall-clock and CPU time are printed per run, with the load average, since a shared machine
slows a build a lot; the install script's own output is kept in the run folder.

    python bench/bench_setup.py                    # the README's command, empty then warm cache
    python bench/bench_setup.py --args --test      # what CI runs
    python bench/bench_setup.py --keep             # keep the clones, venvs and cache afterwards

System packages are not timed: the script installs them only where missing, and this needs
root and apt (on the development machine they are installed already).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(workdir: Path, cache: Path, label: str, args: list[str]) -> dict[str, float]:
    clone = workdir / f"clone-{label}"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    home = workdir / f"home-{label}"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if "venv" not in p]  # no active venv
    env.update(PATH=os.pathsep.join(path), PIP_CACHE_DIR=str(cache), LLMI_HOME=str(home))
    log = workdir / f"install-{label}.log"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.run(["bash", "scripts/install.sh", *args], cwd=clone, env=env, stdout=out,
                              stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        print(log.read_text()[-3000:])
        raise SystemExit(f"install.sh failed ({proc.returncode}) in the {label} run; log: {log}")
    ok = subprocess.run([str(clone / ".venv" / "bin" / "llmi"), "library", "search", "a red kangaroo", "-k", "1"],
                        env=env, capture_output=True, text=True)
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    print(f"  {label:<12} wall {wall / 60:5.1f} min, CPU {cpu / 60:5.1f} min, load average at start {load:.1f}; "
          f"{len(lines)} lines of output; library search afterwards: {ok.stdout.strip()[:60] or ok.stderr.strip()[:80]}")
    return {"wall": wall, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--args", nargs=argparse.REMAINDER, default=[], help="arguments for install.sh (e.g. --test)")
    ap.add_argument("--keep", action="store_true", help="keep the clones, environments and pip cache")
    ap.add_argument("--only", choices=("empty", "warm"), default=None, help="one run only (warm needs --cache)")
    ap.add_argument("--cache", type=Path, default=None, help="pip cache folder to use (default: a new one)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="llmi-bench-setup-"))
    cache = args.cache or workdir / "pip-cache"
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    print(f"bash scripts/install.sh {' '.join(args.args)} from a clean clone of {head.stdout.strip()}, "
          f"{os.cpu_count()} cores, pip cache {cache}")
    try:
        runs = ("empty", "warm") if args.only is None else (args.only,)
        for label in runs:
            one_run(workdir, cache, label, args.args)
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
