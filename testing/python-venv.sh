#!/usr/bin/env bash
# Creates (once) a Python venv with the OpenStack clients the conformance tests drive,
# and prints its bin directory.
#
#   VENV=${NODEPOOL_TEST_VENV:-$PWD/target/pyvenv}
#   testing/python-venv.sh            -> prints "$VENV/bin"
#
# Versions are those of shared/openstack-kit/requirements.lock (the clients the real
# OpenStack kit was captured with), so the simulator is checked by the same clients.
# Idempotent: a stamp file records the pinned set; a change of pins rebuilds the venv.
set -euo pipefail

VENV="${NODEPOOL_TEST_VENV:-$PWD/target/pyvenv}"
PYTHON="${PYTHON:-python3}"
PINS=(
  "python-openstackclient==10.5.0"
  "openstacksdk==4.22.0"
  "keystoneauth1==5.18.1"
  "osc-lib==4.7.0"
  "cliff==4.17.0"
)
STAMP="$VENV/.nodepool-venv-stamp"
WANT="$(printf '%s\n' "${PINS[@]}")"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/openstack" ]]; then
  echo "$VENV/bin"
  exit 0
fi

echo "python-venv.sh: installing OpenStack clients into $VENV" >&2
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --upgrade pip >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${PINS[@]}" >&2
"$VENV/bin/openstack" --version >&2
"$VENV/bin/python" -c "import importlib.metadata as m; print(\"openstacksdk\", m.version(\"openstacksdk\"))" >&2
printf '%s\n' "${PINS[@]}" >"$STAMP"
echo "$VENV/bin"
