#!/usr/bin/env bash
# Before/after on the delivery path: two switchyard binaries, taking turns, each run on a
# fresh data dir with the default delivery settings (one webhook destination, one mapping,
# batch_size 0). Per run: p50/p99/max ms at RATE events/s (ingest 2xx → arrival), then
# deliveries/s for COUNT events.
#   bash bench/ab.sh BEFORE_BIN AFTER_BIN      # RUNS=5 RATE=10000 DURATION=10 COUNT=100000
# Build the before binary from a worktree with its own target dir, e.g.
#   git worktree add /tmp/before <commit> && (cd /tmp/before && cargo build --release -p switchyard)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}; RATE=${RATE:-10000}; DURATION=${DURATION:-10}; COUNT=${COUNT:-100000}
source bench/lib.sh
bench_setup ab
declare -A BIN=([before]=$1 [after]=$2)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
cat > "$WORK/ab.yaml" <<YAML
server: { listen: 127.0.0.1:18281, data_dir: "$WORK/data", min_free_disk: 100MiB, egress_allow: ["127.0.0.1:18282"] }
sources: [{ id: bench, type: http_api, write_keys: { production: wk_ab } }]
destinations:
  - id: hook
    type: webhook
    mappings: [{ name: all, subscribe: 'type = "track"', url: "http://127.0.0.1:18282/in" }]
YAML
serve() {
  rm -rf "$WORK/data"
  RUST_LOG=warn "${BIN[$1]}" serve --config "$WORK/ab.yaml" > /dev/null 2> "$WORK/err" & PID=$!
  wait_ready 18281 "$WORK/err"
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
e2e() { "$LG" e2e --url http://127.0.0.1:18281 --write-key wk_ab --receiver-port 18282 "$@"; }
pick() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(' '.join(str(round(d[k],2)) for k in sys.argv[2:]))" "$@"; }
echo "run build p50_ms p99_ms max_ms deliveries_per_s"
for i in $(seq "$RUNS"); do
  for v in before after; do
    serve "$v"; LAT=$(e2e --rate "$RATE" --duration "$DURATION" --batch 10 --run-id "l$v$i"); stop
    serve "$v"; TP=$(e2e --count "$COUNT" --batch 100 --concurrency 4 --run-id "t$v$i"); stop
    echo "$i $v $(pick "$LAT" p50_ms p99_ms max_ms) $(pick "$TP" arrival_events_per_s)"
  done
done
