"""The aws provider: Terraform (``infra/``) makes the VPC and the nodes; boto3 checks before
and sweeps after.

``up``: preflight (:mod:`clusterkit.aws.preflight`), ``terraform init/apply`` with the state
in ``<state>/terraform``, the outputs saved and turned into the inventory (the master by its
public address, the workers through it), the nodes' host keys recorded on first contact, the
Ansible inventory written to ``<state>/inventory/hosts.yml``. ``down``: ``terraform destroy``,
then every resource still tagged with the cluster's name is named and removed; with the state
lost, ``down`` by tag alone. What runs on the nodes is the playbooks' business, as on the
rehearsal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from clusterkit.aws import preflight as aws_preflight
from clusterkit.aws import sweep
from clusterkit.aws.terraform import INFRA_DIR, Terraform, TerraformError
from clusterkit.errors import ClusterkitError
from clusterkit.inventory import Inventory, Node
from clusterkit.remote import SshSettings, ensure_key, record_host_keys
from clusterkit.spec import Spec
from clusterkit.state import ClusterPaths

Confirm = Callable[[str], bool]
#: What `terraform apply` is given besides the spec's aws section.
VPC_CIDR = "10.0.0.0/16"
PUBLIC_SUBNET = "10.0.1.0/24"
PRIVATE_SUBNET = "10.0.2.0/24"
NODE_VENV = "/opt/clusterkit/venv"
HDFS_PORT = 9000


class AwsProvider:
    """Two EC2 nodes in a VPC of their own, reached over SSH through the master."""

    name = "aws"
    node_venv = NODE_VENV

    @staticmethod
    def terraform(paths: ClusterPaths) -> Terraform:
        return Terraform(INFRA_DIR, paths.root / "terraform")

    @staticmethod
    def ssh(paths: ClusterPaths) -> SshSettings:
        return SshSettings(
            "root", paths.root / "ssh" / "id_ed25519", paths.root / "ssh" / "known_hosts"
        )

    @staticmethod
    def preflight() -> None:
        """What can be checked without the spec: a Terraform to run (the rest is in ``up``)."""
        from clusterkit.aws.terraform import engine

        engine()

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

    def check(
        self, spec: Spec, paths: ClusterPaths, *, fetch: Callable[[str], str] | None = None
    ) -> tuple[aws_preflight.AwsContext, str]:
        """Every preflight check of ``spec`` (the cluster's SSH key is made here when missing);
        the context and the public key line. Nothing is made in AWS."""
        ssh = self.ssh(paths)
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

    def up(
        self,
        spec: Spec,
        paths: ClusterPaths,
        *,
        say: Any = lambda _: None,
        confirm: Confirm | None = None,
    ) -> Inventory:
        """Check, apply, record host keys; the nodes' inventory. When apply fails or is
        interrupted, ``confirm`` is asked whether to destroy what it made (None: destroy)."""
        say("checking AWS: credentials, region, key pair, your address, Terraform")
        ctx, public_key = self.check(spec, paths)
        say(
            f"AWS account {ctx.account} ({ctx.arn}), region {ctx.region}; SSH open to "
            f"{ctx.operator_cidr} only; Terraform: {ctx.terraform}"
        )
        tf = self.terraform(paths)
        variables = self.variables(
            spec, region=ctx.region, operator_cidr=ctx.operator_cidr, public_key=public_key
        )
        try:
            say("terraform init")
            tf.init()
            say(
                "terraform apply: the VPC, subnets, NAT route, security groups and "
                f"{1 + spec.nodes.workers} {spec.aws.instance_type} nodes"
            )
            tf.apply(variables)
            outputs = tf.outputs()
            self._save_outputs(paths, outputs)
            inventory = self.inventory(spec.name, paths)
            record_host_keys(inventory, self.ssh(paths), say=say)
            self.write_ansible_inventory(spec.name, paths)
        except BaseException as exc:
            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            if tf.has_resources() or tf.state_file.exists():
                question = (
                    f"`up` {what}; destroy what it made in {ctx.region} (cluster {spec.name!r})?"
                )
                if confirm is None or confirm(question):
                    say("destroying what this `up` made")
                    try:
                        self.down(paths, spec.name, region=ctx.region, say=say)
                    except ClusterkitError as cleanup:  # the first error is the one raised
                        say(f"could not remove everything: {cleanup}")
                else:
                    say(f"kept; remove it later with `clusterkit down --cluster {spec.name}`")
            raise
        return inventory

    @staticmethod
    def _outputs_file(paths: ClusterPaths) -> Path:
        return paths.root / "terraform" / "outputs.json"

    def _save_outputs(self, paths: ClusterPaths, outputs: dict[str, Any]) -> None:
        self._outputs_file(paths).write_text(json.dumps(outputs, indent=2) + "\n")

    def outputs(self, paths: ClusterPaths) -> dict[str, Any]:
        path = self._outputs_file(paths)
        if not path.exists():
            raise ClusterkitError(f"no Terraform outputs in {path}: run `clusterkit up` again")
        return dict(json.loads(path.read_text()))

    def inventory(self, cluster: str, paths: ClusterPaths) -> Inventory:
        """The nodes from the saved ``terraform output -json``: the master by its public
        address, each worker by its private address through the master."""
        return inventory_from_outputs(cluster, self.outputs(paths))

    def ansible_inventory(self, cluster: str, paths: ClusterPaths) -> dict[str, Any]:
        return ansible_inventory(self.outputs(paths), self.ssh(paths))

    def write_ansible_inventory(self, cluster: str, paths: ClusterPaths) -> Path:
        """``<state>/inventory/hosts.yml``: ``ansible-playbook -i`` it to run the playbooks by
        hand."""
        path = paths.root / "inventory" / "hosts.yml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.ansible_inventory(cluster, paths), sort_keys=False))
        return path

    def storage_root(self, paths: ClusterPaths) -> str:
        """HDFS on the master: where the jobs read and write on AWS."""
        return f"hdfs://{self.outputs(paths)['master_private_ip']}:{HDFS_PORT}/clusterkit"

    def down(
        self,
        paths: ClusterPaths,
        cluster: str | None = None,
        *,
        region: str | None = None,
        say: Any = lambda _: None,
    ) -> list[str]:
        """``terraform destroy`` when there is a state, then the sweep: anything still tagged
        with the cluster's name is named and removed. Returns what was removed (empty: nothing
        was there); ClusterkitError names what is left."""
        name = cluster or paths.root.name
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

    def describe(self, spec: Spec, paths: ClusterPaths) -> Inventory | None:
        """The nodes, when the Terraform state holds any."""
        if not self.terraform(paths).has_resources():
            return None
        return self.inventory(spec.name, paths)


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


def ansible_inventory(outputs: dict[str, Any], ssh: SshSettings) -> dict[str, Any]:
    """The shape of inventory/example.yml, from Terraform's outputs: strict host keys (those
    recorded at ``up``), the workers through the master, HDFS on."""
    from clusterkit.provision import ssh_args

    inventory = inventory_from_outputs(outputs["cluster_name"], outputs)
    user = outputs["ssh_user"]

    def host(node: Node) -> dict[str, Any]:
        jump = f"{user}@{node.jump_host}" if node.jump_host else None
        return {
            "ansible_host": node.ssh_host,
            "clusterkit_node": node.name,
            "clusterkit_private_ip": node.address,
            "ansible_ssh_common_args": ssh_args(
                key=ssh.key, known_hosts=ssh.known_hosts, jump=jump
            ),
        }

    masters = {n.name: host(n) for n in inventory.nodes if "master" in n.roles}
    workers = {n.name: host(n) for n in inventory.nodes if "worker" in n.roles}
    return {
        "all": {
            "vars": {
                "ansible_user": user,
                "ansible_ssh_private_key_file": str(ssh.key),
                "ansible_python_interpreter": "/usr/bin/python3",
                "clusterkit_cluster": outputs["cluster_name"],
                "clusterkit_cluster_cidr": VPC_CIDR,
                "clusterkit_private_subnet": PRIVATE_SUBNET,
                "clusterkit_hdfs": True,
            },
            "children": {"masters": {"hosts": masters}, "workers": {"hosts": workers}},
        }
    }
