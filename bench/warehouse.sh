#!/usr/bin/env bash
# Warehouse benchmark: rows/s that the postgres destination loads for EVENTS track events
# spread over 20 event names (each event is a row in `tracks` and one in its event table),
# against a raw COPY of the very same rows, pre-rendered as CSV, loaded with psql into empty
# copies of the same tables, in the same run. Prints a markdown table for BENCHMARKS.md.
#
#   bash bench/warehouse.sh        # EVENTS=1000000 by default; PG_URL to point elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
EVENTS=${EVENTS:-1000000}
PG=${PG_URL:-postgres://postgres@127.0.0.1:5432}
source bench/lib.sh
bench_setup whbench
DB="sybench_$(date +%s)"
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
psql "$PG/postgres" -qc "CREATE DATABASE $DB"
chmod 755 "$WORK"

serve() {  # serve DESTINATIONS_YAML
  cat > "$WORK/c.yaml" <<YAML
server: { listen: 127.0.0.1:18195, data_dir: "$WORK/data", min_free_disk: 100MiB }
sources: [{ id: bench, type: http_api, write_keys: { production: wk_whbench } }]
destinations: $1
YAML
  RUST_LOG=${BENCH_LOG:-warn} "$SY" serve --config "$WORK/c.yaml" > "$WORK/out" 2> "$WORK/err" &
  PID=$!
  wait_ready 18195 "$WORK/err"
}
now() { date +%s.%N; }

echo "# filling the log with $EVENTS events over 20 names (no destination yet)" >&2
serve "[]"
"$LG" --url http://127.0.0.1:18195 --write-key wk_whbench --mode batch --batch 100 --event-names 20 \
  --concurrency 16 --max-events "$EVENTS" --duration 600 --run-id wh >/dev/null
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=

echo "# loading them: the postgres destination from the start of the log" >&2
T0=$(now)
[ -n "${PERF_OUT:-}" ] && (sleep 3; perf record -a -g -o "$PERF_OUT" -- sleep 8 >/dev/null 2>&1) &
serve "[{ id: warehouse, type: postgres, start: earliest, settings: { url: \"$PG/$DB\" } }]"
while :; do
  # A light poll (curl and grep) so the measuring does not compete for the two cores.
  curl -s http://127.0.0.1:18195/api/v1/inspect | grep -q '"backlog":0[,}]' && break
  sleep 0.25
done
T1=$(now)
[ -n "${BENCH_LOG:-}" ] && cp "$WORK/err" /tmp/whbench.err
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
TABLES=$(psql "$PG/$DB" -tAc "SELECT table_name FROM information_schema.tables WHERE table_schema = 'bench' AND (table_name = 'tracks' OR table_name LIKE 'event_%') ORDER BY 1")
ROWS=0
for t in $TABLES; do ROWS=$((ROWS + $(psql "$PG/$DB" -tAc "SELECT count(*) FROM bench.$t"))); done

echo "# baseline: raw COPY of the same rows as CSV into empty copies of the tables" >&2
psql "$PG/$DB" -qc "CREATE SCHEMA raw"
for t in $TABLES; do
  psql "$PG/$DB" -qc "CREATE TABLE raw.$t (LIKE bench.$t INCLUDING ALL)"
  psql "$PG/$DB" -qc "\\copy bench.$t TO '$WORK/$t.csv' CSV"
done
C0=$(now)
for t in $TABLES; do psql "$PG/$DB" -qc "\\copy raw.$t FROM '$WORK/$t.csv' CSV"; done
C1=$(now)
RAW=0
for t in $TABLES; do RAW=$((RAW + $(psql "$PG/$DB" -tAc "SELECT count(*) FROM raw.$t"))); done

python3 - "$ROWS" "$T0" "$T1" "$RAW" "$C0" "$C1" <<'PY'
import sys
rows, t0, t1, raw, c0, c1 = int(sys.argv[1]), *map(float, sys.argv[2:4]), int(sys.argv[4]), *map(float, sys.argv[5:7])
ours, base = rows / (t1 - t0), raw / (c1 - c0)
print("| figure | switchyard postgres destination | raw COPY (psql, CSV) | ratio |")
print("|---|---|---|---|")
print(f"| rows loaded | {rows:,} in {t1 - t0:.1f} s | {raw:,} in {c1 - c0:.1f} s | |")
print(f"| rows/s | {ours:,.0f} | {base:,.0f} | {ours / base:.2f} |")
PY
