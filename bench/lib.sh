# Shared by the bench scripts (sourced from the repo root): builds the release binaries and
# names them, and makes the run's scratch directory.
#   source bench/lib.sh; bench_setup NAME   # sets SY, LG and WORK (/tmp/switchyard-NAME.XXXXXX)
bench_setup() {
  local target=${CARGO_TARGET_DIR:-target}
  cargo build --release -q -p switchyard -p loadgen
  SY="$target/release/switchyard"
  LG="$target/release/loadgen"
  WORK=$(mktemp -d "/tmp/switchyard-$1.XXXXXX")
}

# wait_ready PORT [ERR_FILE]: until the server's /readyz answers (10 s), else print ERR_FILE and exit.
wait_ready() {
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done
  echo "server on :$1 did not start:"; [ -n "${2:-}" ] && cat "$2"; exit 1
}
