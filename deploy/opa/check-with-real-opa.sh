#!/usr/bin/env bash
# The checks that need the REAL OPA binary, for a CI job (or a laptop) where `opa` is on PATH or the
# openpolicyagent/opa image can run. The development machines of this project have neither: there the
# test suite runs the opa engine against the stand-in (standins/opa.py) instead.
#
#   1. opa check / opa test: the Rego modules and their *_test.rego under OPA's own semantics
#   2. opa build: the bundle the sidecar serves, with the gateway's revision in its manifest
#   3. the corpus of decision inputs through regopy and through a real `opa run --server`
#
# Usage: deploy/opa/check-with-real-opa.sh   (from anywhere; needs `make setup` for .venv)
set -euo pipefail
cd "$(dirname "$0")/../.."
OPA=${OPA:-opa}
PORT=${OPA_PORT:-8181}

"$OPA" version
"$OPA" check --strict policies/
"$OPA" test -v policies/

revision=$(.venv/bin/python -c 'from gateway.policy import policy_revision; print(policy_revision("policies"))')
mkdir -p var
"$OPA" build --bundle policies/ --revision "$revision" --output var/bundle.tar.gz
echo "bundle var/bundle.tar.gz, revision $revision"

# An empty server on loopback: the tests upload policies/ into it as the gateway does.
"$OPA" run --server --addr "127.0.0.1:$PORT" --log-level error &
opa_pid=$!
trap 'kill "$opa_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
  sleep 0.1
done

VEILIG_DELEN_TEST_OPA_URL="http://127.0.0.1:$PORT" \
  .venv/bin/python -m pytest -q -rxXs tests/policy/test_opa_parity.py
