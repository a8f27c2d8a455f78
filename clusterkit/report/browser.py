"""Opening a report in a web browser, only where one can show it.

Without a display, Python's :mod:`webbrowser` falls back to a text browser (``www-browser``,
``lynx``, ``w3m``) that would take over the terminal (the console's own, say); so a page is
opened only when this machine has a display, and never raises: the caller shows the path.
"""

from __future__ import annotations

import os
import sys
import webbrowser
from collections.abc import Callable, Mapping
from pathlib import Path


def display_available(env: Mapping[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a graphical browser can be shown: macOS and Windows always; elsewhere when
    ``DISPLAY`` or ``WAYLAND_DISPLAY`` is set."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if platform == "darwin" or platform.startswith("win"):
        return True
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def open_in_browser(path: Path, *, opener: Callable[[str], bool] | None = None,
                    env: Mapping[str, str] | None = None) -> bool:  # fmt: skip
    """Open ``path`` in a browser when a display is available; whether it was opened (False
    without a display, or when no browser would: never an exception)."""
    if not display_available(env):
        return False
    try:
        return bool((opener or webbrowser.open)(path.resolve().as_uri()))
    except (webbrowser.Error, OSError):
        return False
