"""A cluster that is up: its state, its provider and its services, and the verbs written once
over its nodes' runners (health, node metrics, runs, a job's environment, submitting a job).

Whether the nodes are this machine or others is the provider's choice, made once: it hands
out the runners; nothing here asks which provider it is.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterkit import catalog
from clusterkit.core.errors import BadInput, ClusterkitError, NoCluster, UnknownJob
from clusterkit.core.files import read_secret
from clusterkit.core.inventory import Node
from clusterkit.core.records import RunRecord
from clusterkit.core.state import ClusterPaths, ClusterState, Contexts
from clusterkit.exec.runner import CommandRunner
from clusterkit.metrics.nodes import NodeWatch, read_nodes
from clusterkit.providers import get_provider
from clusterkit.providers.base import NodeProvider
from clusterkit.runs import environment
from clusterkit.runs.launcher import Runs, RunSetup
from clusterkit.runs.master import MasterRunStore
from clusterkit.runs.store import FolderRunStore, RunStore
from clusterkit.services import health
from clusterkit.services.base import Services
from clusterkit.services.health import ServiceHealth
from clusterkit.services.local import LocalServices
from clusterkit.services.playbooks import PlaybookServices, node_requirements

Progress = Callable[[str], None]
#: The job that runs a user's script (``clusterkit submit``).
SUBMIT_JOB = "submit"


def _quiet(_: str) -> None:
    return None


def services_for(provider: NodeProvider, name: str, paths: ClusterPaths) -> Services:
    """The services of a cluster on ``provider``: the one place the choice is made."""
    if provider.services == "processes":
        return LocalServices()
    return PlaybookServices(variables=provider.playbook_variables(name, paths),
                            host_variables=provider.host_variables(name))  # fmt: skip


class ParamsRefused(UnknownJob):
    """A parameter was refused before anything ran; ``run_id`` is the failed record kept for it
    (None when no cluster was up to hold one)."""

    def __init__(self, message: str, run_id: str | None) -> None:
        super().__init__(message)
        self.run_id = run_id


@dataclass
class Cluster:
    """A cluster that is up. Its runners (and the SSH connections behind them) are opened when
    first needed and kept until :meth:`close`."""

    state: ClusterState
    paths: ClusterPaths
    provider: NodeProvider
    services: Services
    _runners: dict[str, CommandRunner] = field(default_factory=dict, repr=False)
    _runs: Runs | None = field(default=None, repr=False)

    @classmethod
    def of(cls, state: ClusterState, paths: ClusterPaths) -> Cluster:
        provider = get_provider(state.provider)
        return cls(state, paths, provider, services_for(provider, state.name, paths))

    @classmethod
    def load(cls, paths: ClusterPaths) -> Cluster | None:
        """The cluster whose state folder is ``paths``, or None when it is down."""
        state = ClusterState.load(paths)
        return None if state is None else cls.of(state, paths)

    @property
    def name(self) -> str:
        return self.state.name

    # -- nodes ----------------------------------------------------------------------------
    def runner(self, node: str | Node) -> CommandRunner:
        """The runner of a node (by name); BadInput naming the cluster's nodes otherwise."""
        target = self.state.inventory.node(node if isinstance(node, str) else node.name)
        if target.name not in self._runners:
            self._runners[target.name] = self.provider.runner(
                self.state.inventory, target, self.state.ssh
            )
        return self._runners[target.name]

    def runners(self, only: str | None = None) -> list[CommandRunner]:
        """Every node's runner in inventory order (or the one node called ``only``)."""
        if only is not None:
            return [self.runner(only)]
        return [self.runner(node) for node in self.state.inventory.nodes]

    def driver(self) -> CommandRunner:
        """The runner of the master: where drivers run and runs are kept."""
        return self.runner(self.state.inventory.driver())

    def close(self) -> None:
        """Close every runner (and its connection); a later call opens them again."""
        for runner in self._runners.values():
            runner.close()
        self._runners.clear()
        self._runs = None

    # -- readings -------------------------------------------------------------------------
    def read_health(self) -> list[ServiceHealth]:
        """Every service read through its own API; NodeUnreachable when the master does not
        answer."""
        return health.read_health(endpoints=self.state.endpoints, master=self.driver(),
                                  ray_token=read_secret(self.paths.ray_token, "the Ray token"),
                                  storage_root=self.state.storage_root)  # fmt: skip

    def problems(self, rows: list[ServiceHealth]) -> list[str]:
        """What keeps the cluster from being healthy (empty: healthy)."""
        return self.services.check(self.state, rows) + health.problems(self.state.inventory, rows)

    def health(self) -> list[ServiceHealth]:
        """Every service of the cluster; never raises (a master that does not answer is a
        row saying so)."""
        try:
            return self.read_health()
        except ClusterkitError as exc:
            master = self.state.inventory.driver()
            return [ServiceHealth("spark-master", "down", master.address, None, str(exc),
                                  answered=False)]  # fmt: skip

    def node_metrics(self, *, cpu_interval: float = 0.2) -> list[dict[str, Any]]:
        """Memory and CPU of every node now, sampled on each node at once."""
        return read_nodes(self.runners(), python=self.state.node_python, cpu_interval=cpu_interval)

    def node_watch(self, *, interval_s: float = 1.0) -> NodeWatch:
        """A sampler kept running on every node (for consoles); close it when done."""
        return NodeWatch(self.runners(), python=self.state.node_python, interval_s=interval_s)

    # -- runs -----------------------------------------------------------------------------
    def job_env(self) -> dict[str, str]:
        """What a job's driver needs to reach this cluster (added to the run's environment;
        the driver runs on the master)."""
        state = self.state
        env = {
            **self.services.job_env(state, self.paths),
            "CLUSTERKIT_CLUSTER": state.name,
            "CLUSTERKIT_STORAGE_ROOT": state.storage_root,
            "CLUSTERKIT_SPARK_MASTER": state.endpoints.spark_master_url,
            "CLUSTERKIT_SPARK_CONNECT": state.endpoints.spark_connect_url,
            "CLUSTERKIT_RAY_ADDRESS": state.endpoints.ray_address,
        }
        if state.sizing is not None:  # known once the cluster was healthy
            env |= {
                "CLUSTERKIT_SPARK_EXECUTOR_CORES": str(state.sizing.worker_cores),
                "CLUSTERKIT_SPARK_EXECUTOR_MEMORY": f"{state.sizing.worker_memory_mb}m",
                "CLUSTERKIT_SPARK_DRIVER_MEMORY": f"{state.sizing.driver_memory_mb}m",
            }
        return env

    def user_env(self, spark_session: str = "warm") -> dict[str, str]:
        """What a user's own code on the driver node needs to reach this cluster:
        ``RAY_ADDRESS`` and Ray's token settings, ``CLUSTERKIT_STORAGE``, ``SPARK_CONF_DIR``
        (whose 0600 defaults hold the Spark RPC secret), and either ``SPARK_REMOTE`` (warm:
        ``getOrCreate()`` attaches to the Spark Connect server) or ``MASTER`` (classic: a
        plain ``spark-submit`` goes to the standalone master; Spark refuses both at once).
        No secret itself: tokens stay in their files (see :meth:`user_exports`)."""
        state = self.state
        env = {k: v for k, v in self.job_env().items()  # CLUSTERKIT_CLUSTER would pin a shell
               if not k.startswith("CLUSTERKIT_SPARK_") and k != "CLUSTERKIT_CLUSTER"}  # fmt: skip
        spark = ({"SPARK_REMOTE": state.endpoints.spark_connect_url} if spark_session == "warm"
                 else {"MASTER": state.endpoints.spark_master_url})  # fmt: skip
        return (
            env
            | spark
            | {
                "RAY_ADDRESS": state.endpoints.ray_address,
                "CLUSTERKIT_STORAGE": state.storage_root,
                "PYSPARK_PYTHON": state.node_python,
            }
        )

    def user_exports(self, spark_session: str = "warm") -> list[str]:
        """:meth:`user_env` as POSIX shell ``export`` lines, the Spark Connect token read from
        its file when the lines run (so it never appears in them)."""
        token = shlex.quote(self.job_env()["CLUSTERKIT_SPARK_CONNECT_TOKEN_FILE"])
        env = sorted(self.user_env(spark_session).items())
        lines = [f"export {key}={shlex.quote(value)}" for key, value in env]
        if spark_session != "warm":
            return lines
        return [*lines, f'export SPARK_CONNECT_AUTHENTICATE_TOKEN="$(cat {token})"']

    def run_setup(self) -> RunSetup:
        """What every run of this cluster is given (its folder is added per run)."""
        state = self.state
        master = state.inventory.driver()
        env = self.job_env()
        return RunSetup(
            env=env,
            cluster=state.name,
            provider=state.provider,
            node=master.name,
            runs_dir=state.runs_dir,
            interval_s=state.spec.metrics.interval_s,
            storage_root=state.storage_root,
            python=state.node_python,
            peers=[{"name": n.name, "address": n.address}
                   for n in state.inventory.nodes if n.name != master.name],
            stall_timeout_s=state.spec.runs.stall_timeout,
            spark_master_ui=state.endpoints.spark_master_ui,
            ray_dashboard=state.endpoints.ray_dashboard,
            ray_token_file=env.get("RAY_AUTH_TOKEN_PATH"),
            ray_gcs_port=state.spec.ports.ray_gcs,
            environment=environment.from_state_folder(self.paths.root),
        )  # fmt: skip

    def read_environment(self) -> dict[str, Any]:
        """The cluster's versions (``versions``, as its driver node sees them; empty when it
        did not answer) and its lock (``lock``: the pinned set the nodes install, its hash,
        each node's installed hash and whether it meets the set), read on every node now
        (:mod:`clusterkit.runs.environment`)."""
        readings = environment.read_nodes(self.runners(), python=self.state.node_python,
                                          java_home=self.job_env().get("JAVA_HOME"))  # fmt: skip
        driver = readings.get(self.state.inventory.driver().name, {})
        return {"versions": driver.get("versions", {}),
                "lock": environment.build_lock(node_requirements(), readings)}  # fmt: skip

    def record_lock(self, *, say: Progress = _quiet) -> None:
        """Read the lock on every node now and write it to the state folder (``lock.json``,
        which every run's record copies), after ``up``, ``provision`` and ``scale``. Never
        raises: a node that did not answer, or whose packages do not meet the pinned set, is
        said (``clusterkit env`` shows it again); the cluster is up all the same. The runners
        it opened are closed."""
        try:
            lock = self.read_environment()["lock"]
            environment.save_lock(self.paths.root, lock)
        except (ClusterkitError, OSError) as exc:
            say(f"the cluster's lock was not written: {exc}")
            return
        finally:
            self.close()
        for name, node in lock["nodes"].items():
            if node.get("error"):
                say(f"the lock has no packages of {name}: {node['error']}")
            elif not node["matches"]:
                say(f"{name}'s packages do not meet the pinned set ({', '.join(node['unmet'])}):"
                    " `clusterkit provision` installs it")  # fmt: skip

    def runs(self) -> Runs:
        """The cluster's runs: this machine's folders when the master is this machine, else
        the master's read through its runner into a copy here."""
        if self._runs is None:
            driver = self.driver()
            store: RunStore = (
                FolderRunStore(self.paths.runs)
                if driver.local
                else MasterRunStore(driver, self.state.runs_dir, self.paths.runs)
            )
            self._runs = Runs(store, setup=self.run_setup(), driver=driver, nodes=self.runners())
        return self._runs


def stopped_message(state: ClusterState) -> str:
    """One line: the cluster is stopped (``clusterkit stop``), since when, and the fix."""
    return (f"cluster {state.name!r} is stopped (since {state.stopped_at}; its disks and data "
            "are kept): `clusterkit start` starts it")  # fmt: skip


def open_cluster(name: str | None = None) -> Cluster:
    """The named (or current) cluster, which must be up and running (not stopped); NoCluster
    with the fix otherwise."""
    name, paths = Contexts().resolve(name)
    cluster = Cluster.load(paths)
    if cluster is None:
        raise NoCluster(f"cluster {name!r} is down: start it with `clusterkit up`")
    if cluster.state.power == "stopped":
        raise NoCluster(stopped_message(cluster.state))
    return cluster


def run_store(name: str | None = None) -> tuple[Cluster | None, RunStore]:
    """A cluster's run store even when it is down or stopped (its history stays here): the
    cluster (None when down or stopped) and its store."""
    name, paths = Contexts().resolve(name)
    cluster = Cluster.load(paths)
    if cluster is None or cluster.state.power == "stopped":
        return None, FolderRunStore(paths.runs)
    return cluster, cluster.runs().store


@contextlib.contextmanager
def opened(name: str | None = None) -> Any:
    """``open_cluster`` whose runners are closed when the block ends."""
    cluster = open_cluster(name)
    try:
        yield cluster
    finally:
        cluster.close()


def submit_job(job: str, args: Sequence[str], *, cluster: Cluster | NoCluster,
               metrics: bool = True, spark_session: str = "warm") -> RunRecord:  # fmt: skip
    """Check ``job`` and its ``--name value`` arguments, then start it on ``cluster``: what
    ``clusterkit run`` and the console's job forms both call.

    UnknownJob for a job that does not exist; ParamsRefused for a bad parameter (the attempt
    is recorded as a failed run when a cluster is up); ``cluster`` itself when it is the
    NoCluster error that opening it raised (checked after the job and its arguments).
    """
    definition = catalog.find_job(job)
    try:
        params = catalog.parse_job_args(definition, args)
    except UnknownJob as exc:
        refused = None
        if isinstance(cluster, Cluster):
            refused = cluster.runs().record_refused(definition.name, list(args), str(exc)).id
        raise ParamsRefused(str(exc), refused) from exc
    if isinstance(cluster, NoCluster):
        raise cluster
    return cluster.runs().submit(definition.name, params, metrics=metrics,
                                 spark_session=spark_session)  # fmt: skip


@dataclass(frozen=True)
class Rerun:
    """What ``clusterkit rerun`` submits: the original run's job, and its parameters with its
    engine pinned (``changed``: what the command line's arguments set over them)."""

    original: RunRecord
    job: str
    params: dict[str, Any]
    changed: dict[str, Any] = field(default_factory=dict)


def plan_rerun(original: RunRecord, result: dict[str, Any] | None,
               args: Sequence[str] = ()) -> Rerun:  # fmt: skip
    """The run that repeats ``original`` (``result``: its ``result.json``, None when it has
    none): the same job, the parameters it was given, the engine it ran on (pinned from its
    result when it took the default) and its Spark session; ``args`` (``--name value``)
    change some. Checked against the catalog as it is now: UnknownJob when the job no longer
    exists or refuses a parameter; BadInput for a run there is nothing to repeat of (refused
    before it ran, or a script copied to a remote master for that run only)."""
    try:
        job = catalog.find_job(original.job)
    except UnknownJob as exc:
        raise UnknownJob(f"run {original.id} ran job {original.job!r}, which no longer "
                         f"exists: {exc}") from exc  # fmt: skip
    params = dict(original.params)
    if set(params) == {"argv"} and job.param("argv") is None:
        raise BadInput(f"run {original.id} was refused before it ran ({original.error}); "
                       f"nothing to repeat: `clusterkit run {job.name} ...` with the "
                       "parameters fixed")  # fmt: skip
    workdir = params.get("workdir")
    if job.name == SUBMIT_JOB and isinstance(workdir, str) and not workdir.startswith("/"):
        raise BadInput(f"run {original.id} ran a script copied to the master for that run "
                       "alone; submit it again: `clusterkit submit FILE.py`")  # fmt: skip
    engine = (result or {}).get("engine")
    if "engine" not in params and job.param("engine") is not None and engine:
        params["engine"] = engine
    changed = catalog.parse_job_args(job, args)
    try:
        checked = catalog.check_params(job, {**params, **changed})
    except UnknownJob as exc:
        raise UnknownJob(f"run {original.id}'s parameters no longer fit job {job.name}: "
                         f"{exc}") from exc  # fmt: skip
    return Rerun(original, job.name, checked, changed)


def rerun_job(ref: str, args: Sequence[str] = (), *, cluster: Cluster | NoCluster,
              name: str | None = None) -> tuple[Rerun, RunRecord]:  # fmt: skip
    """Submit again the run ``ref`` (an id, a unique prefix or ``latest``) of the cluster
    (``name``, or the current one): :func:`plan_rerun`, then started like any run, its record
    noting ``rerun_of``. The run is looked up (RunNotFound naming it) and its plan checked
    before ``cluster`` must be up (``cluster`` itself is raised when it is the NoCluster
    error that opening it raised). Returns the plan and the new run's record."""
    if isinstance(cluster, Cluster):
        store = cluster.runs().store
        store.refresh()
    else:
        _, store = run_store(name)
    original = store.get(ref)
    plan = plan_rerun(original, store.read_json(original.id, "result.json"), args)
    if isinstance(cluster, NoCluster):
        raise cluster
    record = cluster.runs().submit(plan.job, plan.params, metrics=original.metrics_enabled,
                                   spark_session=original.spark_session,
                                   rerun_of=original.id)  # fmt: skip
    return plan, record


def open_or_why(name: str | None = None) -> Cluster | NoCluster:
    """The named (or current) cluster, or the NoCluster error saying why there is none."""
    try:
        return open_cluster(name)
    except NoCluster as exc:
        return exc
