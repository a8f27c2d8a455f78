"""DuckDB alone, as a user would run it: a fresh process, DuckDB's defaults, the same SQL the
kit's DuckDB path sends for the job, its result written as Parquet. Prints one JSON line:
the seconds from before ``import duckdb`` to the written output.

    python benchmarks/duckdb_alone.py etl|top-earners|age-extremes INPUT_FOLDER OUTPUT_FOLDER
"""

from __future__ import annotations

import json
import sys
import time

started = time.perf_counter()
import duckdb  # noqa: E402  (timed: the kit's job imports it too)

job, source, target = sys.argv[1:4]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
scan = f"read_parquet('{source}/*.parquet')"
if job == "etl":
    query = (f"SELECT id, name AS full_name, age, salary, CAST(signup_date AS TIMESTAMPTZ) "
             f"AS signup_date, is_active FROM {scan}")  # fmt: skip
    con.execute(f"COPY ({query}) TO '{target}' (FORMAT parquet, PER_THREAD_OUTPUT true)")
elif job == "top-earners":  # the kit's first round: the top 80 rows, duplicates dropped after
    top = con.execute(f"SELECT * FROM {scan} ORDER BY salary DESC, id LIMIT 80").df()
    top = top.drop_duplicates(["full_name", "salary"]).head(10)
    con.execute(f"COPY top TO '{target}.parquet' (FORMAT parquet)")
else:
    extremes = con.execute(
        f"(SELECT * FROM {scan} WHERE is_active ORDER BY age, id LIMIT 5) UNION ALL "
        f"(SELECT * FROM {scan} WHERE is_active ORDER BY age DESC, id LIMIT 5)"
    ).df()
    con.execute(f"COPY extremes TO '{target}.parquet' (FORMAT parquet)")
print(json.dumps({"job": job, "seconds": round(time.perf_counter() - started, 3)}))
