"""Save SVG screenshots of the console's Overview and Jobs screens on a real cluster.

    .venv/bin/python scripts/tui_screenshots.py docs/screenshots [--cluster NAME]
        [--job datagen --args "--rows 3M --name screenshot --overwrite"]

Uses the cluster that is up (the current one unless named); submits ``--job`` first so the
Jobs screen shows a job running (elapsed time, live peak memory, progress), waits until it
has been running for ``--wait`` seconds, and saves ``overview.svg`` and ``jobs.svg`` at 80x24.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import time
from pathlib import Path

from clusterkit.tui.app import ClusterkitApp
from clusterkit.watch import LiveSource


async def shoot(out: Path, cluster: str | None, job: str, args: list[str], wait_s: float) -> None:
    source = LiveSource(cluster)
    app = ClusterkitApp(source)
    async with app.run_test(size=(80, 24)) as pilot:
        record = source.submit(job, args)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await pilot.pause(0.5)
        app.save_screenshot(str(out / "overview.svg"))
        await pilot.press("j")
        await pilot.pause(1.5)
        app.save_screenshot(str(out / "jobs.svg"))
    print(f"saved {out / 'overview.svg'} and {out / 'jobs.svg'} (run {record.id} goes on)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cluster", default=None)
    parser.add_argument("--job", default="datagen")
    parser.add_argument("--args", default="--rows 3M --name screenshot --overwrite")
    parser.add_argument("--wait", type=float, default=8.0, help="seconds of the job running")
    ns = parser.parse_args()
    ns.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(shoot(ns.out, ns.cluster, ns.job, shlex.split(ns.args), ns.wait))


if __name__ == "__main__":
    main()
