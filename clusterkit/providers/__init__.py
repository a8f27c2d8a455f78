"""Where nodes come from. One small interface (:class:`~clusterkit.providers.base.NodeProvider`),
one module (or package) per provider, and the one registry that picks them by name."""

from __future__ import annotations

from clusterkit.core.errors import SpecError
from clusterkit.providers.aws.provider import AwsProvider
from clusterkit.providers.base import NodeProvider
from clusterkit.providers.local import LocalProvider
from clusterkit.providers.netns.provider import NetnsProvider

PROVIDERS: dict[str, type[NodeProvider]] = {
    "local": LocalProvider,
    "netns": NetnsProvider,
    "aws": AwsProvider,
}


def get_provider(name: str) -> NodeProvider:
    """The provider called ``name``; SpecError listing the known ones otherwise."""
    try:
        return PROVIDERS[name]()
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise SpecError(f"provider = {name!r} is not allowed: known providers: {known}") from None
