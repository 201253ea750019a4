#!/usr/bin/env bash
# The benchmark scenarios of BENCHMARKS.md, interleaved and repeated, in one run.
#
#   bench/run.sh            full run: 3 repeats, 2 s warm-up + 10 s measured per cell
#                           (TCP streams: 1 GiB each)
#   bench/run.sh --quick    3 repeats, 1 s + 1.5 s per cell, 256 MiB streams (about 3 minutes)
#
# Writes bench/results/<UTC date and time>/: cells/*.json (every measurement), results.json,
# results.md and latency.svg. Pinning: the load generator on CPU 0, everything under test on
# CPU 1, each proxy with one worker. All traffic goes to 127.0.0.1 (the sidecars' mesh and
# admin listeners bind every interface, as they do by default), except in the interception
# cells: run as root, the script also makes two network namespaces joined by a veth pair, with
# `outrider init` rules in the first, and measures calls and TCP streams between them. The lossy
# cells run there too: while each of them runs, an iptables rule in both namespaces drops 2 % of
# the packets arriving on the veth. Without root those cells are skipped.
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
NETNS_MADE=()
LOSSY=() # the namespaces whose loss rule is in place (see loss_on)
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The loss rule would go with its namespace, but it is taken out by name all the same.
  for ns in "${LOSSY[@]}"; do ip netns exec "$ns" iptables -D INPUT "${LOSS_RULE[@]}" 2>/dev/null || true; done
  # Deleting a namespace deletes its end of the veth pair, and with it the other end.
  for ns in "${NETNS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
  [ -n "$RUN" ] && rm -rf "$RUN"
}
trap cleanup EXIT

for tool in nginx haproxy redis-server openssl taskset curl valgrind callgrind_control; do
  command -v "$tool" >/dev/null || die "$tool is missing: run make deps"
done
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (generator on CPU 0, the rest on CPU 1)"
[ -x "$BIN/outrider" ] && [ -x "$BIN/outrider-bench" ] || die "build first: cargo build --release -p outrider -p outrider-bench"
[ -x "$BIN/bench-pingora" ] || die "build the Pingora peer first: cargo build --release --manifest-path bench/pingora/Cargo.toml --target-dir $TARGET"
# The interception cells: two network namespaces and nat rules, so root only.
NETNS=no
if [ "$(id -u)" = 0 ]; then
  NETNS=yes
  for tool in ip iptables iptables-restore setpriv socat; do
    command -v "$tool" >/dev/null || die "$tool is missing: run make deps"
  done
else
  log "not root: the interception cells (netns-direct, two-hop-intercepted, two-hop-netns, tcp-throughput) and the lossy cells (lossy-two-hop) are skipped"
fi

[ ! -e "$OUT" ] || die "$OUT exists already"
RUN="$(mktemp -d)"
mkdir -p "$OUT/cells"

GEN=(taskset -c 0 "$BIN/outrider-bench")
UNDER=(taskset -c 1)
export TOKIO_WORKER_THREADS=1

# Ports (all on 127.0.0.1), below Linux's ephemeral range so no client connection holds one.
ECHO=21001 NGINX=21002 HAPROXY=21003 OUTRIDER=21004 PINGORA=21005
A_API=21010 A_MESH=21011 A_ADMIN=21012 B_API=21013 B_MESH=21014 B_ADMIN=21015
A_GRPC=21016 B_GRPC=21017 S_GRPC=21038 P_GRPC=21039 START_GRPC=21043
# The second invoke pair, a3 → b3, forced onto HTTP/3 (its mesh ports are taken on UDP too).
A3_API=21022 A3_MESH=21023 A3_ADMIN=21024 A3_GRPC=21025
B3_API=21026 B3_MESH=21027 B3_ADMIN=21028 B3_GRPC=21029
HP_FRONT=21020 HP_BACK=21021
REDIS=21030 S_API=21031 S_MESH=21032 S_ADMIN=21033
P_API=21034 P_MESH=21035 P_ADMIN=21036 P_APP=21037
START_API=21040 START_MESH=21041 START_ADMIN=21042
# The actor cells: the echo app hosting actor type BenchActor, and its sidecar x (actor store on
# the private Redis). Calls through x reach actors it owns (same host); calls through sidecar a,
# which hosts none, cross the mesh to x (other host).
ACT_ECHO=21044 X_API=21045 X_MESH=21046 X_ADMIN=21047 X_GRPC=21048 ACTOR=BenchActor
if [ "$QUICK" = yes ]; then REMINDERS=2000 REMINDERS_LEAD=4; else REMINDERS=10000 REMINDERS_LEAD=12; fi
# The interception cells' two namespaces: "host" A (the caller: load generator, sidecar a with
# `outrider init` rules) and "host" B (the echo app `bench` and its sidecar), on 10.79.0.0/24,
# an address range that exists only inside them. Their ports are their own.
NS_A=orbA NS_B=orbB A_ADDR=10.79.0.1 B_ADDR=10.79.0.2 PROXY_UID=2101
NS_ECHO=21050 NSB_MESH=21051 NSB_API=21052 NSB_GRPC=21053 NSB_ADMIN=21054
NSA_MESH=21055 NSA_API=21056 NSA_GRPC=21057 NSA_ADMIN=21058
NS_SINK=21060 NS_SINK_DIRECT=21061 NS_HP_FRONT=21062 NS_HP_BACK=21063
# The lossy cells' two pairs, apps h2a → h2b and h3a → h3b: each caller in A, each callee in B.
L2A_MESH=21064 L2A_API=21065 L2A_GRPC=21066 L2A_ADMIN=21067
L2B_MESH=21068 L2B_API=21069 L2B_GRPC=21070 L2B_ADMIN=21071
L3A_MESH=21072 L3A_API=21073 L3A_GRPC=21074 L3A_ADMIN=21075
L3B_MESH=21076 L3B_API=21077 L3B_GRPC=21078 L3B_ADMIN=21079
# Each namespace's end of the veth pair, and the lossy cells' rule for it: 2 % of the packets
# arriving on it dropped, at random (loopback stays whole). Load: $LOSSY_CONNS connections.
NS_IF=eth0 LOSS=0.02 LOSSY_CONNS=32
LOSS_RULE=(-i "$NS_IF" -m statistic --mode random --probability "$LOSS" -j DROP)
if [ "$QUICK" = yes ]; then TCP_BYTES=$((256 << 20)); else TCP_BYTES=$((1 << 30)); fi

# The instructions-per-request cells (their ports: CG_*).
# shellcheck source=bench/instructions.sh
. "$ROOT/bench/instructions.sh"

for port in $ECHO $NGINX $HAPROXY $OUTRIDER $PINGORA "${CG_PORTS[@]}" $A_API $A_MESH $A_ADMIN $B_API $B_MESH $B_ADMIN $HP_FRONT $HP_BACK \
  $REDIS $S_API $S_MESH $S_ADMIN $P_API $P_MESH $P_ADMIN $P_APP $START_API $START_MESH $START_ADMIN \
  $A_GRPC $B_GRPC $S_GRPC $P_GRPC $START_GRPC \
  $A3_API $A3_MESH $A3_ADMIN $A3_GRPC $B3_API $B3_MESH $B3_ADMIN $B3_GRPC \
  $ACT_ECHO $X_API $X_MESH $X_ADMIN $X_GRPC; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then die "port $port is in use (a leftover run?)"; fi
done

wait_http() { # wait_http URL [codes] [NETNS]: from inside network namespace NETNS, if given
  local in=(); [ -n "${3:-}" ] && in=(ip netns exec "$3")
  for _ in $(seq 300); do
    code=$("${in[@]}" curl -s -o /dev/null -w '%{http_code}' "$1" || true)
    case " ${2:-200 204} " in *" $code "*) return 0 ;; esac
    sleep 0.05
  done
  die "$1 never answered"
}

expect_transport() { # expect_transport NAME ADMIN_PORT h2|h3 [NETNS]: dies unless the sidecar NAME
  # (admin port ADMIN_PORT, in namespace NETNS if given) has sent requests to its peers, all of
  # them over the transport it was forced onto, by its `outrider_mesh_requests_total`.
  local in=(); [ -n "${4:-}" ] && in=(ip netns exec "$4")
  local counts
  counts=$("${in[@]}" curl -sf "http://127.0.0.1:$2/metrics" | awk '
    /^outrider_mesh_requests_total\{/ && /direction="outbound"/ {
      if (/transport="h3"/) h3 += $NF; else if (/transport="h2"/) h2 += $NF
    }
    END { printf "%d %d\n", h2, h3 }') || die "reading the metrics of $1 (port $2) failed; logs in $RUN"
  local h2=${counts% *} h3=${counts#* }
  case "$3:$h2:$h3" in
    h2:0:*|h3:*:0|h2:*:[1-9]*|h3:[1-9]*:*)
      die "$1 sent $h2 requests over h2 and $h3 over h3, but was forced onto $3; logs in $RUN" ;;
  esac
  log "$1: $h2 requests over h2, $h3 over h3, as forced"
}

start() { # start NAME CMD... : runs CMD pinned to CPU 1, logs to $RUN/NAME.log
  local name=$1; shift
  "${UNDER[@]}" "$@" >"$RUN/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_${name//-/_}=$!"
}

log "starting the servers under test (logs in $RUN)"
start echo "$BIN/outrider-bench" echo --listen "127.0.0.1:$ECHO"
start actor_echo "$BIN/outrider-bench" echo --listen "127.0.0.1:$ACT_ECHO" --actor-type $ACTOR

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
  printf 'subjectAltName=IP:127.0.0.1,IP:%s\n' "$B_ADDR" >"$RUN/$who.ext"
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

# Pingora, the Rust peer: a minimal proxy on pingora-proxy (bench/pingora/), one worker thread.
cat >"$RUN/pingora.yaml" <<EOF
---
version: 1
threads: 1
pid_file: $RUN/pingora.pid
upgrade_sock: $RUN/pingora.sock
grace_period_seconds: 0
graceful_shutdown_timeout_seconds: 1
EOF
start pingora "$BIN/bench-pingora" "127.0.0.1:$PINGORA" "127.0.0.1:$ECHO" "$RUN/pingora.yaml"

# Outrider alone as a proxy, and two sidecars forced onto mutual TLS over HTTP/2 between them:
# left in auto, they would take HTTP/3, which every sidecar on this host advertises in the local
# registry. They serve the HTTP and the gRPC invoke cells, both on HTTP/2 then.
start outrider "$BIN/outrider" proxy --listen "127.0.0.1:$OUTRIDER" --upstream "127.0.0.1:$ECHO"
# The sidecars share a $HOME of their own: one development CA, one local registry.
SIDECAR_HOME="$RUN/home"
mkdir -p "$SIDECAR_HOME"
start sidecar_b env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id b --app-port $ECHO --dapr-http-port $B_API --dapr-grpc-port $B_GRPC --mesh-port $B_MESH \
  --metrics-port $B_ADMIN --data-dir "$RUN/b" --mesh-transport h2 --log-level warn
start sidecar_a env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id a --dapr-http-port $A_API --dapr-grpc-port $A_GRPC --mesh-port $A_MESH \
  --metrics-port $A_ADMIN --data-dir "$RUN/a" --mesh-transport h2 --log-level warn
# The same pair again, apps a3 → b3 on ports of their own, forced onto HTTP/3 over QUIC (the mesh
# port's number on UDP), in front of the same echo app: the cell two-hop/outrider-h3.
start sidecar_b3 env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id b3 --app-port $ECHO --dapr-http-port $B3_API --dapr-grpc-port $B3_GRPC --mesh-port $B3_MESH \
  --metrics-port $B3_ADMIN --data-dir "$RUN/b3" --mesh-transport h3 --log-level warn
start sidecar_a3 env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id a3 --dapr-http-port $A3_API --dapr-grpc-port $A3_GRPC --mesh-port $A3_MESH \
  --metrics-port $A3_ADMIN --data-dir "$RUN/a3" --mesh-transport h3 --log-level warn

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
# Its lock store and output binding, on the same Redis (the lock-max and binding-max cells).
cat >"$RUN/components/lock-binding.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: lockstore
spec:
  type: lock.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$REDIS
---
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: cache
spec:
  type: bindings.redis
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

# The actor host: its actor state store on the private Redis.
mkdir -p "$RUN/actors"
cat >"$RUN/actors/actorstore.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: actorstore
spec:
  type: state.redis
  version: v1
  metadata:
  - name: redisHost
    value: 127.0.0.1:$REDIS
  - name: actorStateStore
    value: "true"
EOF
start sidecar_x env HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id act --app-port $ACT_ECHO --dapr-http-port $X_API \
  --dapr-grpc-port $X_GRPC --mesh-port $X_MESH --metrics-port $X_ADMIN --data-dir "$RUN/x" --resources-path "$RUN/actors" \
  --mesh-transport h2 --log-level warn

wait_http "http://127.0.0.1:$NGINX/"
wait_http "http://127.0.0.1:$HAPROXY/"
wait_http "http://127.0.0.1:$HP_FRONT/"
wait_http "http://127.0.0.1:$OUTRIDER/"
wait_http "http://127.0.0.1:$PINGORA/"
wait_http "http://127.0.0.1:$A_API/v1.0/invoke/b/method/echo"
wait_http "http://127.0.0.1:$A3_API/v1.0/invoke/b3/method/echo"
expect_transport sidecar_a $A_ADMIN h2
expect_transport sidecar_a3 $A3_ADMIN h3
wait_http "http://127.0.0.1:$S_API/v1.0/healthz" "204"
wait_http "http://127.0.0.1:$P_API/v1.0/healthz/outbound" "204"
wait_actor_host() { # until sidecar x hosts $ACTOR
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$X_API/v1.0/metadata" | grep -q '"hostReady":true' && return 0
    sleep 0.05
  done
  die "sidecar x never became an actor host; logs in $RUN"
}
wait_actor_host
wait_http "http://127.0.0.1:$X_API/v1.0/actors/$ACTOR/warm/method/echo"
wait_http "http://127.0.0.1:$A_API/v1.0/actors/$ACTOR/warm/method/echo"
# The interception cells' hosts: namespaces A and B joined by one veth pair, nothing in this
# machine's own namespace. In B the echo app (`bench`, on 0.0.0.0 so A reaches it directly too),
# its sidecar, and two byte sinks (one reachable only from B's loopback, through the sidecar;
# one on B's address, for the direct stream). In A the rules of `outrider init` and an
# intercepting sidecar: the load generator's TCP to B goes through it, but for the ports of the
# direct baselines. Both sidecars run as $PROXY_UID (whose own TCP the rules leave alone), from a
# copy of the binary that user may run, with static name resolution. The lossy cells' two pairs
# of sidecars (one caller in A and one callee in B each) live there too.
NS_GROUPS=()
SINK_COUNT=""
if [ "$NETNS" = yes ]; then
  log "making network namespaces $NS_A ($A_ADDR) and $NS_B ($B_ADDR)"
  for ns in $NS_A $NS_B; do
    [ ! -e "/run/netns/$ns" ] || die "network namespace $ns exists (a leftover run? ip netns del $ns)"
    ip netns add "$ns"
    NETNS_MADE+=("$ns")
    ip -n "$ns" link set lo up
  done
  ip link add $NS_IF netns $NS_A type veth peer name $NS_IF netns $NS_B
  ip -n $NS_A addr add $A_ADDR/24 dev $NS_IF
  ip -n $NS_B addr add $B_ADDR/24 dev $NS_IF
  ip -n $NS_A link set $NS_IF up
  ip -n $NS_B link set $NS_IF up

  NSDIR="$RUN/ns"
  chmod 711 "$RUN"
  mkdir -p "$NSDIR/home" "$NSDIR/a" "$NSDIR/b" "$NSDIR/h2a" "$NSDIR/h2b" "$NSDIR/h3a" "$NSDIR/h3b"
  cp "$BIN/outrider" "$NSDIR/outrider"
  chmod 755 "$NSDIR" "$NSDIR/outrider"
  chown -R "$PROXY_UID:$PROXY_UID" "$NSDIR/home" "$NSDIR/a" "$NSDIR/b" "$NSDIR/h2a" "$NSDIR/h2b" "$NSDIR/h3a" "$NSDIR/h3b"
  cat >"$NSDIR/mesh.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: bench-mesh
spec:
  nameResolution:
    component: static
    configuration:
      apps:
        a: ["$A_ADDR:$NSA_MESH"]
        bench: ["$B_ADDR:$NSB_MESH"]
EOF
  # The lossy cells' pairs have a map of their own: in the interception pair's, more apps at B's
  # address would leave intercepted TCP to that address without one app to name (naming by
  # address ignores the port). The h3 pair's entries say that their mesh ports take QUIC too.
  cat >"$NSDIR/lossy.yaml" <<EOF
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: bench-lossy
spec:
  nameResolution:
    component: static
    configuration:
      apps:
        h2a: ["$A_ADDR:$L2A_MESH"]
        h2b: ["$B_ADDR:$L2B_MESH"]
        h3a: [{address: "$A_ADDR:$L3A_MESH", transports: [h2, h3]}]
        h3b: [{address: "$B_ADDR:$L3B_MESH", transports: [h2, h3]}]
EOF
  chmod 644 "$NSDIR/mesh.yaml" "$NSDIR/lossy.yaml"
  AS_PROXY=(setpriv "--reuid=$PROXY_UID" "--regid=$PROXY_UID" --clear-groups -- env HOME="$NSDIR/home")

  start ns_echo ip netns exec $NS_B "$BIN/outrider-bench" echo --listen "0.0.0.0:$NS_ECHO"
  # Each sink appends the byte count of every connection it took to $SINK_COUNT.
  SINK_COUNT="$NSDIR/sink.count"
  : >"$SINK_COUNT"
  start ns_sink ip netns exec $NS_B socat -u -b 262144 "TCP-LISTEN:$NS_SINK,bind=127.0.0.1,fork,reuseaddr" \
    "SYSTEM:wc -c >>$SINK_COUNT"
  start ns_sink_direct ip netns exec $NS_B socat -u -b 262144 "TCP-LISTEN:$NS_SINK_DIRECT,bind=$B_ADDR,fork,reuseaddr" \
    "SYSTEM:wc -c >>$SINK_COUNT"
  start ns_sidecar_b ip netns exec $NS_B "${AS_PROXY[@]}" "$NSDIR/outrider" run --app-id bench --app-port $NS_ECHO \
    --app-ports $NS_SINK --dapr-http-port $NSB_API --dapr-grpc-port $NSB_GRPC --mesh-port $NSB_MESH \
    --metrics-port $NSB_ADMIN --config "$NSDIR/mesh.yaml" --data-dir "$NSDIR/b" --log-level warn
  # B's sidecar makes the development CA in the shared $HOME before A's starts.
  wait_http "http://127.0.0.1:$NSB_API/v1.0/healthz" 204 $NS_B
  log "$(ip netns exec $NS_A "$NSDIR/outrider" init --proxy-uid $PROXY_UID --mesh-port $NSA_MESH \
    --dapr-http-port $NSA_API --dapr-grpc-port $NSA_GRPC --metrics-port $NSA_ADMIN \
    --skip-outbound-ports $NS_ECHO,$NS_SINK_DIRECT,$NS_HP_BACK)"
  start ns_sidecar_a ip netns exec $NS_A "${AS_PROXY[@]}" "$NSDIR/outrider" run --app-id a --intercept \
    --opaque-ports $NS_SINK --dapr-http-port $NSA_API --dapr-grpc-port $NSA_GRPC --mesh-port $NSA_MESH \
    --metrics-port $NSA_ADMIN --config "$NSDIR/mesh.yaml" --data-dir "$NSDIR/a" --log-level warn

  # haproxy → mutual TLS → haproxy over the same veth, with the certificates made above.
  { haproxy_head; cat; } >"$RUN/hp-ns-front.cfg" <<EOF
frontend front
  bind 127.0.0.1:$NS_HP_FRONT
  default_backend back
backend back
  server back $B_ADDR:$NS_HP_BACK ssl ssl-min-ver TLSv1.3 crt $RUN/client.pem ca-file $RUN/ca.pem verify required
EOF
  { haproxy_head; cat; } >"$RUN/hp-ns-back.cfg" <<EOF
frontend back
  bind $B_ADDR:$NS_HP_BACK ssl crt $RUN/server.pem ca-file $RUN/ca.pem verify required ssl-min-ver TLSv1.3
  default_backend echo
backend echo
  server echo 127.0.0.1:$NS_ECHO
EOF
  start ns_hp_back ip netns exec $NS_B haproxy -f "$RUN/hp-ns-back.cfg" -db
  start ns_hp_front ip netns exec $NS_A haproxy -f "$RUN/hp-ns-front.cfg" -db

  # The lossy cells' pairs, set up like the pair above without interception (no --intercept in
  # A, no app ports to tunnel): h2a → h2b forced onto HTTP/2, h3a → h3b onto HTTP/3, both callees
  # in front of the echo app. Their callers' own TCP, as $PROXY_UID's, escapes A's rules.
  start ns_sidecar_h2b ip netns exec $NS_B "${AS_PROXY[@]}" "$NSDIR/outrider" run --app-id h2b --app-port $NS_ECHO \
    --dapr-http-port $L2B_API --dapr-grpc-port $L2B_GRPC --mesh-port $L2B_MESH --metrics-port $L2B_ADMIN \
    --config "$NSDIR/lossy.yaml" --data-dir "$NSDIR/h2b" --mesh-transport h2 --log-level warn
  start ns_sidecar_h3b ip netns exec $NS_B "${AS_PROXY[@]}" "$NSDIR/outrider" run --app-id h3b --app-port $NS_ECHO \
    --dapr-http-port $L3B_API --dapr-grpc-port $L3B_GRPC --mesh-port $L3B_MESH --metrics-port $L3B_ADMIN \
    --config "$NSDIR/lossy.yaml" --data-dir "$NSDIR/h3b" --mesh-transport h3 --log-level warn
  start ns_sidecar_h2a ip netns exec $NS_A "${AS_PROXY[@]}" "$NSDIR/outrider" run --app-id h2a \
    --dapr-http-port $L2A_API --dapr-grpc-port $L2A_GRPC --mesh-port $L2A_MESH --metrics-port $L2A_ADMIN \
    --config "$NSDIR/lossy.yaml" --data-dir "$NSDIR/h2a" --mesh-transport h2 --log-level warn
  start ns_sidecar_h3a ip netns exec $NS_A "${AS_PROXY[@]}" "$NSDIR/outrider" run --app-id h3a \
    --dapr-http-port $L3A_API --dapr-grpc-port $L3A_GRPC --mesh-port $L3A_MESH --metrics-port $L3A_ADMIN \
    --config "$NSDIR/lossy.yaml" --data-dir "$NSDIR/h3a" --mesh-transport h3 --log-level warn

  wait_http "http://$B_ADDR:$NS_ECHO/" "200" $NS_A
  wait_http "http://127.0.0.1:$NSA_API/v1.0/invoke/bench/method/echo" "200" $NS_A
  wait_http "http://127.0.0.1:$NS_HP_FRONT/" "200" $NS_A
  wait_http "http://127.0.0.1:$L2A_API/v1.0/invoke/h2b/method/echo" "200" $NS_A
  wait_http "http://127.0.0.1:$L3A_API/v1.0/invoke/h3b/method/echo" "200" $NS_A
  expect_transport ns_sidecar_h2a $L2A_ADMIN h2 $NS_A
  expect_transport ns_sidecar_h3a $L3A_ADMIN h3 $NS_A
  # Nothing listens on B's port 80: only interception can answer there. The Host names the app,
  # as the load generator's (`bench`) does.
  got=$(ip netns exec $NS_A curl -s --max-time 10 -H 'Host: bench' --data-binary intercepted "http://$B_ADDR/echo" || true)
  [ "$got" = intercepted ] || die "an intercepted call from $NS_A to app bench failed ($got); logs in $RUN"
  NS_GROUPS=(ns_sidecar_a ns_sidecar_b ns_sidecar_h2a ns_sidecar_h2b ns_sidecar_h3a ns_sidecar_h3b)
fi

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

load() { # load CELL REPEAT BASELINE PIDS ARGS... (the generator runs in namespace $LOAD_NS, if
  # set, over $LOAD_CONNS connections, if set, else $CONNS)
  local cell=$1 repeat=$2 baseline=$3 pids=$4; shift 4
  local file="$OUT/cells/$(printf '%s' "$cell" | tr '/' '_')-$repeat.json"
  local base=(); [ -n "$baseline" ] && base=(--baseline "$baseline")
  local gen=("${GEN[@]}"); [ -n "${LOAD_NS:-}" ] && gen=(ip netns exec "$LOAD_NS" "${GEN[@]}")
  "${gen[@]}" load --cell "$cell" --repeat "$repeat" "${base[@]}" --pids "$pids" --out "$file" \
    --warmup $WARMUP --duration $DURATION --connections "${LOAD_CONNS:-$CONNS}" "$@"
}
load_a() { # load_a ARGS...: load, with the generator in namespace A
  local LOAD_NS=$NS_A
  load "$@"
}

loss_on() { # loss_on: both namespaces drop $LOSS of the packets arriving on $NS_IF, until loss_off
  local ns
  for ns in $NS_A $NS_B; do
    ip netns exec "$ns" iptables -A INPUT "${LOSS_RULE[@]}" || die "adding the loss rule in $ns failed"
    LOSSY+=("$ns")
  done
}
loss_off() { # loss_off CELL REPEAT: removes the loss rule, and logs how many packets it dropped
  local ns dropped seen=""
  for ns in "${LOSSY[@]}"; do
    # The rule's packet count, read before it goes (the only DROP by `statistic` in the chain).
    dropped=$(ip netns exec "$ns" iptables -L INPUT -n -v -x | awk '/DROP/ && /statistic/ { n += $1 } END { print n + 0 }') \
      || die "reading the loss rule's count in $ns failed"
    ip netns exec "$ns" iptables -D INPUT "${LOSS_RULE[@]}" || die "removing the loss rule in $ns failed"
    [ "$dropped" -gt 0 ] || die "$1 #$2: the loss rule in $ns dropped nothing (is $NS_IF its interface?)"
    seen="$seen${seen:+, }$dropped in $ns"
  done
  LOSSY=()
  log "$1 #$2: packets the loss rule dropped: $seen"
}
lossy_cell() { # lossy_cell CELL REPEAT PIDS API_PORT APP: the invoke call from the generator in A
  # through the sidecar whose HTTP API is on API_PORT to app APP in B, at $RATE requests/s over
  # $LOSSY_CONNS connections, while both namespaces drop $LOSS of what arrives on $NS_IF.
  # The generator holds one request at a time per HTTP/1.1 connection; with --http2 it would send
  # every request on a stream of its own when due, with no bound on how many are in flight, so it
  # cannot keep 32 requests concurrent on one connection. 32 HTTP/1.1 connections give at most
  # 32 requests in flight (as many as the lost packets hold up), and sidecar A carries them as
  # concurrent streams of its one mesh connection to B (TLS over TCP for h2, QUIC for h3): the
  # only hop over the lossy veth, where the transports differ.
  local LOAD_CONNS=$LOSSY_CONNS
  loss_on
  load_a "$1" "$2" "" "$3" --addr "127.0.0.1:$4" --rate $RATE --body-size $BODY --path "/v1.0/invoke/$5/method/echo"
  loss_off "$1" "$2"
}

cpu_ticks() { # cpu_ticks PID... -> their summed utime + stime, in clock ticks
  local t=0 p f
  for p in "$@"; do
    # The fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    read -ra f <<<"$(sed 's/.*) //' "/proc/$p/stat")"
    t=$((t + f[11] + f[12]))
  done
  echo "$t"
}
send_bytes() { # send_bytes PORT BYTES: BYTES of zeros from A to B's sink on PORT -> nanoseconds taken
  local port=$1 bytes=$2 seen t0 t1 got
  seen=$(wc -l <"$SINK_COUNT")
  t0=$(date +%s%N)
  # After the last byte the sender half-closes and waits (-t) until the sink closes, which it
  # does once it has read everything: the time covers the bytes' arrival, not just their sending.
  ip netns exec $NS_A taskset -c 0 socat -b 262144 -t 60 -T 60 "OPEN:/dev/zero,readbytes=$bytes" "TCP:$B_ADDR:$port" \
    || die "sending $bytes bytes to $B_ADDR:$port from $NS_A failed"
  t1=$(date +%s%N)
  for _ in $(seq 200); do [ "$(wc -l <"$SINK_COUNT")" -gt "$seen" ] && break; sleep 0.05; done
  got=$(tail -n 1 "$SINK_COUNT")
  if [ "$(wc -l <"$SINK_COUNT")" -le "$seen" ] || [ "$((got))" != "$bytes" ]; then
    die "the sink on $B_ADDR:$port counted ${got:-nothing}, not $bytes bytes; logs in $RUN"
  fi
  echo $((t1 - t0))
}
tcp_cell() { # tcp_cell CELL REPEAT PORT [PIDS]: MB/s of $TCP_BYTES from A to B's sink on PORT; with
  # PIDS (space-separated), their CPU seconds per GB as cell tcp-throughput-cpu/<variant> too
  local cell=$1 r=$2 port=$3 pids=${4:-} name ns mbs cpu0 cpu
  name=$(printf '%s' "$cell" | tr '/' '_')
  send_bytes "$port" $((8 << 20)) >/dev/null # warm-up: connections and buffers
  # shellcheck disable=SC2086
  [ -z "$pids" ] || cpu0=$(cpu_ticks $pids)
  ns=$(send_bytes "$port" "$TCP_BYTES")
  mbs=$(awk "BEGIN{print $TCP_BYTES / ($ns / 1e9) / 1e6}")
  "$BIN/outrider-bench" figure --cell "$cell" --repeat "$r" --value "$mbs" --unit MB/s --out "$OUT/cells/$name-$r.json"
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    cpu=$(awk "BEGIN{print ($(cpu_ticks $pids) - $cpu0) / $(getconf CLK_TCK) / ($TCP_BYTES / 1e9)}")
    "$BIN/outrider-bench" figure --cell "tcp-throughput-cpu/${cell#*/}" --repeat "$r" --value "$cpu" \
      --unit "CPU s/GB" --out "$OUT/cells/tcp-throughput-cpu_${cell#*/}-$r.json"
  fi
  log "$cell #$r: $mbs MB/s${cpu:+, $cpu CPU s/GB}"
}

rss_of() { # rss_of PID... -> summed VmRSS in MB
  local kb=0
  for p in "$@"; do kb=$((kb + $(awk '/VmRSS/{print $2}' "/proc/$p/status"))); done
  awk "BEGIN{print $kb/1024}"
}
group_pids() { # group_pids NAME -> the pids of one server under test, space-separated
  if [ "$1" = nginx ]; then nginx_pids | tr ',' ' '; else eval "echo \$PID_$1"; fi
}
GROUPS_UNDER_TEST=(nginx haproxy pingora outrider hp_front hp_back sidecar_a sidecar_b sidecar_a3 sidecar_b3 sidecar_s sidecar_p sidecar_x redis
  "${NS_GROUPS[@]}")
# Memory before any load.
for name in "${GROUPS_UNDER_TEST[@]}"; do
  # shellcheck disable=SC2046
  "$BIN/outrider-bench" figure --cell "rss-idle/$name" --value "$(rss_of $(group_pids "$name"))" --unit MB \
    --out "$OUT/cells/rss-idle-$name.json"
done

rated=(--rate $RATE --body-size $BODY --path /echo)
actors_settle() { # actors_settle CELL REPEAT: until sidecar x holds at most 256 active actors (the
  # activation cell leaves thousands, deactivated after the app's idle time), so their
  # deactivation does not load the next cell
  local n
  for _ in $(seq 600); do
    # No count when none is active (the metadata leaves it out), or a failed read: both 0 here.
    n=$({ curl -sf "http://127.0.0.1:$X_API/v1.0/metadata" || true; } | { grep -o '"count":[0-9]*' || true; } | head -n 1 | cut -d: -f2)
    [ "${n:-0}" -le 256 ] && return 0
    sleep 0.1
  done
  die "$1 #$2: sidecar x still holds ${n:-?} active actors a minute later; logs in $RUN"
}
actor_path="/v1.0/actors/$ACTOR/{id}/method/echo"
cell() { # cell NAME REPEAT
  local r=$2
  case "$1" in
    direct) load direct "$r" "" "$PID_echo" --addr 127.0.0.1:$ECHO "${rated[@]}" ;;
    one-hop/nginx) load one-hop/nginx "$r" direct "$(nginx_pids)" --addr 127.0.0.1:$NGINX "${rated[@]}" ;;
    one-hop/haproxy) load one-hop/haproxy "$r" direct "$PID_haproxy" --addr 127.0.0.1:$HAPROXY "${rated[@]}" ;;
    one-hop/pingora) load one-hop/pingora "$r" direct "$PID_pingora" --addr 127.0.0.1:$PINGORA "${rated[@]}" ;;
    one-hop/outrider) load one-hop/outrider "$r" direct "$PID_outrider" --addr 127.0.0.1:$OUTRIDER "${rated[@]}" ;;
    two-hop/haproxy-tls)
      load two-hop/haproxy-tls "$r" direct "$PID_hp_front,$PID_hp_back" --addr 127.0.0.1:$HP_FRONT "${rated[@]}" ;;
    two-hop/outrider-mtls)
      load two-hop/outrider-mtls "$r" direct "$PID_sidecar_a,$PID_sidecar_b" --addr 127.0.0.1:$A_API \
        --rate $RATE --body-size $BODY --path /v1.0/invoke/b/method/echo ;;
    # The same call through the pair forced onto HTTP/3 over QUIC.
    two-hop/outrider-h3)
      load two-hop/outrider-h3 "$r" direct "$PID_sidecar_a3,$PID_sidecar_b3" --addr 127.0.0.1:$A3_API \
        --rate $RATE --body-size $BODY --path /v1.0/invoke/b3/method/echo ;;
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
    # Building blocks' calls per second, closed loop: a try-lock (held by the same owner after
    # the first, so each is one SET NX PX on Redis) and a Redis output binding's create.
    lock-max/outrider)
      load lock-max/outrider "$r" "" "$PID_sidecar_s,$PID_redis" --addr 127.0.0.1:$S_API \
        --path /v1.0-alpha1/lock/lockstore --header 'content-type: application/json' \
        --body '{"resourceId":"bench","lockOwner":"bench","expiryInSeconds":3600}' ;;
    binding-max/outrider)
      load binding-max/outrider "$r" "" "$PID_sidecar_s,$PID_redis" --addr 127.0.0.1:$S_API \
        --path /v1.0/bindings/cache --header 'content-type: application/json' \
        --body "{\"operation\":\"create\",\"data\":\"$VALUE\",\"metadata\":{\"key\":\"bench-binding\"}}" ;;
    # Maximum throughput, closed loop.
    one-hop-max/direct) load one-hop-max/direct "$r" "" "$PID_echo" --addr 127.0.0.1:$ECHO --body-size $BODY --path /echo ;;
    one-hop-max/nginx) load one-hop-max/nginx "$r" "" "$(nginx_pids)" --addr 127.0.0.1:$NGINX --body-size $BODY --path /echo ;;
    one-hop-max/haproxy) load one-hop-max/haproxy "$r" "" "$PID_haproxy" --addr 127.0.0.1:$HAPROXY --body-size $BODY --path /echo ;;
    one-hop-max/pingora) load one-hop-max/pingora "$r" "" "$PID_pingora" --addr 127.0.0.1:$PINGORA --body-size $BODY --path /echo ;;
    one-hop-max/outrider) load one-hop-max/outrider "$r" "" "$PID_outrider" --addr 127.0.0.1:$OUTRIDER --body-size $BODY --path /echo ;;
    # Between namespaces A and B (root only): a call to B's app, addressed to it directly; the same
    # call intercepted (to B's port 80, where nothing listens, Host `bench`) and carried by both
    # sidecars over mutual TLS; the same call made explicitly through sidecar A's invoke API; and
    # haproxy → mutual TLS → haproxy. Then TCP streams to B: direct, and tunnelled by the sidecars.
    netns-direct) load_a netns-direct "$r" "" "$PID_ns_echo" --addr $B_ADDR:$NS_ECHO "${rated[@]}" ;;
    two-hop-intercepted/outrider-mtls)
      load_a two-hop-intercepted/outrider-mtls "$r" netns-direct "$PID_ns_sidecar_a,$PID_ns_sidecar_b" \
        --addr $B_ADDR:80 "${rated[@]}" ;;
    two-hop-netns/outrider-mtls)
      load_a two-hop-netns/outrider-mtls "$r" netns-direct "$PID_ns_sidecar_a,$PID_ns_sidecar_b" \
        --addr 127.0.0.1:$NSA_API --rate $RATE --body-size $BODY --path /v1.0/invoke/bench/method/echo ;;
    two-hop-netns/haproxy-tls)
      load_a two-hop-netns/haproxy-tls "$r" netns-direct "$PID_ns_hp_front,$PID_ns_hp_back" \
        --addr 127.0.0.1:$NS_HP_FRONT "${rated[@]}" ;;
    # The invoke call from A to B through a pair forced onto one transport, with packets lost on
    # the way (root only): no baseline, since netns-direct runs without loss.
    lossy-two-hop/outrider-h2)
      lossy_cell lossy-two-hop/outrider-h2 "$r" "$PID_ns_sidecar_h2a,$PID_ns_sidecar_h2b" $L2A_API h2b ;;
    lossy-two-hop/outrider-h3)
      lossy_cell lossy-two-hop/outrider-h3 "$r" "$PID_ns_sidecar_h3a,$PID_ns_sidecar_h3b" $L3A_API h3b ;;
    tcp-throughput/direct) tcp_cell tcp-throughput/direct "$r" $NS_SINK_DIRECT ;;
    tcp-throughput/outrider-tunnel)
      tcp_cell tcp-throughput/outrider-tunnel "$r" $NS_SINK "$PID_ns_sidecar_a $PID_ns_sidecar_b" ;;
    # An actor method on 64 active actors, in turn: through the sidecar that holds them (added
    # over the app alone), and through another sidecar, across the mesh (added over an invoke,
    # which takes the same two hops).
    actor-call/same-host)
      load actor-call/same-host "$r" direct "$PID_sidecar_x" --addr 127.0.0.1:$X_API --rate $RATE --body-size $BODY \
        --path "$actor_path" --ids 64 ;;
    actor-call/other-host)
      load actor-call/other-host "$r" two-hop/outrider-mtls "$PID_sidecar_a,$PID_sidecar_x" --addr 127.0.0.1:$A_API \
        --rate $RATE --body-size $BODY --path "$actor_path" --ids 64 ;;
    # Each call to an actor never seen before: its activation (a claim in Redis, then the app).
    actor-activation/outrider)
      load actor-activation/outrider "$r" direct "$PID_sidecar_x,$PID_redis" --addr 127.0.0.1:$X_API --rate 500 \
        --body-size $BODY --path "$actor_path" --ids 0
      actors_settle actor-activation/outrider "$r" ;;
    actor-reminders/outrider)
      rps=$("${GEN[@]}" reminders --api 127.0.0.1:$X_API --app 127.0.0.1:$ACT_ECHO --actor-type $ACTOR \
        --count $REMINDERS --lead $REMINDERS_LEAD) || die "actor-reminders #$r failed; logs in $RUN"
      "$BIN/outrider-bench" figure --cell actor-reminders/outrider --repeat "$r" --value "$rps" --unit reminders/s \
        --out "$OUT/cells/actor-reminders_outrider-$r.json"
      log "actor-reminders #$r: $rps reminders/s" ;;
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
CELLS=(direct one-hop/nginx one-hop/haproxy one-hop/pingora one-hop/outrider two-hop/haproxy-tls two-hop/outrider-mtls
  two-hop/outrider-h3 two-hop-grpc/outrider-mtls state-get/redis state-get/outrider state-get-grpc/outrider
  state-set/redis state-set/outrider
  publish/redis publish/outrider pubsub/outrider pubsub-max/outrider lock-max/outrider binding-max/outrider
  one-hop-max/direct one-hop-max/nginx one-hop-max/haproxy one-hop-max/pingora one-hop-max/outrider start-to-ready
  actor-call/same-host actor-call/other-host actor-activation/outrider actor-reminders/outrider)
[ "$NETNS" = no ] || CELLS+=(netns-direct two-hop-intercepted/outrider-mtls two-hop-netns/outrider-mtls
  two-hop-netns/haproxy-tls tcp-throughput/direct tcp-throughput/outrider-tunnel
  lossy-two-hop/outrider-h2 lossy-two-hop/outrider-h3)
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

# Instructions per request, once (callgrind's counts repeat), after the timed cells.
instruction_cells

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes to anything but the results themselves make the figures unreproducible.
DIRTY=""
[ -z "$(git -C "$ROOT" status --porcelain -- . ':!bench/results' 2>/dev/null)" ] || DIRTY="+changes"
META=$(printf '{"date":"%s","commit":"%s%s","cpus":"%s","cpu_model":"%s","quick":%s,"rate":%s,"connections":%s,"body_bytes":%s,"warmup_s":%s,"duration_s":%s,"repeats":%s,"interception":%s,"tcp_bytes":%s,"lossy_drop":%s,"lossy_connections":%s,"instructions_requests":%s,"instructions_warmup":%s}' \
  "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$COMMIT" "$DIRTY" "$(nproc)" \
  "$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)" \
  "$([ "$QUICK" = yes ] && echo true || echo false)" $RATE $CONNS $BODY $WARMUP $DURATION $REPEATS \
  "$([ "$NETNS" = yes ] && echo true || echo false)" $TCP_BYTES $LOSS $LOSSY_CONNS $CG_REQUESTS $CG_WARMUP)
"$BIN/outrider-bench" report "$OUT" --meta "$META"
log "results in $OUT"
