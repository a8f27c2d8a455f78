"""The aws provider: Terraform (``infra/``) makes the VPC and the nodes; boto3 checks before
and sweeps after.

``create``: preflight (:mod:`.preflight`), the cluster's random id made once
(``<state>/terraform/cluster-id``; tag ``clusterkit:cluster-id`` on every resource, beside
the name's), ``terraform init/apply`` with the state in ``<state>/terraform``, the outputs
saved and turned into the inventory (the master by its public address, the workers through
it), the nodes' host keys recorded on first contact.
``remove``: ``terraform destroy``, then the sweep (:mod:`.sweep`) of what still carries the
cluster's name and id, inside its recorded VPC; what is in doubt (outside that VPC, or a
cluster with no recorded id, made by an older kit) only when ``confirm`` says yes. What runs
on the nodes is the playbooks' business, as on the rehearsal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.files import write_bytes_atomic, write_json_atomic
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths
from clusterkit.exec.runner import CommandRunner
from clusterkit.exec.ssh import SshRunner, ensure_key, record_host_keys
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws import pricing, sweep
from clusterkit.providers.aws.tags import ID_PATTERN, ID_TAG_KEY, new_cluster_id
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


def _quiet(_: str) -> None:
    return None


class AwsProvider:
    """Two EC2 nodes in a VPC of their own, reached over SSH through the master."""

    name = "aws"
    services: Literal["processes", "playbooks"] = "playbooks"
    ask_before_removing = True  # a failed `up` keeps its resources if the operator says so

    @staticmethod
    def terraform(paths: ClusterPaths) -> Terraform:
        return Terraform(INFRA_DIR, paths.root / "terraform")

    def ssh_settings(self, paths: ClusterPaths) -> SshSettings:
        return SshSettings("root", paths.ssh / "id_ed25519", paths.ssh / "known_hosts")

    @staticmethod
    def variables(
        spec: Spec, *, region: str, operator_cidr: str, public_key: str, cluster_id: str
    ) -> dict[str, Any]:
        """The Terraform variables of ``spec`` (infra/variables.tf)."""
        return {
            "cluster_name": spec.name,
            "cluster_id": cluster_id,
            "region": region,
            "instance_type": spec.aws.instance_type,
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
    ) -> tuple[aws_preflight.AwsContext, str]:
        """Every preflight check of ``spec`` (the cluster's SSH key is made here when missing);
        the context and the public key line. Nothing is made in AWS."""
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
        return ctx, public_key

    def check(self, spec: Spec, paths: ClusterPaths) -> dict[str, object]:
        """Every preflight check (nothing is made in AWS; the cluster's SSH key is made here
        if missing), and the list price per hour of what ``up`` would make."""
        ctx, _ = self.preflight(spec, paths)
        price = self.estimate(spec, ctx.region)
        return {
            **asdict(ctx),
            "hourly_usd": round(price.hourly, 4),
            "formula": price.formula(),
            "price_table_date": pricing.PRICE_TABLE_DATE,
            "price_source": price.source,
            "price_notes": price.notes,
            "max_hourly_usd": spec.aws.max_hourly_usd,
            "within_budget": pricing.within_budget(price, spec.aws.max_hourly_usd),
        }

    @staticmethod
    def estimate(spec: Spec, region: str | None = None) -> pricing.Cost:
        """The list price per hour of what ``up`` would make of ``spec`` in ``region``
        (default: the spec's, else the environment's), asking the Price List API first."""
        sess = aws_preflight.session(region or spec.aws.region)
        return pricing.estimate(
            region=sess.region_name,
            instance_type=spec.aws.instance_type,
            nodes=1 + spec.nodes.workers,
            volume_gb=spec.aws.volume_gb,
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
        say("checking AWS: credentials, region, key pair, your address, Terraform")
        ctx, public_key = self.preflight(spec, paths)
        say(
            f"AWS account {ctx.account} ({ctx.arn}), region {ctx.region}; SSH open to "
            f"{ctx.operator_cidr} only; Terraform: {ctx.terraform}"
        )
        tf = self.terraform(paths)
        variables = self.variables(spec, region=ctx.region, operator_cidr=ctx.operator_cidr,
                                   public_key=public_key,
                                   cluster_id=self.ensure_cluster_id(paths))  # fmt: skip
        say("terraform init")
        tf.init()
        say(
            "terraform apply: the VPC, subnets, NAT route, security groups and "
            f"{1 + spec.nodes.workers} {spec.aws.instance_type} nodes"
        )
        tf.apply(variables)
        self._save_outputs(paths, tf.outputs())
        inventory = self._inventory(spec.name, paths)
        record_host_keys(inventory, self.ssh_settings(paths), say=say)
        return inventory

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
        variables = tf.read_vars()
        region = region or variables.get("region")
        scope = self.scope(name, paths)  # before destroy empties the state
        removed: list[str] = []
        if tf.has_resources():
            say("terraform destroy")
            try:
                tf.destroy({"cluster_id": scope.cluster_id or NO_ID_DESTROY, **variables})
                removed.append("every resource in the Terraform state")
            except TerraformError as exc:
                say(f"{exc}; removing by tag instead")
        ec2 = aws_preflight.session(region).client("ec2")
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
    public = outputs["master_public_ip"]
    master = Node("master", outputs["master_private_ip"], ("master",), ssh_host=public)
    ips = list(outputs["worker_private_ips"])
    workers = tuple(
        Node(
            "worker" if len(ips) == 1 else f"worker-{i + 1}",
            ip,
            ("worker",),
            ssh_host=ip,
            jump_host=public,
        )
        for i, ip in enumerate(ips)
    )
    return Inventory(cluster=cluster, provider="aws", nodes=(master, *workers))
