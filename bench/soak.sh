#!/usr/bin/env bash
# The soak run of BENCHMARKS.md: a sidecar pair under steady load for minutes, watched for
# memory growth and for latency drift.
#
#   bench/soak.sh    1000 requests/s of 1 KiB invoke calls, a → b → echo app, for 10 minutes
#
# SOAK_MINUTES (default 10), SOAK_INTERVAL (seconds per sample, default 10) and SOAK_WARMUP
# (seconds before the memory baseline, default 60) change the run; all are whole numbers.
#
# The load runs back to back in intervals of SOAK_INTERVAL seconds. After each, the script
# records the interval's latency, throughput and errors, and each sidecar's resident memory.
# Writes bench/results/soak-<UTC date and time>/: samples/*.json (every measurement), soak.json,
# soak.md, soak.svg (memory and p99 over time) and logs/ (the processes' output). The run holds
# when each sidecar's memory at the end is within 10 % of its memory at the end of the warm-up,
# and no request failed; otherwise the script exits non-zero. Pinning: the load generator on
# CPU 0, everything under test on CPU 1, each sidecar with one worker. All traffic goes to
# 127.0.0.1. The sidecars' transport between them is left at its default (auto), as users run
# them. Builds nothing: `make bench-soak` builds the release binaries first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# = 0 ] || { echo "usage: [SOAK_MINUTES=10] [SOAK_INTERVAL=10] [SOAK_WARMUP=60] bench/soak.sh" >&2; exit 2; }
SOAK_MINUTES="${SOAK_MINUTES:-10}"
SOAK_INTERVAL="${SOAK_INTERVAL:-10}"
SOAK_WARMUP="${SOAK_WARMUP:-60}"
RATE=1000
CONNS=16
BODY=1024

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/release"
OUT="$ROOT/bench/results/soak-$(date -u +%Y-%m-%dT%H%M%SZ)"

log() { printf 'soak: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
RUN=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The processes' logs outlive the temporary directory: a sidecar that exited mid-run says why.
  if [ -n "$RUN" ] && [ -d "$OUT" ]; then
    mkdir -p "$OUT/logs" && cp "$RUN"/*.log "$OUT/logs/" 2>/dev/null || true
  fi
  [ -n "$RUN" ] && rm -rf "$RUN"
}
trap cleanup EXIT

for v in SOAK_MINUTES SOAK_INTERVAL; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number above 0, not ${!v}"
done
[[ "$SOAK_WARMUP" =~ ^[0-9]+$ ]] || die "SOAK_WARMUP must be a whole number of seconds, not $SOAK_WARMUP"
INTERVALS=$(( (SOAK_MINUTES * 60 + SOAK_INTERVAL - 1) / SOAK_INTERVAL ))
# The baseline is the first interval ending at or after the warm-up; at least one must follow it.
BASE=$(( SOAK_WARMUP == 0 ? 1 : (SOAK_WARMUP + SOAK_INTERVAL - 1) / SOAK_INTERVAL ))
[ "$INTERVALS" -gt "$BASE" ] || die "a ${SOAK_WARMUP} s warm-up leaves no sample after it in a run of ${SOAK_MINUTES} min"

for tool in taskset curl awk ss; do
  command -v "$tool" >/dev/null || die "$tool is missing: run make deps"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (generator on CPU 0, the rest on CPU 1)"
[ -x "$BIN/outrider" ] && [ -x "$BIN/outrider-bench" ] || die "build first: cargo build --release -p outrider -p outrider-bench"

[ ! -e "$OUT" ] || die "$OUT exists already"
RUN="$(mktemp -d)"
mkdir -p "$OUT/samples"

GEN=(taskset -c 0 "$BIN/outrider-bench")
UNDER=(taskset -c 1)
export TOKIO_WORKER_THREADS=1

# Ports (all on 127.0.0.1): a range of their own, apart from run.sh's, below Linux's ephemeral
# range so no client connection holds one. 21109–21115 are spare; all 16 are checked.
ECHO=21100
A_API=21101 A_GRPC=21102 A_MESH=21103 A_ADMIN=21104
B_API=21105 B_GRPC=21106 B_MESH=21107 B_ADMIN=21108
for port in $(seq 21100 21115); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use (a leftover run?)"; fi
done
# In auto the sidecars take their mesh ports' numbers on UDP as well (HTTP/3).
for port in $A_MESH $B_MESH; do
  [ -z "$(ss -Hlun "sport = :$port")" ] || die "UDP port $port is in use (a leftover run?)"
done

wait_http() { # wait_http URL [codes]
  for _ in $(seq 300); do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)
    case " ${2:-200 204} " in *" $code "*) return 0 ;; esac
    sleep 0.05
  done
  die "$1 never answered"
}

start() { # start NAME CMD... : runs CMD pinned to CPU 1, logs to $RUN/NAME.log
  local name=$1; shift
  "${UNDER[@]}" "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_${name//-/_}=$!"
}

rss_mb() { # rss_mb PID -> its VmRSS in MB; fails when the process is gone (or a zombie: no VmRSS)
  local kb
  kb=$(awk '/^VmRSS:/{print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$kb" ] || return 1
  awk "BEGIN{print $kb/1024}"
}

mesh_counts() { # mesh_counts ADMIN_PORT -> "H2 H3": requests the sidecar sent to its peers over
  # each transport, by its `outrider_mesh_requests_total`
  curl -sf "http://127.0.0.1:$1/metrics" | awk '
    /^outrider_mesh_requests_total\{/ && /direction="outbound"/ {
      if (/transport="h3"/) h3 += $NF; else if (/transport="h2"/) h2 += $NF
    }
    END { printf "%d %d\n", h2, h3 }'
}

log "starting the echo app and the sidecar pair (logs in $OUT/logs at the end)"
START_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ)
start echo "$BIN/outrider-bench" echo --listen "127.0.0.1:$ECHO"
# The sidecars share a $HOME of their own: one development CA, one local registry, which holds
# only these two. No --mesh-transport: auto, the default, is what is soaked.
SIDECAR_HOME="$RUN/home"
mkdir -p "$SIDECAR_HOME"
start sidecar_b env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id b --app-port $ECHO --dapr-http-port $B_API --dapr-grpc-port $B_GRPC --mesh-port $B_MESH \
  --metrics-port $B_ADMIN --data-dir "$RUN/b" --log-level warn
start sidecar_a env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id a --dapr-http-port $A_API --dapr-grpc-port $A_GRPC --mesh-port $A_MESH \
  --metrics-port $A_ADMIN --data-dir "$RUN/a" --log-level warn
wait_http "http://127.0.0.1:$A_API/v1.0/invoke/b/method/echo"

# Every process must be the one started here, alive (not a zombie after a failed bind).
for p in "${PIDS[@]}"; do
  state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || echo gone)
  [ "$state" != Z ] && [ "$state" != gone ] || die "process $p exited early; logs in $OUT/logs"
done

# Interval i ends i × SOAK_INTERVAL seconds into the load. Each interval is one run of the load
# generator with no warm-up of its own, so its connections are opened anew every interval: the
# sidecars see connection churn too, not only requests. A sidecar that exits ends the loop; the
# samples so far are still reported, and the script fails.
log "$INTERVALS intervals of $SOAK_INTERVAL s at $RATE requests/s; memory baseline after $SOAK_WARMUP s"
FAILED=""
for i in $(seq "$INTERVALS"); do
  if ! "${GEN[@]}" load --cell soak --repeat "$i" --pids "$PID_sidecar_a,$PID_sidecar_b" \
    --out "$OUT/samples/load-$i.json" --rate $RATE --connections $CONNS --body-size $BODY --warmup 0 \
    --duration "$SOAK_INTERVAL" --path /v1.0/invoke/b/method/echo --addr "127.0.0.1:$A_API"; then
    FAILED="interval $i: the load generator failed (did a sidecar exit?)"
    break
  fi
  for name in sidecar_a sidecar_b; do
    pid_var="PID_$name"
    if ! mb=$(rss_mb "${!pid_var}"); then
      FAILED="interval $i: $name (pid ${!pid_var}) has exited"
      break 2
    fi
    "${GEN[@]}" figure --cell "rss/$name" --repeat "$i" --value "$mb" --unit MB \
      --out "$OUT/samples/rss-$name-$i.json"
  done
done

# Which transport auto chose, by sidecar a's own count (zeros when it is gone).
COUNTS=$(mesh_counts $A_ADMIN) || COUNTS="0 0"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes to anything but the results themselves make the figures unreproducible.
DIRTY=""
[ -z "$(git -C "$ROOT" status --porcelain -- . ':!bench/results' 2>/dev/null)" ] || DIRTY="+changes"
META=$(printf '{"date":"%s","commit":"%s%s","cpus":"%s","cpu_model":"%s","minutes":%s,"interval_s":%s,"warmup_s":%s,"rate":%s,"connections":%s,"body_bytes":%s,"mesh_requests_a":{"h2":%s,"h3":%s}}' \
  "$START_DATE" "$COMMIT" "$DIRTY" "$(nproc)" \
  "$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)" \
  "$SOAK_MINUTES" "$SOAK_INTERVAL" "$SOAK_WARMUP" $RATE $CONNS $BODY "${COUNTS% *}" "${COUNTS#* }")
STATUS=0
"$BIN/outrider-bench" soak-report "$OUT" --warmup-seconds "$SOAK_WARMUP" --interval-seconds "$SOAK_INTERVAL" \
  --meta "$META" || STATUS=$?
[ -z "$FAILED" ] || die "$FAILED; logs in $OUT/logs, samples so far in $OUT"
log "results in $OUT"
exit "$STATUS"
