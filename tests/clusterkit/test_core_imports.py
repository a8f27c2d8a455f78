import subprocess
import sys


def test_core_imports_without_the_cli_or_tui_frameworks():
    code = (
        "import sys\n"
        "import clusterkit.cluster, clusterkit.runs, clusterkit.supervisor, clusterkit.metrics\n"
        "import clusterkit.catalog, clusterkit.services, clusterkit.spec\n"
        "import clusterkit.watch, clusterkit.launch, clusterkit.compare, clusterkit.fmt\n"
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
