"""The kit's own block generator (jobs/datagen.py) run in one process, file after file:
the same code and data as ``datagen`` without Ray's parallelism.

    python benchmarks/single_process_blocks.py ROWS OUTPUT_FOLDER
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time

from jobs.datagen import BLOCK_ROWS, ROWS_PER_FILE, write_file


def main() -> None:
    rows, out = int(sys.argv[1]), sys.argv[2]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    started = time.perf_counter()
    blocks = -(-rows // BLOCK_ROWS)
    files = max(1, -(-rows // ROWS_PER_FILE))
    bounds = [blocks * i // files for i in range(files + 1)]
    for part in range(files):
        write_file(f"file://{out}", part, range(bounds[part], bounds[part + 1]), rows=rows,
                   seed=42, profile="realistic")  # fmt: skip
    print(json.dumps({"seconds": round(time.perf_counter() - started, 3), "rows": rows}))


if __name__ == "__main__":
    main()
