"""The tag every AWS resource of a cluster carries: ``clusterkit:cluster = <name>``."""

TAG_KEY = "clusterkit:cluster"


def tag_filter(cluster: str) -> list[dict[str, object]]:
    """The EC2 ``Filters`` that select the cluster's resources."""
    return [{"Name": f"tag:{TAG_KEY}", "Values": [cluster]}]
