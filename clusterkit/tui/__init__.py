"""``clusterkit tui``: a Textual console over the core (the core never imports this package)."""

from __future__ import annotations


def run(cluster_name: str | None = None) -> None:
    """Open the console on the named (or current) cluster; returns when the user quits."""
    from clusterkit.tui.app import ClusterkitApp
    from clusterkit.watch import LiveSource

    ClusterkitApp(LiveSource(cluster_name)).run()
