"""The Spark Connect server: a warm Spark application every job and script attaches to, so a
run does not pay Spark's start-up (``SPARK_REMOTE``, ``sc://localhost:PORT``).

One definition for both installers: :func:`server_conf` is what the local launcher passes and
what the playbooks write into the master's unit. The server listens on the master's loopback
only and asks every client for the cluster's token (``SPARK_CONNECT_AUTHENTICATE_TOKEN`` in
its environment, never on a command line). Dynamic allocation with shuffle tracking gives
idle executors back, so an ordinary ``spark-submit`` still gets the worker's cores.
"""

from __future__ import annotations

from clusterkit.core.records import SHARED_MARKER

#: The application name the server registers with the Spark master (its health is read there).
APP_NAME = "clusterkit-spark-connect"
SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
#: How long an idle executor, and one holding only shuffle data, is kept.
IDLE_TIMEOUT = "10s"
SHUFFLE_TIMEOUT = "10s"
#: ... and one holding cached data (Spark's default keeps it for ever, and the cores with it).
CACHED_TIMEOUT = "120s"
#: The value of SHARED_MARKER on the server and its executors.
SHARED = "spark-connect"


def server_conf(*, port: int, driver_host: str) -> dict[str, str]:
    """The server's Spark settings (without the executors' sizes, which each installer knows)."""
    return {
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        "spark.driver.host": driver_host,
        "spark.driver.bindAddress": driver_host,
        "spark.ui.enabled": "false",
        "spark.dynamicAllocation.enabled": "true",
        "spark.dynamicAllocation.shuffleTracking.enabled": "true",
        "spark.dynamicAllocation.minExecutors": "0",
        "spark.dynamicAllocation.executorIdleTimeout": IDLE_TIMEOUT,
        "spark.dynamicAllocation.shuffleTracking.timeout": SHUFFLE_TIMEOUT,
        "spark.dynamicAllocation.cachedExecutorIdleTimeout": CACHED_TIMEOUT,
        # a run's session id is derived from its id (so a cancel can interrupt it): a script
        # that stops its session and builds another gets the same id, which must be allowed
        "spark.connect.session.manager.closedSessionsTombstonesSize": "0",
        # UTC and microsecond timestamps, as DuckDB and Arrow write them (the jobs' settings)
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        f"spark.executorEnv.{SHARED_MARKER}": SHARED,
    }


def server_argv(spark_class: str, *, master_url: str, conf: dict[str, str],
                properties: str) -> list[str]:  # fmt: skip
    """The command that runs the server (through ``spark-class``'s SparkSubmit)."""
    argv = [spark_class, "org.apache.spark.deploy.SparkSubmit", "--class", SERVER_CLASS,
            "--name", APP_NAME, "--master", master_url,
            "--properties-file", properties]  # fmt: skip
    for key, value in conf.items():
        argv += ["--conf", f"{key}={value}"]
    return [*argv, "spark-internal"]
