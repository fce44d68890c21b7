#!/usr/bin/env bash
# Ingest benchmark: switchyard (durable: fdatasync'd group commit before every 200) against a
# baseline of the same binary with --bench-no-store (same HTTP stack, auth, JSON parsing and
# normalisation, nothing stored), measured in the same run. Prints a markdown table of
# figures and ratios for BENCHMARKS.md. Bounded: every load run stops by itself.
#
#   bash bench/run.sh            # DURATION=10 seconds per run by default
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
BACKLOG_EVENTS=${BACKLOG_EVENTS:-1000000}
source bench/lib.sh
bench_setup bench
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

# start NAME PORT DESTINATIONS_YAML EXTRA_FLAGS...
start() {
  local name=$1 port=$2 dests=$3; shift 3
  mkdir -p "$WORK/$name"
  cat > "$WORK/$name.yaml" <<YAML
server: { listen: 127.0.0.1:$port, data_dir: "$WORK/$name", min_free_disk: 100MiB }
sources: [{ id: bench, type: http_api, write_keys: { production: wk_bench_$name } }]
destinations: $dests
YAML
  RUST_LOG=warn "$SY" serve --config "$WORK/$name.yaml" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" &
  PIDS+=($!)
  echo $! > "$WORK/$name.pid"
  wait_ready "$port" "$WORK/$name.err"
}
stop() { kill "$(cat "$WORK/$1.pid")"; wait "$(cat "$WORK/$1.pid")" 2>/dev/null || true; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$(cat "$WORK/$1.pid")/status"; }
lg() { "$LG" --url "http://127.0.0.1:$1" --write-key "wk_bench_$2" --run-id "$2-$3" "${@:4}"; }
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['$2'], 2))" "$1"; }

start durable 18181 "[]"
start baseline 18182 "[]" --bench-no-store

echo "# batch: /v1/batch, 100 events of ~900 B, 32 connections" >&2
DB=$(lg 18181 durable batch --mode batch --batch 100 --concurrency 32 --duration "$DURATION")
BB=$(lg 18182 baseline batch --mode batch --batch 100 --concurrency 32 --duration "$DURATION")
echo "# track: single /v1/track, 128 connections" >&2
DT=$(lg 18181 durable track --mode track --concurrency 128 --duration "$DURATION")
BT=$(lg 18182 baseline track --mode track --concurrency 128 --duration "$DURATION")
HALF=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['requests_per_s'] / 2))" "$DT")
echo "# latency: single /v1/track at $HALF req/s (half the durable maximum)" >&2
DL=$(lg 18181 durable lat --mode track --concurrency 64 --rate "$HALF" --duration "$DURATION")
BL=$(lg 18182 baseline lat --mode track --concurrency 64 --rate "$HALF" --duration "$DURATION")
stop durable; stop baseline

echo "# RSS with a ${BACKLOG_EVENTS}-event backlog (the destination cannot write)" >&2
start backlog 18183 "[{ id: stalled, type: file, settings: { path: /proc/switchyard-bench/events.jsonl } }]"
start baseline2 18184 "[]" --bench-no-store
lg 18183 backlog fill --mode batch --batch 100 --concurrency 16 --max-events "$BACKLOG_EVENTS" --duration 300 >/dev/null
lg 18184 baseline2 fill --mode batch --batch 100 --concurrency 16 --max-events "$BACKLOG_EVENTS" --duration 300 >/dev/null
sleep 2
BACKLOG=$(curl -s http://127.0.0.1:18183/api/v1/inspect | python3 -c "import json,sys; print(json.load(sys.stdin)['destinations'][0]['backlog'])")
RSS_D=$(rss_kb backlog); RSS_B=$(rss_kb baseline2)

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}' if b else 'n/a')" "$1" "$2"; }
cat <<TABLE
| figure | switchyard (durable) | baseline (no store) | ratio |
|---|---|---|---|
| /v1/batch events/s (100 × ~900 B, c=32) | $(field "$DB" events_per_s) | $(field "$BB" events_per_s) | $(ratio "$(field "$DB" events_per_s)" "$(field "$BB" events_per_s)") |
| /v1/batch p99 ms at max load | $(field "$DB" p99_ms) | $(field "$BB" p99_ms) | $(ratio "$(field "$DB" p99_ms)" "$(field "$BB" p99_ms)") |
| /v1/track requests/s (c=128) | $(field "$DT" requests_per_s) | $(field "$BT" requests_per_s) | $(ratio "$(field "$DT" requests_per_s)" "$(field "$BT" requests_per_s)") |
| /v1/track p50 ms at $HALF req/s | $(field "$DL" p50_ms) | $(field "$BL" p50_ms) | $(ratio "$(field "$DL" p50_ms)" "$(field "$BL" p50_ms)") |
| /v1/track p99 ms at $HALF req/s | $(field "$DL" p99_ms) | $(field "$BL" p99_ms) | $(ratio "$(field "$DL" p99_ms)" "$(field "$BL" p99_ms)") |
| RSS MiB after $BACKLOG_EVENTS events (backlog $BACKLOG) | $((RSS_D / 1024)) | $((RSS_B / 1024)) | $(ratio "$RSS_D" "$RSS_B") |
TABLE
echo "errors: batch $(field "$DB" errors)/$(field "$BB" errors), track $(field "$DT" errors)/$(field "$BT" errors), latency $(field "$DL" errors)/$(field "$BL" errors)"
echo "raw: $DB $BB $DT $BT $DL $BL" > "${BENCH_RAW:-/dev/null}"
