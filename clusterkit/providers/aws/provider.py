"""The aws provider: Terraform (``infra/``) makes the VPC and the nodes; boto3 checks before
and sweeps after.

``create``: preflight (:mod:`.preflight`), the cluster's random id made once
(``<state>/terraform/cluster-id``; tag ``clusterkit:cluster-id`` on every resource, beside
the name's, and ``clusterkit:owner``: the ARN STS names as the caller, read once by the
preflight and kept by every apply after), ``terraform init/apply`` with the state in
``<state>/terraform``, the outputs saved and turned into the inventory (the master by its
public address, the workers through it), the nodes' host keys recorded on first contact.
``resize``: ``terraform apply`` of the cluster's own variables with another worker count
(``clusterkit scale``): Terraform makes worker-(N+1)... or removes the highest-numbered;
spot workers AWS reclaimed are made again; the new nodes' host keys recorded.
``remove``: ``terraform destroy``, then the sweep (:mod:`.sweep`) of what still carries the
cluster's name and id, inside its recorded VPC; what is in doubt (outside that VPC, or a
cluster with no recorded id, made by an older kit) only when ``confirm`` says yes. Spot
workers' persistent requests are cancelled first (:mod:`.spot`). What runs on the nodes is
the playbooks' business, as on the rehearsal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.files import write_bytes_atomic, write_json_atomic
from clusterkit.core.inventory import Inventory, Node, SshSettings, worker_name
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths
from clusterkit.exec.runner import CommandRunner
from clusterkit.exec.ssh import SshRunner, ensure_key, record_host_keys
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws import pricing, scaling, spot, sweep
from clusterkit.providers.aws.tags import (
    ID_PATTERN,
    ID_TAG_KEY,
    new_cluster_id,
    owner_value,
    tag_filter,
)
from clusterkit.providers.aws.terraform import INFRA_DIR, Terraform, TerraformError
from clusterkit.providers.base import Progress

#: What `terraform apply` is given besides the spec's aws section.
VPC_CIDR = "10.0.0.0/16"
PUBLIC_SUBNET = "10.0.1.0/24"
PRIVATE_SUBNET = "10.0.2.0/24"
NODE_VENV = "/opt/clusterkit/venv"
HDFS_PORT = 9000
#: What `terraform destroy` is given as cluster_id for a state made by an older kit (its
#: resources carry no id; a destroy sets no tags, so the value changes nothing).
NO_ID_DESTROY = "000000000000"
#: What ``resize`` keeps of the cluster as made, whatever the spec now says: (Terraform
#: variable, the spec's field, the spec's value).
KEPT: tuple[tuple[str, str, Callable[[Spec], object]], ...] = (
    ("master_instance_type", "aws.master_instance_type", lambda s: s.aws.master_instance_type),
    ("worker_instance_type", "aws.worker_instance_type", lambda s: s.aws.worker_instance_type),
    ("worker_market", "aws.worker_market", lambda s: s.aws.worker_market),
    ("root_volume_gb", "aws.volume_gb", lambda s: s.aws.volume_gb),
    ("ami_family", "aws.ami_family", lambda s: s.aws.ami_family),
)
#: Seconds ``resize`` waits for reclaimed workers to be terminated before making them again.
REPLACE_WAIT_S = 600.0


def _quiet(_: str) -> None:
    return None


class AwsProvider:
    """A master and 1 to 8 workers on EC2 in a VPC of their own, reached over SSH through
    the master."""

    name = "aws"
    services: Literal["processes", "playbooks"] = "playbooks"
    ask_before_removing = True  # a failed `up` keeps its resources if the operator says so

    @staticmethod
    def terraform(paths: ClusterPaths) -> Terraform:
        return Terraform(INFRA_DIR, paths.root / "terraform")

    def ssh_settings(self, paths: ClusterPaths) -> SshSettings:
        return SshSettings("root", paths.ssh / "id_ed25519", paths.ssh / "known_hosts")

    @staticmethod
    def variables(spec: Spec, *, region: str, operator_cidr: str, public_key: str,
                  cluster_id: str, owner: str = "") -> dict[str, Any]:  # fmt: skip
        """The Terraform variables of ``spec`` (infra/variables.tf); ``owner``: the ARN of
        the AWS identity that makes the cluster ("": no owner tag)."""
        return {
            "cluster_name": spec.name,
            "cluster_id": cluster_id,
            "owner": owner,
            "region": region,
            "master_instance_type": spec.aws.master_instance_type,
            "worker_instance_type": spec.aws.worker_instance_type,
            "worker_market": spec.aws.worker_market,
            "worker_count": spec.nodes.workers,
            "vpc_cidr": VPC_CIDR,
            "public_subnet_cidr": PUBLIC_SUBNET,
            "private_subnet_cidr": PRIVATE_SUBNET,
            "root_volume_gb": spec.aws.volume_gb,
            "operator_cidr": operator_cidr,
            "ami_family": spec.aws.ami_family,
            "public_key": public_key,
            "idle_action": spec.idle_guard.action_for("aws"),
        }

    def preflight(
        self, spec: Spec, paths: ClusterPaths, *, fetch: Callable[[str], str] | None = None
    ) -> tuple[aws_preflight.AwsContext, str, aws_preflight.Capacity]:
        """Every preflight check of ``spec`` (the cluster's SSH key is made here when missing);
        the context, the public key line and what the nodes need of the region. Nothing is
        made in AWS."""
        aws_preflight.check_spot_shutdown(spec.aws.worker_market,
                                          spec.idle_guard.action_for("aws"))  # fmt: skip
        ssh = self.ssh_settings(paths)
        public_key = ensure_key(ssh.key)
        ctx = aws_preflight.check(
            region=spec.aws.region,
            key_name=f"clusterkit-{spec.name}",
            public_key=Path(f"{ssh.key}.pub"),
            managed=self.terraform(paths).has_resources(),
            operator=spec.aws.operator_cidr,
            ami_family=spec.aws.ami_family,
            control_python=spec.versions.python,
            fetch=fetch,
        )
        return ctx, public_key, self.capacity(spec, ctx.region)

    @staticmethod
    def capacity(spec: Spec, region: str, *, new_master: bool = True,
                 new_workers: int | None = None) -> aws_preflight.Capacity:  # fmt: skip
        """Both instance types offered in a common zone of ``region``, and the vCPUs of the
        nodes to make within the account's quotas (:func:`preflight.check_capacity`)."""
        sess = aws_preflight.session(region)
        return aws_preflight.check_capacity(
            sess.client("ec2"), sess.client("service-quotas"),
            master_type=spec.aws.master_instance_type,
            worker_type=spec.aws.worker_instance_type, workers=spec.nodes.workers,
            worker_market=spec.aws.worker_market, new_master=new_master,
            new_workers=new_workers)  # fmt: skip

    def check(self, spec: Spec, paths: ClusterPaths) -> dict[str, object]:
        """Every preflight check (nothing is made in AWS; the cluster's SSH key is made here
        if missing), and the list price per hour of what ``up`` would make."""
        ctx, _, capacity = self.preflight(spec, paths)
        price = self.estimate(spec, ctx.region, zone=capacity.zone)
        return {
            **asdict(ctx),
            "zone": capacity.zone,
            "vcpus": capacity.vcpus,
            "capacity_notes": capacity.notes,
            "hourly_usd": round(price.hourly, 4),
            "formula": price.formula(),
            "price_table_date": pricing.PRICE_TABLE_DATE,
            "price_source": price.source,
            "price_notes": price.notes,
            "max_hourly_usd": spec.aws.max_hourly_usd,
            "within_budget": pricing.within_budget(price, spec.aws.max_hourly_usd),
        }

    @staticmethod
    def estimate(spec: Spec, region: str | None = None, *, zone: str | None = None
                 ) -> pricing.Cost:  # fmt: skip
        """The list price per hour of what ``up`` would make of ``spec`` in ``region``
        (default: the spec's, else the environment's), asking the Price List API first:
        the master on-demand at aws.master_instance_type, nodes.workers workers at
        aws.worker_instance_type, at the spot price now when aws.worker_market is spot (in
        ``zone``; None: the highest of the region's zones)."""
        sess = aws_preflight.session(region or spec.aws.region)
        return pricing.estimate(
            region=sess.region_name,
            master_type=spec.aws.master_instance_type,
            worker_type=spec.aws.worker_instance_type,
            workers=spec.nodes.workers,
            volume_gb=spec.aws.volume_gb,
            worker_market=spec.aws.worker_market,
            zone=zone,
            prices=pricing.Prices.asking_aws(sess.region_name, sess),
        )

    def check_budget(self, spec: Spec, *, yes: bool, region: str | None = None, made: bool = False,
                     say: Progress = _quiet) -> pricing.Cost | None:  # fmt: skip
        """The estimate of ``spec`` (in ``region``; default the spec's), said; OverBudget
        (nothing made or started) when it is over ``aws.max_hourly_usd`` and ``yes`` does not
        accept it, or when it cannot be priced and ``yes`` does not say go on (then None).
        ``made``: the cluster exists, its spec can no longer change (the fix is --yes)."""
        try:
            price = self.estimate(spec, region)
        except aws_preflight.AwsPreflightError:
            raise  # no region: the preflight's own message says how to give one
        except ClusterkitError as exc:
            pricing.budget_unknown(exc, yes=yes, say=say)
            return None
        pricing.check_budget(price, spec.aws.max_hourly_usd, yes=yes, spec_editable=not made)
        within = pricing.within_budget(price, spec.aws.max_hourly_usd)
        say(f"list price ${price.hourly:.4f}/h ({price.source}): "
            f"{'within' if within else 'over, accepted by --yes,'} aws.max_hourly_usd = "
            f"${spec.aws.max_hourly_usd:g}")  # fmt: skip
        return price

    def create(self, spec: Spec, paths: ClusterPaths, *, storage: Path | None,
               say: Progress) -> Inventory:  # fmt: skip
        """Check, apply, record host keys; the nodes' inventory. A failed or interrupted
        apply leaves its state: :meth:`remove` destroys what it made."""
        say("checking AWS: credentials, region, key pair, your address, Terraform, the "
            "instance types and quotas")  # fmt: skip
        ctx, public_key, capacity = self.preflight(spec, paths)
        say(
            f"AWS account {ctx.account} ({ctx.arn}), region {ctx.region} (zone "
            f"{capacity.zone}); SSH open to {ctx.operator_cidr} only; Terraform: {ctx.terraform}"
        )
        for note in capacity.notes:
            say(note)
        tf = self.terraform(paths)
        variables = self.variables(spec, region=ctx.region, operator_cidr=ctx.operator_cidr,
                                   public_key=public_key,
                                   cluster_id=self.ensure_cluster_id(paths),
                                   owner=owner_value(ctx.arn))  # fmt: skip
        if tf.has_resources():  # an apply again over nodes a failed `up` kept: never replace them
            variables.update(self._pins(paths, {}))
            variables["owner"] = self.recorded_owner(paths) or variables["owner"]
        say("terraform init")
        tf.init()
        say(f"terraform apply: the VPC, subnets, NAT route, security groups, the master "
            f"({spec.aws.master_instance_type}) and {describe_workers(spec)}")  # fmt: skip
        tf.apply(variables)
        self._save_outputs(paths, tf.outputs())
        inventory = self._inventory(spec.name, paths)
        record_host_keys(inventory, self.ssh_settings(paths), say=say)
        return inventory

    def resize(self, spec: Spec, paths: ClusterPaths, *, storage: Path | None,
               say: Progress) -> Inventory:  # fmt: skip
        """Give the made cluster ``spec.nodes.workers`` workers: ``terraform apply`` of its
        own saved variables (cluster id, region, operator CIDR, key, types, market, image and
        zone as made; a spec that says otherwise is said, not applied) with the new
        worker_count. Terraform makes worker-(N+1)... or removes the highest-numbered (their
        spot requests cancelled first); spot workers AWS reclaimed are terminated and made
        again. The new nodes' host keys are recorded; returns the new inventory (the
        playbooks are the caller's). ClusterkitError naming why when it cannot."""
        tf = self.terraform(paths)
        saved = upgraded_vars(tf.read_vars())
        if not saved.get("region") or not saved.get("public_key"):
            raise ClusterkitError(
                f"cluster {spec.name!r} has no Terraform variables of its `up` in "
                f"{paths.root / 'terraform'}: it was not made by `clusterkit up --provider aws`"
            )
        current = len(self.outputs(paths).get("worker_private_ips", []))
        target = spec.nodes.workers
        sess = aws_preflight.session(str(saved["region"]))
        ec2 = sess.client("ec2")
        cluster_id = self.recorded_id(paths) or None
        plan = scaling.scale_plan(ec2, cluster_id, spec.name, current, target)
        for line in kept_differences(spec, saved):
            say(line)
        made = upgraded_spec(spec, saved)
        capacity = self.capacity(made, str(saved["region"]), new_master=False,
                                 new_workers=len(plan.made))  # fmt: skip
        for note in capacity.notes:
            say(note)
        self._let_go(ec2, plan, cluster_id, say=say)
        variables = {**saved, **self._pins(paths, saved), "worker_count": target}
        say(
            f"terraform apply: {target} worker(s) (from {current})"
            + (f"; making {', '.join(plan.made)}" if plan.made else "")
            + (f"; removing {', '.join(w.name for w in plan.remove)}" if plan.remove else "")
        )
        tf.init()
        tf.apply(variables)
        self._save_outputs(paths, tf.outputs())
        inventory = self._inventory(spec.name, paths)
        self._record_new_keys(inventory, plan.made, paths, say=say)
        return inventory

    def _let_go(self, ec2: Any, plan: scaling.ScalePlan, cluster_id: str | None, *,
                say: Progress) -> None:  # fmt: skip
        """Before the apply: the spot requests of the workers that go, and of the reclaimed
        ones, cancelled (else they launch them again); the reclaimed ones terminated (only EC2
        may start them again), so that the apply makes them anew."""
        found = {i["InstanceId"]: i for i in scaling.worker_instances(ec2, plan.cluster,
                                                                     cluster_id)}  # fmt: skip
        reclaimed = [i for i in found.values() if spot.node_name(i) in plan.reclaimed]
        leaving = [found[w.instance_id] for w in plan.remove if w.instance_id in found]
        cancelled = spot.cancel_requests(ec2, [*leaving, *reclaimed])
        if cancelled:
            say(f"cancelled the spot requests {', '.join(cancelled)} (of the workers that go "
                "or are made again)")  # fmt: skip
        if reclaimed:
            ids = [i["InstanceId"] for i in reclaimed]
            say(
                f"terminating the reclaimed {', '.join(plan.reclaimed)} ({', '.join(ids)}): "
                "AWS stopped them and only AWS may start them again; they are made anew"
            )
            _terminate(ec2, ids, plan.cluster)

    def _record_new_keys(self, inventory: Inventory, names: list[str], paths: ClusterPaths, *,
                         say: Progress) -> None:  # fmt: skip
        """Record the host keys of the workers ``names`` on first contact, through the
        master, whose recorded key must not change (ClusterkitError otherwise, and the known
        hosts are left as they were)."""
        if not names:
            return
        from paramiko import HostKeys

        ssh = self.ssh_settings(paths)
        master = inventory.driver()
        host = master.ssh_host or master.address

        def master_keys() -> dict[str, bytes]:
            keys = HostKeys(str(ssh.known_hosts)) if ssh.known_hosts.exists() else HostKeys()
            return {t: k.asbytes() for t, k in (keys.lookup(host) or {}).items()}

        before_file = ssh.known_hosts.read_bytes() if ssh.known_hosts.exists() else None
        before = master_keys()
        part = Inventory(
            inventory.cluster,
            inventory.provider,
            (master, *[n for n in inventory.workers() if n.name in names]),
        )
        record_host_keys(part, ssh, say=say)
        after = master_keys()
        if before and any(after.get(t) != key for t, key in before.items()):
            if before_file is not None:
                write_bytes_atomic(ssh.known_hosts, before_file)
            raise ClusterkitError(
                f"the master at {host} presented another host key than the one recorded: no "
                f"new key was trusted; check the instance in the EC2 console before going on"
            )

    def _pins(self, paths: ClusterPaths, saved: dict[str, Any]) -> dict[str, Any]:
        """The image and zone the cluster was made with, so that an apply again never
        replaces its nodes (a newer image) or its subnets (another first zone): from the
        saved variables, else the saved outputs, else the Terraform state."""
        tf = self.terraform(paths)
        outputs = self.outputs(paths) if self._outputs_file(paths).exists() else {}
        ami = (saved.get("ami_id") or outputs.get("ami_id")
               or tf.attribute("aws_instance", "master", "ami"))  # fmt: skip
        zone = (saved.get("availability_zone") or outputs.get("availability_zone")
                or tf.attribute("aws_subnet", "public", "availability_zone"))  # fmt: skip
        return {k: v for k, v in (("ami_id", ami), ("availability_zone", zone)) if v}

    def scale_plan(self, name: str, paths: ClusterPaths, target: int) -> scaling.ScalePlan:
        """What ``resize`` to ``target`` workers would make and remove (:mod:`.scaling`)."""
        region = self.terraform(paths).read_vars().get("region")
        current = len(self.outputs(paths).get("worker_private_ips", []))
        ec2 = aws_preflight.session(region).client("ec2")
        return scaling.scale_plan(ec2, self.recorded_id(paths) or None, name, current, target)

    def reclaimed_workers(self, name: str, paths: ClusterPaths) -> list[str]:
        """The workers (``worker-N``) whose spot instance AWS reclaimed (stopped or
        terminated it for capacity or price): [] at once for on-demand workers; EC2 asked
        otherwise (ClusterkitError when it cannot be). ``resize`` makes them again."""
        variables = upgraded_vars(self.terraform(paths).read_vars())
        if variables.get("worker_market") != "spot":
            return []
        ec2 = aws_preflight.session(variables.get("region")).client("ec2")
        return scaling.reclaimed_workers(ec2, name, self.recorded_id(paths) or None)

    @staticmethod
    def _outputs_file(paths: ClusterPaths) -> Path:
        return paths.root / "terraform" / "outputs.json"

    @staticmethod
    def _id_file(paths: ClusterPaths) -> Path:
        return paths.root / "terraform" / "cluster-id"

    def ensure_cluster_id(self, paths: ClusterPaths) -> str:
        """The cluster's random id, made by ``up`` when there is none (written whole, mode
        600) and kept until ``down`` has removed everything; the id the last apply was given
        when its state still holds resources (a failed ``up`` kept them)."""
        path = self._id_file(paths)
        if not path.exists():
            kept = self.recorded_id(paths) if self.terraform(paths).has_resources() else None
            write_bytes_atomic(path, f"{kept or new_cluster_id()}\n".encode())
        found = self.cluster_id(paths)
        assert found is not None
        return found

    def cluster_id(self, paths: ClusterPaths) -> str | None:
        """The cluster's random id from ``<state>/terraform/cluster-id``; None when there is
        none. ClusterkitError when the file holds something else."""
        path = self._id_file(paths)
        if not path.exists():
            return None
        text = path.read_text().strip()
        if not ID_PATTERN.fullmatch(text):
            raise ClusterkitError(
                f"{path} should hold the cluster's id (12 hex characters, as `up` wrote it), "
                f"not {text[:40]!r}: write back the {ID_TAG_KEY} tag of the cluster's "
                f"resources (EC2 console), or delete the file (the id its last apply was "
                f"given, in cluster.tfvars.json, is used then)"
            )
        return text

    def recorded_id(self, paths: ClusterPaths) -> str | None:
        """The id the sweep goes by: :meth:`cluster_id`, else the one the last apply was
        given; "" when an older kit applied (its resources carry no id); None when nothing
        was applied from this state folder (it may be a stand-in for one lost)."""
        found = self.cluster_id(paths)
        if found is not None:
            return found
        variables = self.terraform(paths).read_vars()
        if not variables:
            return None
        given = str(variables.get("cluster_id", NO_ID_DESTROY))
        return given if ID_PATTERN.fullmatch(given) and given != NO_ID_DESTROY else ""

    def recorded_owner(self, paths: ClusterPaths) -> str:
        """The owner tag (an ARN) the last apply was given; "" when none was (an older kit's
        apply, or none)."""
        return str(self.terraform(paths).read_vars().get("owner") or "")

    def recorded_vpc(self, paths: ClusterPaths) -> str | None:
        """The cluster's VPC: from the saved outputs, else from the Terraform state (an
        apply that failed after making it); None when neither holds one."""
        path = self._outputs_file(paths)
        if path.exists():
            vpc = json.loads(path.read_text()).get("vpc_id")
            if vpc:
                return str(vpc)
        return next(iter(self.terraform(paths).managed_ids("aws_vpc")), None)

    def _save_outputs(self, paths: ClusterPaths, outputs: dict[str, Any]) -> None:
        write_json_atomic(self._outputs_file(paths), outputs)

    def outputs(self, paths: ClusterPaths) -> dict[str, Any]:
        path = self._outputs_file(paths)
        if not path.exists():
            raise ClusterkitError(f"no Terraform outputs in {path}: run `clusterkit up` again")
        return dict(json.loads(path.read_text()))

    def _inventory(self, name: str, paths: ClusterPaths) -> Inventory:
        """The nodes from the saved ``terraform output -json``: the master by its public
        address, each worker by its private address through the master."""
        return inventory_from_outputs(name, self.outputs(paths))

    def nodes(self, name: str, paths: ClusterPaths) -> Inventory | None:
        """The nodes, when the Terraform state holds any resource (with none listed when an
        apply failed before its outputs)."""
        if not self.terraform(paths).has_resources():
            return None
        if not self._outputs_file(paths).exists():
            return Inventory(cluster=name, provider=self.name, nodes=())
        return self._inventory(name, paths)

    def scope(self, name: str, paths: ClusterPaths) -> sweep.Scope:
        """What the sweep may take as this cluster's: its name, recorded id and VPC."""
        return sweep.Scope(name, self.recorded_id(paths), self.recorded_vpc(paths))

    def remove(self, name: str, paths: ClusterPaths, *, say: Progress = _quiet,
               region: str | None = None, confirm: sweep.Confirm | None = None
               ) -> list[str]:  # fmt: skip
        """``terraform destroy`` when there is a state, then the sweep of what still carries
        the cluster's name and id (:mod:`.sweep`; another cluster's is left and said; what is
        outside the recorded VPC, or anything when no id is recorded, only with ``confirm``'s
        yes, None: no). Returns what was removed (empty: nothing was there); ClusterkitError
        names what of this cluster is left, and why."""
        tf = self.terraform(paths)
        variables = upgraded_vars(tf.read_vars())
        region = region or variables.get("region")
        scope = self.scope(name, paths)  # before destroy empties the state
        removed: list[str] = []
        ec2 = aws_preflight.session(region).client("ec2")
        if tf.has_resources():
            _cancel_spot_requests(ec2, scope, say=say)  # else they launch the workers again
            say("terraform destroy")
            try:
                tf.destroy({"cluster_id": scope.cluster_id or NO_ID_DESTROY, **variables})
                removed.append("every resource in the Terraform state")
            except TerraformError as exc:
                say(f"{exc}; removing by tag instead")
        swept = sweep.remove(ec2, scope, say=say, confirm=confirm)
        removed += [str(t) for t in swept.removed]
        why = {t.id: reason for t, reason in swept.skipped}
        left = [f"{t} ({why[t.id]})" if t.id in why else str(t) for t in sweep.ours(ec2, scope)]
        if left:
            raise ClusterkitError(
                f"cluster {name!r}: still in AWS after down: {', '.join(left)}; if they are "
                f"this cluster's, remove them in the EC2 console or with `clusterkit down "
                f"--provider aws --cluster {name}` (it asks first)"
            )
        self._outputs_file(paths).unlink(missing_ok=True)
        self._id_file(paths).unlink(missing_ok=True)  # the next `up` is another cluster
        return removed

    def runner(self, inventory: Inventory, node: Node, ssh: SshSettings | None) -> CommandRunner:
        assert ssh is not None, "an AWS cluster's state records its SSH settings"
        return SshRunner(inventory, node, ssh)

    def storage_root(self, spec: Spec, paths: ClusterPaths) -> str:
        """HDFS on the master (where the jobs read and write on AWS), unless the spec says."""
        if spec.storage.root:
            return spec.storage.root
        return f"hdfs://{self.outputs(paths)['master_private_ip']}:{HDFS_PORT}/clusterkit"

    def node_python(self) -> str:
        return f"{NODE_VENV}/bin/python"

    def playbook_variables(self, name: str, paths: ClusterPaths) -> dict[str, object]:
        return {
            "clusterkit_cluster_cidr": VPC_CIDR,
            "clusterkit_private_subnet": PRIVATE_SUBNET,
            "clusterkit_hdfs": True,
        }

    def host_variables(self, name: str) -> dict[str, dict[str, object]]:
        return {}  # each node budgets from its own memory


def inventory_from_outputs(cluster: str, outputs: dict[str, Any]) -> Inventory:
    """The nodes from ``terraform output -json``: the master by its public address, the
    workers worker-1 to worker-N (even one) by their private addresses through the master."""
    public = outputs["master_public_ip"]
    master = Node("master", outputs["master_private_ip"], ("master",), ssh_host=public)
    workers = tuple(
        Node(worker_name(i + 1), ip, ("worker",), ssh_host=ip, jump_host=public)
        for i, ip in enumerate(outputs["worker_private_ips"])
    )
    return Inventory(cluster=cluster, provider="aws", nodes=(master, *workers))


def upgraded_vars(variables: dict[str, Any]) -> dict[str, Any]:
    """Saved Terraform variables in today's infra/ terms: an older kit's ``instance_type``
    (both nodes) becomes ``master_instance_type`` and ``worker_instance_type``; no
    ``worker_market`` is on-demand."""
    found = dict(variables)
    if not found:
        return found
    both = found.pop("instance_type", None)
    if both:
        found.setdefault("master_instance_type", both)
        found.setdefault("worker_instance_type", both)
    found.setdefault("worker_market", "on-demand")
    return found


def upgraded_spec(spec: Spec, saved: dict[str, Any]) -> Spec:
    """``spec`` with the aws fields :data:`KEPT` as the cluster was made (``saved``: its
    Terraform variables), for what the cluster really is."""
    data = spec.model_dump()
    fields = {"master_instance_type": "master_instance_type",
              "worker_instance_type": "worker_instance_type",
              "worker_market": "worker_market", "root_volume_gb": "volume_gb",
              "ami_family": "ami_family"}  # fmt: skip
    for variable, key in fields.items():
        if saved.get(variable) is not None:
            data["aws"][key] = saved[variable]
    return Spec.model_validate(data)


def kept_differences(spec: Spec, saved: dict[str, Any]) -> list[str]:
    """One line per aws field the spec sets otherwise than the cluster was made: ``resize``
    keeps what was made (another type, market, volume or image would replace nodes)."""
    lines = []
    for variable, field_name, value in KEPT:
        made = saved.get(variable)
        if made is not None and value(spec) != made:
            lines.append(
                f"{field_name} is {value(spec)!r} in the spec and {made!r} in the cluster: "
                f"scale keeps {made!r} (`clusterkit down` and `up` make it anew with the spec's)"
            )
    return lines


def describe_workers(spec: Spec) -> str:
    """E.g. "3 workers (t3.large, spot)"."""
    count = spec.nodes.workers
    market = ", spot" if spec.aws.worker_market == "spot" else ""
    return f"{count} worker{'s' if count != 1 else ''} ({spec.aws.worker_instance_type}{market})"


def _terminate(ec2: Any, ids: list[str], cluster: str) -> None:
    """Terminate ``ids`` and wait until EC2 says they are; ClusterkitError naming them."""
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError

    try:
        ec2.terminate_instances(InstanceIds=ids)
        ec2.get_waiter("instance_terminated").wait(
            InstanceIds=ids, WaiterConfig={"Delay": 5, "MaxAttempts": int(REPLACE_WAIT_S // 5)}
        )
    except (ClientError, BotoCoreError, WaiterError) as exc:
        raise ClusterkitError(
            f"cluster {cluster!r}: the reclaimed workers {', '.join(ids)} could not be "
            f"terminated ({exc}); terminate them in the EC2 console, then run the same command "
            "again (the apply makes them anew)"
        ) from exc


def _cancel_spot_requests(ec2: Any, scope: sweep.Scope, *, say: Progress) -> None:
    """Cancel the spot requests of the cluster's instances (by its tags and id), so that
    none launches a worker again once Terraform destroys it; a refusal is said (the sweep
    after the destroy tries again). Without a recorded id (an older kit's cluster, which
    had no spot workers) nothing is cancelled: another cluster of the name may own them."""
    if not scope.cluster_id:
        return
    filters = [*tag_filter(scope.name, scope.cluster_id),
               {"Name": "instance-state-name", "Values": sweep.LIVE_STATES}]  # fmt: skip
    try:
        found = [i for r in ec2.describe_instances(Filters=filters)["Reservations"]
                 for i in r["Instances"]]  # fmt: skip
        cancelled = spot.cancel_requests(ec2, found)
    except Exception as exc:  # no credentials, refused: the destroy still goes ahead
        say(f"the spot requests could not be cancelled before the destroy: {exc}")
        return
    if cancelled:
        say(f"cancelled the spot requests {', '.join(cancelled)}")
