"""clusterkit: a reproducible Spark + Ray (+ HDFS) cluster kit.

Everything but ``clusterkit.cli`` and ``clusterkit.tui`` imports neither Typer nor Textual,
so scripts, the CLI and the TUI all call the same functions. The layers and their import
rules: docs/development.md.
"""

__version__ = "0.1.0"
