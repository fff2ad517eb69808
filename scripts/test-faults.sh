#!/usr/bin/env bash
# test-faults.sh runs the full crash and restart suite (package faults): kill -9 of tally serve
# while it ingests and projects, an external nats-server and PostgreSQL restarted under a running
# Tally, and a three-node JetStream cluster losing its stream leader. It keeps the whole verbose
# log and ends by printing the counts each test reached (its "faults:" lines).
#
#   scripts/test-faults.sh                         the full suite (TALLY_FAULTS=full)
#   TALLY_FAULTS=short scripts/test-faults.sh      the reduced suite that make test runs
#   TALLY_FAULTS_SEED=123 scripts/test-faults.sh   replay a seed's choices of kill moments
#   FAULTS_RUN=TestKill9Serve scripts/test-faults.sh   one test
#
# The log goes to FAULTS_OUT (default bench-results/faults.log). FAULTS_TIMEOUT (default 45m) is
# go test's -timeout.
set -euo pipefail

cd "$(dirname "$0")/.."
GO=${GO:-go}
export TALLY_FAULTS=${TALLY_FAULTS:-full}
FAULTS_OUT=${FAULTS_OUT:-bench-results/faults.log}
FAULTS_TIMEOUT=${FAULTS_TIMEOUT:-45m}
FAULTS_RUN=${FAULTS_RUN:-.}
mkdir -p "$(dirname "$FAULTS_OUT")"

began=$(date +%s)
set +e
$GO test -count=1 -v -timeout "$FAULTS_TIMEOUT" -run "$FAULTS_RUN" ./faults/ >"$FAULTS_OUT" 2>&1
status=$?
set -e
echo "fault suite ($TALLY_FAULTS) in $(($(date +%s) - began)) s; full log: $FAULTS_OUT"
grep -E '^\s+\S+_test\.go:[0-9]+: faults: |^--- (PASS|FAIL|SKIP)|^(ok|FAIL)\s' "$FAULTS_OUT" || true
if [ $status -ne 0 ]; then
	echo "the fault suite failed; the failures:"
	grep -E -A8 '^\s+Error Trace:|^--- FAIL' "$FAULTS_OUT" | head -80 || true
fi
exit $status
