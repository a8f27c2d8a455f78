#!/usr/bin/env bash
# Install what clusterkit needs on this machine, idempotently:
#   - Python 3.11 or 3.12 (pyspark 4 needs >= 3.11; Ray wheels stop at 3.12 here)
#   - Java 17+ for Spark: installed with apt-get when missing and we are root,
#     otherwise one line saying what to install
#   - a virtual environment in .venv with clusterkit and its pinned dependencies
# Usage: bash scripts/bootstrap.sh [--dev]     (--dev adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
[[ "${1:-}" == "--dev" ]] && extras="[dev]"

say() { printf '· %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_root() { [[ "$(id -u)" == 0 ]]; }
apt_install() {
  say "installing $* with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Python -----------------------------------------------------------------
python=""
for candidate in python3.11 python3.12 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] < (3, 13)))'; then
    python=$(command -v "$candidate"); break
  fi
done
[[ -n "$python" ]] || die "Python 3.11 or 3.12 not found: install it (Debian 12: apt-get install -y python3 python3-venv) and re-run"
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  if is_root && command -v apt-get >/dev/null; then apt_install python3-venv
  else die "$python cannot make virtual environments: install python3-venv (sudo apt-get install -y python3-venv) and re-run"; fi
fi

# --- Java 17+ ---------------------------------------------------------------
java_major() {  # prints the major version of the java Spark would use, or nothing
  local java="${JAVA_HOME:+$JAVA_HOME/bin/java}"
  [[ -n "$java" && -x "$java" ]] || java=$(command -v java 2>/dev/null) || return 0
  "$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)\.\{0,1\}\([0-9]*\).*/\1 \2/p' |
    awk 'NR == 1 { print ($1 == 1 ? $2 : $1) }'
}
major=$(java_major)
if [[ -z "$major" || "$major" -lt 17 ]]; then
  found=${major:+Java $major found, too old}; found=${found:-no Java found}
  if is_root && command -v apt-get >/dev/null; then
    apt_install openjdk-17-jre-headless
    unset JAVA_HOME
  else
    die "$found; Spark needs Java 17+: install it (sudo apt-get install -y openjdk-17-jre-headless) or set JAVA_HOME, then re-run"
  fi
fi

# --- the netns rehearsal's host tools (tests, --dev only) ---------------------
# iproute2 and iptables build the rehearsal's network and openssh-server runs in its nodes;
# the nodes' roots are overlays of this machine's, so the packages the playbooks install
# (the JDK, iptables-persistent, ...) must be here already (the rehearsal has no internet).
# zstd reads Spark's compressed event logs and systemd-analyze verifies the rendered units
# in the tests; chromium opens `clusterkit report`'s page headless in its tests. Without root
# the tests that need them are skipped with that reason, so nothing is installed then.
if [[ -n "$extras" ]] && is_root && command -v apt-get >/dev/null; then
  missing=()
  for package in iproute2 iptables iptables-persistent openssh-server openssh-client \
                 python3-apt python3-venv rsync openjdk-17-jre-headless zstd systemd \
                 chromium; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if (( ${#missing[@]} )); then apt_install "${missing[@]}"; fi
fi

# --- the virtual environment --------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv with $python"
  "$python" -m venv .venv
fi
say "installing clusterkit${extras} into .venv (versions pinned in pyproject.toml)"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras}"

# --- isolated tools (--dev): pins that clash with the kit's, in .venv-tools -------------
if [[ -n "$extras" ]]; then
  mapfile -t tools < <(.venv/bin/python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["tool"]["clusterkit"]["isolated-tools"]))')
  [[ -x .venv-tools/bin/python ]] || "$python" -m venv .venv-tools
  say "installing ${tools[*]} into .venv-tools (pinned in pyproject.toml, [tool.clusterkit])"
  .venv-tools/bin/python -m pip install -q --disable-pip-version-check "${tools[@]}"
fi
say "ready: .venv/bin/clusterkit"
