"""Benchmark: what `clusterkit tui` costs while nobody touches it, on each view.

    .venv/bin/python benchmarks/bench_tui_idle.py [--seconds 60] [--size 24x80]

Starts a local cluster of its own, then for each view (Overview, Jobs, Compare) runs the
console in a real pseudo-terminal (the real terminal driver, output drained as a terminal
would), lets it settle, and measures the console process's CPU time over ``--seconds`` with
nothing pressed: the share of one core (target < 5 %). Then q, and the time until the
process has exited and restored the terminal. Writes benchmarks/results/tui_idle.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _harness import bench_cluster, running, save

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.tui.terminal import run_console

VIEWS = {"overview": b"", "jobs": b"j", "compare": b"c"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="idle window per view")
    parser.add_argument("--size", default="24x80", help="terminal rows x columns")
    parser.add_argument("--views", default=",".join(VIEWS), help="comma-separated views")
    args = parser.parse_args()
    rows, cols = (int(v) for v in args.size.split("x"))
    figures: dict[str, dict[str, float | bool | None]] = {}
    with running(bench_cluster(29800)) as cluster:
        for view in args.views.split(","):
            keys = VIEWS[view]
            result = run_console(cluster.env, idle_s=args.seconds, keys=keys, size=(rows, cols))
            figures[view] = {
                "cpu_percent_of_core": round(result.cpu_percent_of_core, 2),
                "idle_s": round(result.idle_s, 1),
                "exit_code": result.exit_code,
                "quit_s": round(result.quit_s, 2),
                "terminal_restored": result.restored_terminal,
            }
            print(f"{view:<9} idle {result.cpu_percent_of_core:5.2f}% of one core over "
                  f"{result.idle_s:.0f} s (target < 5%); q -> exit {result.exit_code} in "
                  f"{result.quit_s:.2f} s, terminal restored: {result.restored_terminal}",
                  flush=True)  # fmt: skip
    print(f"figures: {save('tui_idle', {'terminal': args.size, 'views': figures})}")


if __name__ == "__main__":
    main()
