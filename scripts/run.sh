#!/usr/bin/env bash
# make run: start Tally all-in-one on its embedded defaults, load sample data for a demo
# tenant so there are real numbers to look at, print where to look, and keep serving
# until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

export TALLY_DATA_DIR="${DATA_DIR:-$PWD/.tally}"
export TALLY_ADDR="${ADDR:-127.0.0.1:8080}"
export TALLY_SERVER="http://$TALLY_ADDR"
TENANT="${TENANT:-demo}"
MONTH="${MONTH:-$(date -u -d "$(date -u +%Y-%m-01) -1 month" +%Y-%m)}"
ROWS="${ROWS:-20000}"
bin=./bin/tally
start=$(date +%s)

mkdir -p "$TALLY_DATA_DIR"
"$bin" serve &
serve=$!
trap 'kill -INT $serve 2>/dev/null; wait $serve 2>/dev/null' EXIT INT TERM

printf 'waiting for tally on %s ' "$TALLY_SERVER"
for _ in $(seq 1 240); do
  if curl -fsS "$TALLY_SERVER/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 $serve 2>/dev/null; then echo; echo "tally serve exited; see its log above" >&2; exit 1; fi
  printf '.'; sleep 0.5
done
echo
curl -fsS "$TALLY_SERVER/healthz" >/dev/null

echo "== loading the FinOps Foundation's FOCUS 1.0 sample (1,000 real rows, Sep 2024, CC BY 4.0) for tenant $TENANT"
"$bin" ingest testdata/focus/FOCUS-1.0/focus_sample.csv --tenant "$TENANT" --final
sample="$TALLY_DATA_DIR/generated-$MONTH.csv"
"$bin" generate --rows "$ROWS" --month "$MONTH" --output "$sample"
echo "== loading a generated FOCUS 1.3 month ($MONTH, $ROWS rows, four providers) for tenant $TENANT"
"$bin" ingest "$sample" --tenant "$TENANT"

next=$(date -u -d "$MONTH-01 +1 month" +%Y-%m-01)
cat <<MSG

Tally is running at $TALLY_SERVER (data in $TALLY_DATA_DIR), ready in $(( $(date +%s) - start )) s.
  health:  $TALLY_SERVER/healthz     metrics: $TALLY_SERVER/metrics
  admin token: $TALLY_DATA_DIR/admin.token (the CLI on this machine uses it by default)

Try, in another terminal (export TALLY_DATA_DIR=$TALLY_DATA_DIR TALLY_SERVER=$TALLY_SERVER first):
  $bin costs --tenant $TENANT --from $MONTH-01 --to $next --group-by provider,service
  $bin costs --tenant $TENANT --from 2024-09-01 --to 2024-10-01 --group-by provider
  curl -s -H "Authorization: Bearer \$(cat $TALLY_DATA_DIR/admin.token)" '$TALLY_SERVER/tally.v1.LedgerService/GetTotals?encoding=json&message=%7B%22tenantId%22%3A%22$TENANT%22%2C%22from%22%3A%222024-09-01T00%3A00%3A00Z%22%2C%22to%22%3A%222024-10-01T00%3A00%3A00Z%22%7D'
  go tool buf curl --protocol grpc --http2-prior-knowledge -H "Authorization: Bearer \$(cat $TALLY_DATA_DIR/admin.token)" --data '{"tenantId":"$TENANT","from":"$MONTH-01T00:00:00Z","to":"${next}T00:00:00Z"}' $TALLY_SERVER/tally.v1.LedgerService/GetTotals

Ctrl-C stops Tally cleanly.
MSG
wait $serve
