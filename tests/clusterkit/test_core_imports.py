import subprocess
import sys


def test_core_imports_without_the_cli_or_tui_frameworks():
    code = (
        "import sys\n"
        "import clusterkit.lifecycle, clusterkit.cluster, clusterkit.operate, clusterkit.cloud\n"
        "import clusterkit.runs.launcher, clusterkit.runs.supervisor, clusterkit.runs.master\n"
        "import clusterkit.metrics.nodes, clusterkit.metrics.peers, clusterkit.jobkit\n"
        "import clusterkit.catalog, clusterkit.services.playbooks, clusterkit.core.spec\n"
        "import clusterkit.watch, clusterkit.runs.compare, clusterkit.core.fmt\n"
        "bad = [m for m in ('typer', 'textual', 'click', 'rich') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_cli_loads_the_tui_only_for_the_tui_command():
    code = (
        "import sys\n"
        "import clusterkit.cli\n"
        "bad = [m for m in sys.modules if m.startswith(('textual', 'clusterkit.tui'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
