#!/usr/bin/env bash
# Creates (once) the Python virtualenv for the ecs-sim SDK tests, outside the repository, and
# prints its path on stdout. The directory name carries a hash of the requirements file, so a
# changed pin gives a fresh venv; an existing venv is reused as is.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$repo_root/ecs-sim/sdk-tests/requirements.txt"
python="${PYTHON:-python3}"

hash="$(sha256sum "$requirements" | cut -c1-12)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/ecs-instance-controller"
venv="$cache_root/venv-$hash"

if [[ ! -f "$venv/.complete" ]]; then
    rm -rf "$venv"
    mkdir -p "$cache_root"
    # Everything but the final path goes to stderr, so callers can capture stdout.
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2
    touch "$venv/.complete"
fi

echo "$venv"
