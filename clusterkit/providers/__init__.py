"""Where nodes come from. One small interface (:class:`Provider`), one module per provider."""

from __future__ import annotations

from clusterkit.errors import SpecError
from clusterkit.providers.aws import AwsProvider
from clusterkit.providers.base import Provider
from clusterkit.providers.local import LocalProvider
from clusterkit.providers.netns import NetnsProvider

PROVIDERS: dict[str, type[Provider]] = {
    "local": LocalProvider,
    "netns": NetnsProvider,
    "aws": AwsProvider,
}


def get_provider(name: str) -> Provider:
    """The provider called ``name``; SpecError listing the known ones otherwise."""
    try:
        return PROVIDERS[name]()
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise SpecError(f"provider = {name!r} is not allowed: known providers: {known}") from None
