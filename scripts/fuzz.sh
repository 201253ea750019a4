#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for FUZZ_RUNS executions or FUZZ_SECONDS, whichever
# comes first, from the seeds kept in the repo (fuzz/corpus/<target>: hand-written inputs and
# every input that once failed) and the corpus earlier runs grew on this machine
# (fuzz/target/corpus-work, not committed). Prints each target's executions. A failing input is
# left in fuzz/artifacts/<target>/: add it to fuzz/corpus/<target>/ with the fix, and make test
# replays it from then on.
#   FUZZ_TARGETS="framing path_acl"  a subset       FUZZ_RUNS=10000000  FUZZ_SECONDS=1800
# cargo fuzz needs nightly features: a nightly toolchain is used when rustup has one, otherwise
# the stable compiler is asked to allow them (RUSTC_BOOTSTRAP=1).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS="${FUZZ_RUNS:-10000000}"
SECONDS_EACH="${FUZZ_SECONDS:-1800}"
TARGETS="${FUZZ_TARGETS:-framing path_acl spiffe_id cloudevent state_query resources}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz() { cargo +nightly fuzz "$@"; }
else
  fuzz() { RUSTC_BOOTSTRAP=1 cargo fuzz "$@"; }
fi

# Coverage instrumentation does not survive the release profile's fat LTO (undefined __sancov_gen_
# symbols at link time).
export CARGO_PROFILE_RELEASE_LTO=false

work="fuzz/target/corpus-work"
for t in $TARGETS; do
  mkdir -p "$work/$t" "fuzz/corpus/$t"
  log="fuzz/target/$t.log"
  echo "fuzz: $t (at most $RUNS executions or ${SECONDS_EACH}s)"
  fuzz run "$t" "$work/$t" "fuzz/corpus/$t" -- -runs="$RUNS" -max_total_time="$SECONDS_EACH" \
    -print_final_stats=1 -max_len=4096 >"$log" 2>&1 || { tail -40 "$log"; echo "fuzz: $t FAILED (log: $log)"; exit 1; }
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  secs=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "fuzz: $t ran $execs executions ($secs/s), no crash"
done
