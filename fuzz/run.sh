#!/usr/bin/env bash
# Runs every fuzz target and prints one line per target: executions, rate, corpus size and
# the verdict. Bounded: each target stops after RUNS executions or SECONDS seconds, whichever
# comes first. A crash stops that target, keeps its input under fuzz/artifacts/ and makes the
# script exit 1.
#   bash fuzz/run.sh                      # CI smoke: 15 s per target
#   RUNS=10000000 SECONDS_PER=3600 WRITE_CORPUS=1 bash fuzz/run.sh   # the dedicated run
# The committed corpus is read; new inputs go to a scratch directory unless WRITE_CORPUS=1
# (then minimise with `cargo fuzz cmin` before committing).
set -uo pipefail
cd "$(dirname "$0")"
RUNS=${RUNS:-100000000}
SECONDS_PER=${SECONDS_PER:-15}
TARGETS=${TARGETS:-"ingest timestamp fql mapping config verify function_output"}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --version 0.13.2
cargo fuzz build -s none -O >/dev/null 2>&1 || cargo fuzz build -s none -O
status=0
printf '%-16s %12s %10s %8s  %s\n' target executions exec/s corpus verdict
for t in $TARGETS; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  dirs=("corpus/$t")
  [ "${WRITE_CORPUS:-0}" = 1 ] || dirs=("$(mktemp -d)" "corpus/$t")
  cargo fuzz run -s none -O "$t" "${dirs[@]}" -- \
    -runs="$RUNS" -max_total_time="$SECONDS_PER" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  rate=$(grep -oE 'exec/s: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$')
  files=$(find "corpus/$t" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then verdict="0 crashes"; else verdict="CRASH (exit $rc), see fuzz/artifacts/$t"; status=1; grep -E 'panicked|ERROR' "$log" | head -3; fi
  printf '%-16s %12s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "$files" "$verdict"
  rm -f "$log"
  [ "${WRITE_CORPUS:-0}" = 1 ] || rm -rf "${dirs[0]}"
done
exit "$status"
