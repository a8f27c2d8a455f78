"""What the three reproduced scripts share: a session as the source made it, and the timer."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any


def session(name: str) -> Any:
    from pyspark.sql import SparkSession

    # as written: no master URL, so Spark runs in local mode on this machine
    spark = SparkSession.builder.appName(name).getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def timed(name: str, work: Callable[[Any], dict[str, Any]]) -> None:
    spark = session(name)
    started = time.perf_counter()
    extra = work(spark)
    seconds = time.perf_counter() - started
    print(json.dumps({"script": name, "seconds": round(seconds, 3), **extra}), flush=True)
    spark.stop()


def args() -> list[str]:
    return sys.argv[1:]
