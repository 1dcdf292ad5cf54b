"""Start-up cost of `eras` commands: wall time and CPU seconds per run, per checkout.

Each command runs `--runs` times as `python -m eras_cli.main ...` with the checkout first on
PYTHONPATH, against a temporary SQLite store. With `--base OTHER_CHECKOUT` the two checkouts
alternate run by run, so both see the same machine load; CPU seconds (user + system of the
child) do not depend on the load, wall time does.

    python -m bench.cli_startup --base /path/to/main-checkout --runs 5
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["--help"], ["pathway", "validate", "pathways/lumbar_fusion.yaml"], ["parked"])


def run_once(checkout: Path, args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of `eras ARGS` from `checkout`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "eras_cli.main", *args], cwd=checkout, check=True,
                   env={**env, "PYTHONPATH": str(checkout)}, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, help="another checkout to compare with")
    parser.add_argument("--runs", type=int, default=5)
    opts = parser.parse_args()
    checkouts = {"this": ROOT, **({"base": opts.base.resolve()} if opts.base else {})}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ERAS_DATABASE_URL": f"sqlite:///{tmp}/eras.db", "COLUMNS": "120"}
        for checkout in checkouts.values():  # migrate the store once, outside the timed runs
            run_once(checkout, ["migrate"], env)
        print(f"load average {os.getloadavg()[0]:.2f}; {opts.runs} runs each, alternating")
        for args in COMMANDS:
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in checkouts}
            for _ in range(opts.runs):
                for name, checkout in checkouts.items():
                    times[name].append(run_once(checkout, args, env))
            for name, runs in times.items():
                walls, cpus = [w for w, _ in runs], [c for _, c in runs]
                print(f"eras {' '.join(args):<45} {name:<5} wall median {statistics.median(walls):.2f} s "
                      f"(min {min(walls):.2f})  CPU median {statistics.median(cpus):.2f} s "
                      f"(min {min(cpus):.2f})")
        print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
