"""The playbooks checked without running them: syntax, ansible-lint's production profile,
and the /etc/hosts template rendered for the example two-node inventory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from jinja2 import Environment, FileSystemLoader, StrictUndefined

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_syntax_check_with_the_example_inventory():
    proc = _run(str(BIN / "ansible-playbook"), "--syntax-check", "-i", "inventory/example.yml",
                "playbooks/site.yml")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "WARNING" not in proc.stderr, proc.stderr


def test_ansible_lint_production_profile():
    proc = _run(str(BIN / "ansible-lint"), "--profile", "production", "playbooks/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_role_has_defaults_argument_specs_and_metadata():
    roles = sorted((ROOT / "playbooks" / "roles").iterdir())
    assert {r.name for r in roles} >= {"common", "ssh", "nat"}
    for role in roles:
        specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text()) or {}
        options = specs["argument_specs"]["main"]["options"]
        assert set(defaults) == set(options), role.name  # every tunable declared, and only those
        assert all(o.get("description") for o in options.values()), role.name


def test_hosts_template_for_the_example_inventory():
    inventory = yaml.safe_load((ROOT / "inventory" / "example.yml").read_text())["all"]
    hostvars = {h: v for group in inventory["children"].values()
                for h, v in group["hosts"].items()}  # fmt: skip
    env = Environment(loader=FileSystemLoader(ROOT / "playbooks/roles/common/templates"),
                      undefined=StrictUndefined)  # fmt: skip
    text = env.get_template("hosts.j2").render(
        ansible_managed="managed", groups={"all": list(hostvars)}, hostvars=hostvars
    )
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert "10.0.1.10 master" in lines and "10.0.2.10 worker" in lines
    assert not [line for line in lines if line.startswith("127.0.1.1")]
