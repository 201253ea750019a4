#!/usr/bin/env bash
# The benchmark scenarios of BENCHMARKS.md, interleaved and repeated, in one run.
#
#   bench/run.sh            full run: 3 repeats, 2 s warm-up + 10 s measured per cell
#   bench/run.sh --quick    3 repeats, 1 s + 1.5 s per cell (about 2.5 minutes)
#
# Writes bench/results/<UTC date and time>/: cells/*.json (every measurement), results.json,
# results.md and latency.svg. Pinning: the load generator on CPU 0, everything under test on
# CPU 1, each proxy with one worker. All traffic goes to 127.0.0.1 (the sidecars' mesh and
# admin listeners bind every interface, as they do by default).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QUICK=no
case "${1:-}" in
  "") ;;
  --quick) QUICK=yes ;;
  *) echo "usage: bench/run.sh [--quick]" >&2; exit 2 ;;
esac
if [ "$QUICK" = yes ]; then WARMUP=1; DURATION=1.5; else WARMUP=2; DURATION=10; fi
REPEATS=3
RATE=1000
CONNS=16
BODY=1024

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/release"
OUT="$ROOT/bench/results/$(date -u +%Y-%m-%dT%H%M%SZ)"

log() { printf 'bench: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
RUN=""
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$RUN" ] && rm -rf "$RUN"
}
trap cleanup EXIT

for tool in nginx haproxy redis-server openssl taskset curl; do
  command -v "$tool" >/dev/null || die "$tool is missing: run make deps"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (generator on CPU 0, the rest on CPU 1)"
[ -x "$BIN/outrider" ] && [ -x "$BIN/outrider-bench" ] || die "build first: cargo build --release -p outrider -p outrider-bench"

[ ! -e "$OUT" ] || die "$OUT exists already"
RUN="$(mktemp -d)"
mkdir -p "$OUT/cells"

GEN=(taskset -c 0 "$BIN/outrider-bench")
UNDER=(taskset -c 1)
export TOKIO_WORKER_THREADS=1

# Ports (all on 127.0.0.1), below Linux's ephemeral range so no client connection holds one.
ECHO=21001 NGINX=21002 HAPROXY=21003 OUTRIDER=21004
A_API=21010 A_MESH=21011 A_ADMIN=21012 B_API=21013 B_MESH=21014 B_ADMIN=21015
A_GRPC=21016 B_GRPC=21017 S_GRPC=21038 P_GRPC=21039 START_GRPC=21043
HP_FRONT=21020 HP_BACK=21021
REDIS=21030 S_API=21031 S_MESH=21032 S_ADMIN=21033
P_API=21034 P_MESH=21035 P_ADMIN=21036 P_APP=21037
START_API=21040 START_MESH=21041 START_ADMIN=21042

for port in $ECHO $NGINX $HAPROXY $OUTRIDER $A_API $A_MESH $A_ADMIN $B_API $B_MESH $B_ADMIN $HP_FRONT $HP_BACK \
  $REDIS $S_API $S_MESH $S_ADMIN $P_API $P_MESH $P_ADMIN $P_APP $START_API $START_MESH $START_ADMIN \
  $A_GRPC $B_GRPC $S_GRPC $P_GRPC $START_GRPC; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use (a leftover run?)"; fi
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

log "starting the servers under test (logs in $RUN)"
start echo "$BIN/outrider-bench" echo --listen "127.0.0.1:$ECHO"

# nginx: one worker, keep-alive to the upstream.
mkdir -p "$RUN/nginx"
cat >"$RUN/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $RUN/nginx/body;
  proxy_temp_path $RUN/nginx/proxy;
  fastcgi_temp_path $RUN/nginx/fastcgi;
  uwsgi_temp_path $RUN/nginx/uwsgi;
  scgi_temp_path $RUN/nginx/scgi;
  upstream echo { server 127.0.0.1:$ECHO; keepalive 64; keepalive_requests 1000000; }
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX;
    location / { proxy_pass http://echo; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF
start nginx nginx -c "$RUN/nginx.conf" -p "$RUN/nginx"

# haproxy: one thread, connection reuse (every haproxy here starts with this).
haproxy_head() {
  printf '%s\n' global '  nbthread 1' defaults '  mode http' '  timeout connect 5s' '  timeout client 30s' \
    '  timeout server 30s' '  http-reuse always'
}
{ haproxy_head; cat; } >"$RUN/haproxy.cfg" <<EOF
frontend one_hop
  bind 127.0.0.1:$HAPROXY
  default_backend echo
backend echo
  server echo 127.0.0.1:$ECHO
EOF
start haproxy haproxy -f "$RUN/haproxy.cfg" -db

# Two haproxy hops with mutual TLS 1.3 between them (certificates made here).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=bench-ca \
  -keyout "$RUN/ca.key" -out "$RUN/ca.pem" 2>/dev/null
for who in server client; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
    -keyout "$RUN/$who.key" -out "$RUN/$who.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' >"$RUN/$who.ext"
  openssl x509 -req -in "$RUN/$who.csr" -CA "$RUN/ca.pem" -CAkey "$RUN/ca.key" -CAcreateserial -days 2 \
    -extfile "$RUN/$who.ext" -out "$RUN/$who.crt" 2>/dev/null
  cat "$RUN/$who.crt" "$RUN/$who.key" >"$RUN/$who.pem"
done
{ haproxy_head; cat; } >"$RUN/hp-front.cfg" <<EOF
frontend front
  bind 127.0.0.1:$HP_FRONT
  default_backend back
backend back
  server back 127.0.0.1:$HP_BACK ssl ssl-min-ver TLSv1.3 crt $RUN/client.pem ca-file $RUN/ca.pem verify required
EOF
{ haproxy_head; cat; } >"$RUN/hp-back.cfg" <<EOF
frontend back
  bind 127.0.0.1:$HP_BACK ssl crt $RUN/server.pem ca-file $RUN/ca.pem verify required ssl-min-ver TLSv1.3
  default_backend echo
backend echo
  server echo 127.0.0.1:$ECHO
EOF
start hp_front haproxy -f "$RUN/hp-front.cfg" -db
start hp_back haproxy -f "$RUN/hp-back.cfg" -db

# Outrider alone as a proxy, and two sidecars (mutual TLS over HTTP/2 between them).
start outrider "$BIN/outrider" proxy --listen "127.0.0.1:$OUTRIDER" --upstream "127.0.0.1:$ECHO"
# The sidecars share a $HOME of their own: one development CA, one local registry.
SIDECAR_HOME="$RUN/home"
mkdir -p "$SIDECAR_HOME"
start sidecar_b env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id b --app-port $ECHO --dapr-http-port $B_API --dapr-grpc-port $B_GRPC --mesh-port $B_MESH \
  --metrics-port $B_ADMIN --data-dir "$RUN/b" --log-level warn
start sidecar_a env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id a --dapr-http-port $A_API --dapr-grpc-port $A_GRPC --mesh-port $A_MESH \
  --metrics-port $A_ADMIN --data-dir "$RUN/a" --log-level warn

# A private Redis, and a sidecar whose state store is on it.
start redis redis-server --port $REDIS --bind 127.0.0.1 --save "" --appendonly no
mkdir -p "$RUN/components"
cat >"$RUN/components/state.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$REDIS
EOF
for _ in $(seq 100); do redis-cli -p $REDIS ping >/dev/null 2>&1 && break; sleep 0.05; done
start sidecar_s env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id s --dapr-http-port $S_API --dapr-grpc-port $S_GRPC --mesh-port $S_MESH \
  --metrics-port $S_ADMIN --data-dir "$RUN/s" --resources-path "$RUN/components" --log-level warn

# A sidecar publishing to Redis Streams and delivering topic `bench` to an app on $P_APP. The
# app is the load generator itself, listening only during the pub/sub cells; streams are
# trimmed to about 20 000 entries so the run's messages do not pile up in Redis.
mkdir -p "$RUN/pubsub"
cat >"$RUN/pubsub/pubsub.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$REDIS
  - name: maxLenApprox
    value: "20000"
EOF
cat >"$RUN/pubsub/subscription.yaml" <<EOF
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: bench
spec:
  pubsubname: pubsub
  topic: bench
  routes:
    default: /deliver
EOF
start sidecar_p env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id p --app-port $P_APP --dapr-http-port $P_API \
  --dapr-grpc-port $P_GRPC --mesh-port $P_MESH --metrics-port $P_ADMIN --data-dir "$RUN/p" --resources-path "$RUN/pubsub" --log-level warn

wait_http "http://127.0.0.1:$NGINX/"
wait_http "http://127.0.0.1:$HAPROXY/"
wait_http "http://127.0.0.1:$HP_FRONT/"
wait_http "http://127.0.0.1:$OUTRIDER/"
wait_http "http://127.0.0.1:$A_API/v1.0/invoke/b/method/echo"
wait_http "http://127.0.0.1:$S_API/v1.0/healthz" "204"
wait_http "http://127.0.0.1:$P_API/v1.0/healthz/outbound" "204"
# Every server under test must be the one started here, alive (not a zombie after a failed bind).
for p in "${PIDS[@]}"; do
  state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || echo gone)
  [ "$state" != Z ] && [ "$state" != gone ] || die "process $p exited early; logs in $RUN"
done
VALUE=$(head -c $BODY /dev/zero | tr '\0' x)
curl -sf -X POST "http://127.0.0.1:$S_API/v1.0/state/statestore" -H 'content-type: application/json' \
  -d "[{\"key\":\"bench\",\"value\":\"$VALUE\"}]" || die "seeding the state store failed"
redis-cli -p $REDIS set bench-direct "$VALUE" >/dev/null
MESSAGE="{\"value\":\"$(head -c $((BODY - 12)) /dev/zero | tr '\0' x)\"}"

nginx_pids() { # the master and its workers
  printf '%s' "$PID_nginx"; for w in $(pgrep -P "$PID_nginx"); do printf ',%s' "$w"; done
}

load() { # load CELL REPEAT BASELINE PIDS ARGS...
  local cell=$1 repeat=$2 baseline=$3 pids=$4; shift 4
  local file="$OUT/cells/$(printf '%s' "$cell" | tr '/' '_')-$repeat.json"
  local base=(); [ -n "$baseline" ] && base=(--baseline "$baseline")
  "${GEN[@]}" load --cell "$cell" --repeat "$repeat" "${base[@]}" --pids "$pids" --out "$file" \
    --warmup $WARMUP --duration $DURATION --connections $CONNS "$@"
}

rss_of() { # rss_of PID... -> summed VmRSS in MB
  local kb=0
  for p in "$@"; do kb=$((kb + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done
  awk "BEGIN{print $kb/1024}"
}
group_pids() { # group_pids NAME -> the pids of one server under test, space-separated
  if [ "$1" = nginx ]; then nginx_pids | tr ',' ' '; else eval "echo \$PID_$1"; fi
}
GROUPS_UNDER_TEST=(nginx haproxy outrider hp_front hp_back sidecar_a sidecar_b sidecar_s sidecar_p redis)
# Memory before any load.
for name in "${GROUPS_UNDER_TEST[@]}"; do
  # shellcheck disable=SC2046
  "$BIN/outrider-bench" figure --cell "rss-idle/$name" --value "$(rss_of $(group_pids "$name"))" --unit MB \
    --out "$OUT/cells/rss-idle-$name.json"
done

rated=(--rate $RATE --body-size $BODY --path /echo)
cell() { # cell NAME REPEAT
  local r=$2
  case "$1" in
    direct) load direct "$r" "" "$PID_echo" --addr 127.0.0.1:$ECHO "${rated[@]}" ;;
    one-hop/nginx) load one-hop/nginx "$r" direct "$(nginx_pids)" --addr 127.0.0.1:$NGINX "${rated[@]}" ;;
    one-hop/haproxy) load one-hop/haproxy "$r" direct "$PID_haproxy" --addr 127.0.0.1:$HAPROXY "${rated[@]}" ;;
    one-hop/outrider) load one-hop/outrider "$r" direct "$PID_outrider" --addr 127.0.0.1:$OUTRIDER "${rated[@]}" ;;
    two-hop/haproxy-tls)
      load two-hop/haproxy-tls "$r" direct "$PID_hp_front,$PID_hp_back" --addr 127.0.0.1:$HP_FRONT "${rated[@]}" ;;
    two-hop/outrider-mtls)
      load two-hop/outrider-mtls "$r" direct "$PID_sidecar_a,$PID_sidecar_b" --addr 127.0.0.1:$A_API \
        --rate $RATE --body-size $BODY --path /v1.0/invoke/b/method/echo ;;
    two-hop-grpc/outrider-mtls)
      load two-hop-grpc/outrider-mtls "$r" direct "$PID_sidecar_a,$PID_sidecar_b" --addr 127.0.0.1:$A_GRPC \
        --rate $RATE --body-size $BODY --grpc-invoke b/echo ;;
    state-get-grpc/outrider)
      load state-get-grpc/outrider "$r" state-get/redis "$PID_sidecar_s,$PID_redis" --addr 127.0.0.1:$S_GRPC \
        --rate $RATE --grpc-get-state statestore/bench ;;
    state-get/redis) load state-get/redis "$r" "" "$PID_redis" --addr 127.0.0.1:$REDIS --rate $RATE --redis-get bench-direct ;;
    state-get/outrider)
      load state-get/outrider "$r" state-get/redis "$PID_sidecar_s,$PID_redis" --addr 127.0.0.1:$S_API --rate $RATE \
        --path /v1.0/state/statestore/bench ;;
    state-set/redis)
      load state-set/redis "$r" "" "$PID_redis" --addr 127.0.0.1:$REDIS --rate $RATE --redis-set bench-direct --body-size $BODY ;;
    state-set/outrider)
      load state-set/outrider "$r" state-set/redis "$PID_sidecar_s,$PID_redis" --addr 127.0.0.1:$S_API --rate $RATE \
        --path /v1.0/state/statestore --header 'content-type: application/json' \
        --body "[{\"key\":\"bench\",\"value\":\"$VALUE\"}]" ;;
    publish/redis)
      load publish/redis "$r" "" "$PID_redis" --addr 127.0.0.1:$REDIS --rate $RATE --redis-xadd bench-direct-stream \
        --body-size $BODY
      redis-cli -p $REDIS del bench-direct-stream >/dev/null ;;
    publish/outrider)
      # A topic nobody subscribes to: the publish call alone.
      load publish/outrider "$r" publish/redis "$PID_sidecar_p,$PID_redis" --addr 127.0.0.1:$P_API --rate $RATE \
        --path /v1.0/publish/pubsub/unread --header 'content-type: application/json' --body "$MESSAGE" ;;
    # Publish → delivery to the app: latency at a fixed rate, and the rate sustained.
    pubsub/outrider)
      load pubsub/outrider "$r" "" "$PID_sidecar_p,$PID_redis" --addr 127.0.0.1:$P_API --rate $RATE \
        --path /v1.0/publish/pubsub/bench --header 'content-type: application/json' --body-size $BODY \
        --deliveries-listen 127.0.0.1:$P_APP ;;
    pubsub-max/outrider)
      load pubsub-max/outrider "$r" "" "$PID_sidecar_p,$PID_redis" --addr 127.0.0.1:$P_API \
        --path /v1.0/publish/pubsub/bench --header 'content-type: application/json' --body-size $BODY \
        --deliveries-listen 127.0.0.1:$P_APP ;;
    # Maximum throughput, closed loop.
    one-hop-max/direct) load one-hop-max/direct "$r" "" "$PID_echo" --addr 127.0.0.1:$ECHO --body-size $BODY --path /echo ;;
    one-hop-max/nginx) load one-hop-max/nginx "$r" "" "$(nginx_pids)" --addr 127.0.0.1:$NGINX --body-size $BODY --path /echo ;;
    one-hop-max/haproxy) load one-hop-max/haproxy "$r" "" "$PID_haproxy" --addr 127.0.0.1:$HAPROXY --body-size $BODY --path /echo ;;
    one-hop-max/outrider) load one-hop-max/outrider "$r" "" "$PID_outrider" --addr 127.0.0.1:$OUTRIDER --body-size $BODY --path /echo ;;
    start-to-ready)
      # The poller on the generator's CPU, the starting sidecar on the measured one.
      ms=$("${GEN[@]}" startup --url "http://127.0.0.1:$START_API/v1.0/healthz/outbound" -- \
        "${UNDER[@]}" env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id starter --dapr-http-port $START_API \
        --dapr-grpc-port $START_GRPC --mesh-port $START_MESH --metrics-port $START_ADMIN --data-dir "$RUN/start-$r" --log-level warn)
      "$BIN/outrider-bench" figure --cell start-to-ready --repeat "$r" --value "$ms" --unit ms \
        --out "$OUT/cells/start-to-ready-$r.json" ;;
    *) die "no cell $1" ;;
  esac
}
CELLS=(direct one-hop/nginx one-hop/haproxy one-hop/outrider two-hop/haproxy-tls two-hop/outrider-mtls
  two-hop-grpc/outrider-mtls state-get/redis state-get/outrider state-get-grpc/outrider
  state-set/redis state-set/outrider
  publish/redis publish/outrider pubsub/outrider pubsub-max/outrider
  one-hop-max/direct one-hop-max/nginx one-hop-max/haproxy one-hop-max/outrider start-to-ready)
for r in $(seq $REPEATS); do
  log "repeat $r of $REPEATS"
  # Each repeat starts at another cell, so no cell always follows the same one.
  n=${#CELLS[@]}
  for i in $(seq 0 $((n - 1))); do
    cell "${CELLS[$(( (i + (r - 1) * 5) % n ))]}" "$r"
  done
done

# Memory after all the load.
for name in "${GROUPS_UNDER_TEST[@]}"; do
  # shellcheck disable=SC2046
  "$BIN/outrider-bench" figure --cell "rss-after/$name" --value "$(rss_of $(group_pids "$name"))" --unit MB \
    --out "$OUT/cells/rss-after-$name.json"
done

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes to anything but the results themselves make the figures unreproducible.
DIRTY=""
[ -z "$(git -C "$ROOT" status --porcelain -- . ':!bench/results' 2>/dev/null)" ] || DIRTY="+changes"
META=$(printf '{"date":"%s","commit":"%s%s","cpus":"%s","cpu_model":"%s","quick":%s,"rate":%s,"connections":%s,"body_bytes":%s,"warmup_s":%s,"duration_s":%s,"repeats":%s}' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$COMMIT" "$DIRTY" "$(nproc)" \
  "$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)" \
  "$([ "$QUICK" = yes ] && echo true || echo false)" $RATE $CONNS $BODY $WARMUP $DURATION $REPEATS)
"$BIN/outrider-bench" report "$OUT" --meta "$META"
log "results in $OUT"
