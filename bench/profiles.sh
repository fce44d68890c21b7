#!/usr/bin/env bash
# Profile-store benchmark: what keeping profiles costs ingest, measured as the same binary with
# `storage.profiles: true` against `false` in the same run, and how fast the store catches up
# on a backlog. Two workloads: /v1/track where one person sends everything (the store's cheap
# case), and /v1/batch where events are scattered over a million user ids (nearly every
# event is a person the step has not seen: the worst case). Bounded: every run stops itself.
#
#   bash bench/profiles.sh        # DURATION=10 seconds per load run
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10}
source bench/lib.sh
bench_setup profiles
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=18195

start() { # start true|false
  rm -rf "$WORK/data"
  cat > "$WORK/c.yaml" <<YAML
server: { listen: 127.0.0.1:$PORT, data_dir: "$WORK/data", min_free_disk: 100MiB }
storage: { profiles: $1 }
sources: [{ id: bench, type: http_api, write_keys: { production: wk_bench } }]
destinations: []
YAML
  RUST_LOG=warn "$SY" serve --config "$WORK/c.yaml" > "$WORK/out" 2> "$WORK/err" &
  PID=$!
  wait_ready "$PORT" "$WORK/err"
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
backlog() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^switchyard_profiles_backlog_events/ {print $2}'; }
# load NAME ARGS...: prints events/s
load() {
  "$LG" --url "http://127.0.0.1:$PORT" --write-key wk_bench --run-id "$1-$RANDOM" --duration "$DURATION" "${@:2}" \
    | python3 -c "import json,sys; print(round(json.load(sys.stdin)['events_per_s']))"
}

TRACK=(--mode track --concurrency 128)
SCATTER=(--mode batch --batch 100 --concurrency 32 --users 1000000)
declare -A R
for mode in false true; do
  start "$mode"; R[track-$mode]=$(load track "${TRACK[@]}"); stop
  start "$mode"; R[scatter-$mode]=$(load scatter "${SCATTER[@]}")
  if [ "$mode" = true ]; then
    # Catch-up: the backlog left when the load stops, and how long the store takes to apply it.
    left=$(backlog); t0=$(date +%s.%N)
    for _ in $(seq 600); do [ "$(backlog)" = 0 ] && break; sleep 0.2; done
    t1=$(date +%s.%N)
    R[left]=$left; R[catchup]=$(python3 -c "print(round($left / max($t1 - $t0, 0.001)))")
    R[rss]=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$PID/status")
  fi
  stop
done
ratio() { python3 -c "print(round($1 / $2, 2))"; }
echo "| workload | profiles off | profiles on | ratio |"
echo "|---|---|---|---|"
echo "| /v1/track events/s, one user, 128 connections | ${R[track-false]} | ${R[track-true]} | $(ratio "${R[track-true]}" "${R[track-false]}") |"
echo "| /v1/batch events/s, 1,000,000 user ids, 32 connections | ${R[scatter-false]} | ${R[scatter-true]} | $(ratio "${R[scatter-true]}" "${R[scatter-false]}") |"
echo
echo "Scattered run: ${R[left]} events were still to apply when the load stopped; the store applied them at ${R[catchup]} events/s. Peak RSS ${R[rss]} MiB."
