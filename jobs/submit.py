"""submit: a user's own, unmodified Python script run as a recorded run (``clusterkit submit``).

The script runs on the cluster's driver node, in its working folder (``--workdir``: copied to
the master of a remote cluster), with the cluster in its environment: ``SPARK_REMOTE`` (so a
plain ``SparkSession.builder.getOrCreate()`` attaches to the cluster's warm Spark Connect
server), ``RAY_ADDRESS`` and Ray's token settings (so ``ray.init()`` joins the cluster), and
``CLUSTERKIT_STORAGE`` (the storage root). With ``--spark-session classic`` it goes through
``spark-submit`` against the standalone master instead (the RDD API, ``sparkContext``). With
``--requirements`` its packages go into an environment of the run's own, layered on the
cluster's. The script's exit code is the run's; its traceback's last line is the run's error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from clusterkit.jobkit import (
    Job,
    JobContext,
    JobInputError,
    Param,
    connect_url,
    interrupt_session,
    mark_shared,
    spark_session,
)

#: What a script that uses the RDD API (``sparkContext``) meets on a Spark Connect session.
RDD_SIGNS = ("JVM_ATTRIBUTE_NOT_SUPPORTED", "sparkContext")


def _python(ctx: JobContext, requirements: str | None, workdir: Path) -> str:
    """The Python that runs the script: the cluster's, or with ``requirements`` an
    environment of the run's own layered on the cluster's: its packages first, then the
    cluster's (a ``.pth`` file), so pip installs only what the cluster lacks."""
    if not requirements:
        return sys.executable
    venv = ctx.run_dir / "venv"
    python = venv / "bin" / "python"
    with ctx.stage("requirements"):
        _step(requirements, [sys.executable, "-m", "venv", "--without-pip", str(venv)])
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        site = subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                              check=True)  # fmt: skip
        base = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        (Path(site.stdout.strip()) / "_clusterkit_cluster.pth").write_text(  # after its own
            "".join(f"import site; site.addsitedir({path!r})\n" for path in base)
        )
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _step(requirements, [*pip, "-r", requirements], cwd=workdir)  # `-e .`: the workdir
    return str(python)


def _step(requirements: str, argv: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd)
    if done.returncode != 0:
        tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-1:])
        raise JobInputError(f"--requirements {Path(requirements).name}: `{' '.join(argv[-4:])}` "
                            f"failed: {tail}")  # fmt: skip


def _argv(ctx: JobContext, python: str, script: str, args: list[str]) -> list[str]:
    if spark_session() == "warm":
        return [python, script, *args]
    env = os.environ  # classic: an application of the run's own, through spark-submit
    confs = {
        "spark.executorEnv.CLUSTERKIT_RUN_ID": ctx.run_id,
        "spark.ui.enabled": "false",
        "spark.pyspark.python": sys.executable,  # the executors': the cluster's, on every node
        "spark.pyspark.driver.python": python,  # the script's: with its --requirements
        "spark.executor.cores": env.get("CLUSTERKIT_SPARK_EXECUTOR_CORES"),
        "spark.executor.memory": env.get("CLUSTERKIT_SPARK_EXECUTOR_MEMORY"),
        "spark.driver.memory": env.get("CLUSTERKIT_SPARK_DRIVER_MEMORY"),
    }
    submit = str(Path(sys.executable).parent / "spark-submit")
    argv = [submit, "--master", env["CLUSTERKIT_SPARK_MASTER"]]
    for key, value in confs.items():
        if value:
            argv += ["--conf", f"{key}={value}"]
    return [*argv, script, *args]


def _mark_when_connected(ctx: JobContext, pid: int, port: int) -> None:
    """Mark the run as using the shared Spark Connect server once the script's process (or
    a child of it) holds a connection to ``port``."""
    started = time.monotonic()
    try:
        root = psutil.Process(pid)
        while root.is_running():
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    if any(c.raddr and c.raddr[1] == port for c in proc.net_connections("tcp")):
                        mark_shared(ctx)
                        return
            time.sleep(0.2 if time.monotonic() - started < 10 else 1.0)
    except psutil.Error:
        return


def _last_error_line(ctx: JobContext, since: int) -> str:
    """Why the script failed, from what it wrote to stderr: its last traceback's exception
    line (``ValueError: ...``, even with log lines after it), else its last line."""
    try:
        with open(ctx.run_dir / "stderr.log", "rb") as err:
            err.seek(since)
            lines = err.read().decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if starts:
        after = [line for line in lines[starts[-1] + 1 :] if line and not line[0].isspace()]
        if after:
            return after[0].strip()
    return lines[-1].strip() if lines else ""


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    workdir = Path(p["workdir"])
    if not workdir.is_absolute():  # staged into the run's folder
        workdir = ctx.run_dir / workdir
    script = workdir / p["script"]
    if not script.is_file():
        raise JobInputError(f"{script}: no such script on this node")
    env = {**os.environ, "CLUSTERKIT_STORAGE": ctx.storage_root,
           "PYSPARK_PYTHON": os.environ.get("PYSPARK_PYTHON", sys.executable)}  # fmt: skip
    if os.environ.get("CLUSTERKIT_RAY_ADDRESS"):
        env["RAY_ADDRESS"] = os.environ["CLUSTERKIT_RAY_ADDRESS"]
    warm = spark_session() == "warm" and bool(os.environ.get("CLUSTERKIT_SPARK_CONNECT"))
    if warm:
        env["SPARK_REMOTE"] = connect_url(ctx.run_id)  # the token is now in the environment
        env["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"]
    python = _python(ctx, p["requirements"] and str(workdir / p["requirements"]), workdir)
    err_log = ctx.run_dir / "stderr.log"
    since = err_log.stat().st_size if err_log.exists() else 0
    print(f"submit: {p['script']} {' '.join(p['args'])} ({'warm' if warm else 'classic'} "
          f"Spark session)", flush=True)  # fmt: skip
    with ctx.stage("script"):
        proc = subprocess.Popen(_argv(ctx, python, str(script), list(p["args"])), cwd=workdir,
                                env=env)  # fmt: skip

        def stop(signum: int, _frame: Any) -> None:  # a cancel: the server's work, then it
            if warm:
                interrupt_session(ctx.run_id)
            proc.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGTERM, stop)
        if warm:  # charged the shared server once it uses it (a Ray-only script never does)
            port = int(env["SPARK_REMOTE"].split("://", 1)[1].split("/")[0].rsplit(":", 1)[1])
            threading.Thread(target=_mark_when_connected, args=(ctx, proc.pid, port),
                             daemon=True).start()  # fmt: skip
        code = proc.wait()
    if code < 0:  # killed by a signal: the shell's convention
        code = 128 - code
    if code != 0:
        last = _last_error_line(ctx, since) or f"the script exited with code {code}"
        if warm and any(sign in last for sign in RDD_SIGNS):
            last = (
                "the script uses the RDD API (sparkContext), which a Spark Connect session "
                f"does not serve: run it with --spark-session classic ({last[:160]})"
            )
        ctx.fail(last, exit_code=code)
    return {"script": p["script"], "args": p["args"], "exit_code": code,
            "spark_session": "warm" if warm else "classic"}  # fmt: skip


JOB = Job(
    name="submit",
    summary="your own Python script, run on the driver node as a recorded run",
    engine="python",
    main=main,
    params=[
        Param("script", "str", None, "the script, relative to --workdir"),
        Param("workdir", "str", None, "its working folder on the driver node"),
        Param("args", "words", [], "the script's arguments"),
        Param("requirements", "str", None, "a requirements file, relative to --workdir"),
    ],
)
