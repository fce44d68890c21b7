#!/usr/bin/env bash
# Source-function benchmark: the KnoCommerce seed function end to end (webhook POST → function
# → durable event, answered only once fdatasync'd) against the same events posted through
# /v1/track to the same server in the same run; plus the engine's bare call rate.
# Prints a markdown table for BENCHMARKS.md. Bounded: every load run stops by itself.
#
#   bash bench/functions.sh        # DURATION=10 seconds per run by default; PROFILES=false
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
CONCURRENCY=${CONCURRENCY:-64}
PROFILES=${PROFILES:-true}   # false: the same runs without the profile store
source bench/lib.sh
bench_setup fnbench
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# serve EXTRA_SOURCE_YAML: one server with the KnoCommerce source (plus EXTRA) on :18191.
serve() {
  [ -n "$PID" ] && { kill "$PID"; wait "$PID" 2>/dev/null || true; }
  rm -rf "$WORK/data"
  cat > "$WORK/c.yaml" <<YAML
server: { listen: 127.0.0.1:18191, data_dir: "$WORK/data", min_free_disk: 100MiB }
storage: { profiles: $PROFILES }
sources:
  - { id: api, type: http_api, write_keys: { production: wk_fnbench } }
  - { id: kno, type: webhook, public: true, function: "$PWD/examples/knocommerce/functions/knocommerce.js" }
$1
destinations: []
YAML
  RUST_LOG=warn "$SY" serve --config "$WORK/c.yaml" > "$WORK/out" 2> "$WORK/err" &
  PID=$!
  wait_ready 18191 "$WORK/err"
}
lg() { "$LG" --url http://127.0.0.1:18191 --write-key wk_fnbench --concurrency "$CONCURRENCY" --duration "$DURATION" "$@"; }
serve ""
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], 2))" "$1"; }
ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }

echo "# webhook: KnoCommerce payloads to /webhooks/kno, c=$CONCURRENCY" >&2
WH=$(lg --mode webhook --run-id wh)
echo "# track: the same events to /v1/track, c=$CONCURRENCY" >&2
TR=$(lg --mode kno-track --run-id tr)
ACCEPTED=$(curl -s http://127.0.0.1:18191/metrics | awk '/^switchyard_events_accepted_total\{source="kno"\}/ {print $2}')
echo "# webhook again, with a second (idle) function source: kno may then hold 1 of 2 workers" >&2
serve "  - { id: stigg, type: webhook, public: true, function: \"$PWD/examples/stigg/functions/stigg.js\" }"
WH2=$(lg --mode webhook --run-id wh2)
echo "# engine: bare calls on one thread" >&2
EN=$(cargo bench -q -p switchyard --bench engine -- 5 2>/dev/null | tail -1)

cat <<TABLE
| figure | value | baseline | ratio |
|---|---|---|---|
| KnoCommerce function, webhook → durable event, invocations/s (c=$CONCURRENCY) | $(field "$WH" requests_per_s) | /v1/track, same events: $(field "$TR" requests_per_s) | $(ratio "$(field "$WH" requests_per_s)" "$(field "$TR" requests_per_s)") |
| p99 ms at that load | $(field "$WH" p99_ms) | $(field "$TR" p99_ms) | $(ratio "$(field "$WH" p99_ms)" "$(field "$TR" p99_ms)") |
| same, with a second function source configured (kno's share: 1 of 2 workers) | $(field "$WH2" requests_per_s) | /v1/track, same events: $(field "$TR" requests_per_s) | $(ratio "$(field "$WH2" requests_per_s)" "$(field "$TR" requests_per_s)") |
| engine bare calls/s, one thread | $(field "$EN" calls_per_s) | — | — |
TABLE
echo "errors: webhook $(field "$WH" errors), track $(field "$TR" errors); events accepted from kno: ${ACCEPTED:-?} (webhook requests answered: $(field "$WH" requests))"
