"""Run one job: ``python -m jobs NAME --params-json '{...}'`` (what the run supervisor starts).

Exit codes: 0 succeeded; 1 the job failed; 2 bad input (a JobInputError). On failure the
error's one-line form goes to ``error.json`` in the run folder and the traceback to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback

from clusterkit.catalog import find_job
from clusterkit.state import write_json_atomic
from jobs._lib import JobContext, JobInputError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs")
    parser.add_argument("name")
    parser.add_argument("--params-json", default="{}")
    args = parser.parse_args(argv)
    job = find_job(args.name)
    params = {**job.defaults(), **json.loads(args.params_json)}
    ctx = JobContext.from_env(job, params)
    try:
        fields = job.main(ctx) or {}
    except JobInputError as exc:
        write_json_atomic(ctx.run_dir / "error.json", {"type": "bad input", "message": str(exc)})
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        traceback.print_exc()
        message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        write_json_atomic(ctx.run_dir / "error.json", {"type": "crash", "message": message})
        return 1
    finally:
        ctx.close()
    result = {
        "job": job.name,
        "engine": params.get("engine", job.engine),
        "params": params,
        **fields,
        "wall_s": round(ctx.elapsed(), 3),
        "stages": ctx.stages,
        "driver_max_rss_bytes": _max_rss_bytes(),
    }
    write_json_atomic(ctx.run_dir / "result.json", result)
    return 0


def _max_rss_bytes() -> int:
    """The job process's own peak resident memory, from the kernel (a short run can end
    between two of the sampler's readings; this figure cannot miss its peak)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


if __name__ == "__main__":
    sys.exit(main())
