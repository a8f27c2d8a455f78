"""clusterkit: a reproducible Spark + Ray (+ HDFS) cluster kit.

The core (everything but ``clusterkit.cli`` and, later, ``clusterkit.tui``) imports neither
Typer nor Textual, so scripts, the CLI and the TUI all call the same functions.
"""

__version__ = "0.1.0"
