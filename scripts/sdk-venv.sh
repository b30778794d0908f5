#!/usr/bin/env bash
# Creates the two Python virtual environments that the real-client test
# (tests/python_sdk.rs) runs the official SailPoint Python SDK from:
#
#   .venv/sdk1  sailpoint==1.4.2   (sailpoint.beta SIMIntegrationsApi, /beta paths)
#   .venv/sdk2  sailpoint==2.1.72  (sailpoint.sim_integrations, /sim-integrations/v1 paths)
#
# Idempotent: an environment that already has the pinned version is left as
# it is. Needs python3 with the venv module and access to PyPI.
set -euo pipefail

cd "$(dirname "$0")/.."

SDK1_VERSION=1.4.2
SDK2_VERSION=2.1.72
PYTHON=${PYTHON:-python3}

make_venv() {
    local dir=$1 version=$2
    if [ -x "$dir/bin/python" ] &&
        [ "$("$dir/bin/python" -c 'import importlib.metadata as m; print(m.version("sailpoint"))' 2>/dev/null)" = "$version" ]; then
        echo "sdk-venv: $dir already has sailpoint==$version"
        return
    fi
    echo "sdk-venv: creating $dir with sailpoint==$version"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "sailpoint==$version"
    "$dir/bin/python" -c 'import importlib.metadata as m; print("sdk-venv: installed sailpoint", m.version("sailpoint"))'
}

make_venv .venv/sdk1 "$SDK1_VERSION"
make_venv .venv/sdk2 "$SDK2_VERSION"
