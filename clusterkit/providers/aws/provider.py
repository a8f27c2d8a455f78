"""The aws provider: Terraform (``infra/``) makes the VPC and the nodes; boto3 checks before
and sweeps after.

``create``: preflight (:mod:`.preflight`), ``terraform init/apply`` with the state in
``<state>/terraform``, the outputs saved and turned into the inventory (the master by its
public address, the workers through it), the nodes' host keys recorded on first contact.
``remove``: ``terraform destroy``, then every resource still tagged with the cluster's name is
named and removed; with the state lost, by tag alone. What runs on the nodes is the
playbooks' business, as on the rehearsal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.files import write_json_atomic
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.spec import Spec
from clusterkit.core.state import ClusterPaths
from clusterkit.exec.runner import CommandRunner
from clusterkit.exec.ssh import SshRunner, ensure_key, record_host_keys
from clusterkit.providers.aws import preflight as aws_preflight
from clusterkit.providers.aws import pricing, sweep
from clusterkit.providers.aws.terraform import INFRA_DIR, Terraform, TerraformError
from clusterkit.providers.base import Progress

#: What `terraform apply` is given besides the spec's aws section.
VPC_CIDR = "10.0.0.0/16"
PUBLIC_SUBNET = "10.0.1.0/24"
PRIVATE_SUBNET = "10.0.2.0/24"
NODE_VENV = "/opt/clusterkit/venv"
HDFS_PORT = 9000


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
        spec: Spec, *, region: str, operator_cidr: str, public_key: str
    ) -> dict[str, Any]:
        """The Terraform variables of ``spec`` (infra/variables.tf)."""
        return {
            "cluster_name": spec.name,
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
        price = pricing.estimate(
            region=ctx.region,
            instance_type=spec.aws.instance_type,
            nodes=1 + spec.nodes.workers,
            volume_gb=spec.aws.volume_gb,
        )
        return {
            **asdict(ctx),
            "hourly_usd": round(price.hourly, 4),
            "formula": price.formula(),
            "price_table_date": pricing.PRICE_TABLE_DATE,
        }

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
        variables = self.variables(
            spec, region=ctx.region, operator_cidr=ctx.operator_cidr, public_key=public_key
        )
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

    def remove(self, name: str, paths: ClusterPaths, *, say: Progress = _quiet,
               region: str | None = None) -> list[str]:  # fmt: skip
        """``terraform destroy`` when there is a state, then the sweep: anything still tagged
        with the cluster's name is named and removed. Returns what was removed (empty: nothing
        was there); ClusterkitError names what is left."""
        tf = self.terraform(paths)
        variables = tf.read_vars()
        region = region or variables.get("region")
        removed: list[str] = []
        if tf.has_resources():
            say("terraform destroy")
            try:
                tf.destroy(variables)
                removed.append("every resource in the Terraform state")
            except TerraformError as exc:
                say(f"{exc}; removing by tag instead")
        ec2 = aws_preflight.session(region).client("ec2")
        left = sweep.find(ec2, name)
        if left:
            say(f"still tagged clusterkit:cluster={name}: {', '.join(map(str, left))}; removing")
            removed += [str(t) for t in sweep.remove(ec2, name, say=say)]
            left = sweep.find(ec2, name)
        if left:
            raise ClusterkitError(
                f"cluster {name!r}: still in AWS after down: {', '.join(map(str, left))}; "
                f"remove them in the EC2 console, or run `clusterkit down` again"
            )
        self._outputs_file(paths).unlink(missing_ok=True)
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
