# Sourced by bench/run.sh: the instructions-per-request cells.
#
# Time on a shared 2-core machine is noisy; the number of instructions a process executes for
# the same input is not. Each proxy of the one-hop and two-hop cells is started again under
# callgrind (pinned to CPU 1, on ports of its own, in front of the same echo app), warmed up with
# $CG_WARMUP requests, its counters zeroed (`callgrind_control --zero`, which reaches a process
# blocked in epoll_wait through vgdb), then sent exactly $CG_REQUESTS requests, and its counters
# dumped. Instructions per request = the dumped total (every thread of the process; of both
# processes for a pair) / $CG_REQUESTS.
#
# The generator holds one connection and one request in flight: each request is a full round
# trip through the proxy, its wake-ups included, as at the fixed rate of the latency cells. With
# more in flight a proxy slowed down by callgrind would read several requests per wake-up, and
# how many would depend on timing; with one, the count is repeatable run to run (the echo app
# and the generator run natively and are not counted).
#
# Expects from run.sh: BIN, RUN, OUT, QUICK, UNDER, GEN, BODY, ECHO, SIDECAR_HOME, the TLS files
# in $RUN, and the helpers log, die, start, haproxy_head and expect_transport.

if [ "$QUICK" = yes ]; then CG_WARMUP=200 CG_REQUESTS=2000; else CG_WARMUP=2000 CG_REQUESTS=20000; fi
# Ports (127.0.0.1) of the processes under callgrind.
CG_NGINX=21080 CG_HAPROXY=21081 CG_OUTRIDER=21082 CG_PINGORA=21083 CG_HP_FRONT=21084 CG_HP_BACK=21085
CG_A_API=21086 CG_A_MESH=21087 CG_A_ADMIN=21088 CG_A_GRPC=21089
CG_B_API=21090 CG_B_MESH=21091 CG_B_ADMIN=21092 CG_B_GRPC=21093
CG_PORTS=($CG_NGINX $CG_HAPROXY $CG_OUTRIDER $CG_PINGORA $CG_HP_FRONT $CG_HP_BACK
  $CG_A_API $CG_A_MESH $CG_A_ADMIN $CG_A_GRPC $CG_B_API $CG_B_MESH $CG_B_ADMIN $CG_B_GRPC)

cg_start() { # cg_start NAME [VAR=VALUE...] CMD...: runs CMD under callgrind with the variables
  # set, as `start` does (pinned, logged); PID_NAME is that of the process counted
  local name=$1 vars=(); shift
  while [[ "$1" == *=* ]]; do vars+=("$1"); shift; done
  mkdir -p "$RUN/cg"
  start "$name" env "${vars[@]}" valgrind --tool=callgrind --callgrind-out-file="$RUN/cg/$name.%p" "$@"
}

cg_wait() { # cg_wait URL NAME: waits for URL to answer 2xx/204 (a process under callgrind starts slowly)
  local code
  for _ in $(seq 1200); do
    code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$1" || true)
    case "$code" in 2??) return 0 ;; esac
    sleep 0.05
  done
  die "$2 under callgrind never answered $1; logs in $RUN"
}

cg_measure() { # cg_measure CELL NAMES ADDR PATH: instructions per request of the processes NAMES
  # (space-separated) for requests to ADDR with path PATH, as figure instructions/CELL
  local cell=$1 names=$2 addr=$3 path=$4 name pid total=0 n dump
  local count=("${GEN[@]}" count --addr "$addr" --path "$path" --body-size "$BODY" --connections 1)
  "${count[@]}" --requests "$CG_WARMUP" || die "$cell: the warm-up failed; logs in $RUN"
  for name in $names; do
    pid=$(eval "echo \$PID_$name")
    callgrind_control --zero "$pid" >/dev/null || die "$cell: zeroing the counters of $name failed"
  done
  "${count[@]}" --requests "$CG_REQUESTS" || die "$cell: the measured requests failed; logs in $RUN"
  for name in $names; do
    pid=$(eval "echo \$PID_$name")
    callgrind_control --dump="$cell" "$pid" >/dev/null || die "$cell: dumping the counters of $name failed"
    # The one dump since the zeroing: <name>.<pid>.1 (the file without a suffix is the exit dump).
    dump="$RUN/cg/$name.$pid.1"
    for _ in $(seq 200); do [ -s "$dump" ] && grep -q '^totals:' "$dump" && break; sleep 0.05; done
    n=$(awk '/^totals:/ { print $2 }' "$dump" 2>/dev/null || true)
    [ -n "$n" ] || die "$cell: no totals in $dump"
    total=$((total + n))
    mv "$dump" "$OUT/cg-$(printf '%s' "$cell" | tr '/' '_')-$name.out"
  done
  "$BIN/outrider-bench" figure --cell "instructions/$cell" --value "$((total / CG_REQUESTS))" \
    --unit "instructions/req" --out "$OUT/cells/instructions-$(printf '%s' "$cell" | tr '/' '_').json"
  log "instructions/$cell: $((total / CG_REQUESTS)) per request ($total for $CG_REQUESTS requests)"
}

cg_stop() { # cg_stop NAME...: stops the processes under callgrind, and forgets their pids (the
  # exit handler must not signal whatever process gets the number next)
  local name pid p kept
  for name in "$@"; do
    pid=$(eval "echo \$PID_$name")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    kept=()
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || kept+=("$p"); done
    PIDS=("${kept[@]}")
  done
}

instruction_cells() {
  log "instructions per request: $CG_REQUESTS requests after $CG_WARMUP, one at a time, under callgrind"
  # One hop. nginx without its master process: the worker is the process counted.
  mkdir -p "$RUN/cg-nginx"
  sed -e "s|listen 127.0.0.1:$NGINX;|listen 127.0.0.1:$CG_NGINX;|" -e "s|$RUN/nginx|$RUN/cg-nginx|g" \
    -e 's|^worker_processes 1;|worker_processes 1;\nmaster_process off;|' "$RUN/nginx.conf" >"$RUN/cg-nginx.conf"
  grep -q "listen 127.0.0.1:$CG_NGINX;" "$RUN/cg-nginx.conf" && grep -q '^master_process off;' "$RUN/cg-nginx.conf" \
    || die "the nginx configuration did not take the callgrind port and master_process off"
  cg_start cg_nginx nginx -c "$RUN/cg-nginx.conf" -p "$RUN/cg-nginx"
  cg_wait "http://127.0.0.1:$CG_NGINX/" nginx
  cg_measure one-hop/nginx cg_nginx "127.0.0.1:$CG_NGINX" /echo
  cg_stop cg_nginx

  sed -e "s|bind 127.0.0.1:$HAPROXY|bind 127.0.0.1:$CG_HAPROXY|" "$RUN/haproxy.cfg" >"$RUN/cg-haproxy.cfg"
  grep -q "bind 127.0.0.1:$CG_HAPROXY" "$RUN/cg-haproxy.cfg" || die "the haproxy configuration did not take the callgrind port"
  cg_start cg_haproxy haproxy -f "$RUN/cg-haproxy.cfg" -db
  cg_wait "http://127.0.0.1:$CG_HAPROXY/" haproxy
  cg_measure one-hop/haproxy cg_haproxy "127.0.0.1:$CG_HAPROXY" /echo
  cg_stop cg_haproxy

  # A configuration of its own: the timed instance still runs, with its pid file and socket.
  sed -e "s|$RUN/pingora\.|$RUN/cg-pingora.|" "$RUN/pingora.yaml" >"$RUN/cg-pingora.yaml"
  grep -q "$RUN/cg-pingora.pid" "$RUN/cg-pingora.yaml" || die "the Pingora configuration did not take its own files"
  cg_start cg_pingora "$BIN/bench-pingora" "127.0.0.1:$CG_PINGORA" "127.0.0.1:$ECHO" "$RUN/cg-pingora.yaml"
  cg_wait "http://127.0.0.1:$CG_PINGORA/" pingora
  cg_measure one-hop/pingora cg_pingora "127.0.0.1:$CG_PINGORA" /echo
  cg_stop cg_pingora

  cg_start cg_outrider "$BIN/outrider" proxy --listen "127.0.0.1:$CG_OUTRIDER" --upstream "127.0.0.1:$ECHO"
  cg_wait "http://127.0.0.1:$CG_OUTRIDER/" "outrider proxy"
  cg_measure one-hop/outrider cg_outrider "127.0.0.1:$CG_OUTRIDER" /echo
  cg_stop cg_outrider

  # Two hops with mutual TLS 1.3: haproxy → haproxy (HTTP/1.1), and the sidecar pair's invoke
  # path (HTTP/2), each pair's two processes counted together.
  sed -e "s|bind 127.0.0.1:$HP_FRONT|bind 127.0.0.1:$CG_HP_FRONT|" -e "s|127.0.0.1:$HP_BACK |127.0.0.1:$CG_HP_BACK |" \
    "$RUN/hp-front.cfg" >"$RUN/cg-hp-front.cfg"
  sed -e "s|bind 127.0.0.1:$HP_BACK |bind 127.0.0.1:$CG_HP_BACK |" "$RUN/hp-back.cfg" >"$RUN/cg-hp-back.cfg"
  grep -q ":$CG_HP_BACK " "$RUN/cg-hp-front.cfg" && grep -q ":$CG_HP_BACK " "$RUN/cg-hp-back.cfg" \
    || die "the haproxy pair's configuration did not take the callgrind ports"
  cg_start cg_hp_back haproxy -f "$RUN/cg-hp-back.cfg" -db
  cg_start cg_hp_front haproxy -f "$RUN/cg-hp-front.cfg" -db
  cg_wait "http://127.0.0.1:$CG_HP_FRONT/" "haproxy pair"
  cg_measure two-hop/haproxy-tls "cg_hp_front cg_hp_back" "127.0.0.1:$CG_HP_FRONT" /echo
  cg_stop cg_hp_front cg_hp_back

  cg_start cg_sidecar_b HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id cgb --app-port $ECHO \
    --dapr-http-port $CG_B_API --dapr-grpc-port $CG_B_GRPC --mesh-port $CG_B_MESH --metrics-port $CG_B_ADMIN \
    --data-dir "$RUN/cgb" --mesh-transport h2 --log-level warn
  cg_start cg_sidecar_a HOME="$SIDECAR_HOME" "$BIN/outrider" run --app-id cga \
    --dapr-http-port $CG_A_API --dapr-grpc-port $CG_A_GRPC --mesh-port $CG_A_MESH --metrics-port $CG_A_ADMIN \
    --data-dir "$RUN/cga" --mesh-transport h2 --log-level warn
  cg_wait "http://127.0.0.1:$CG_A_API/v1.0/invoke/cgb/method/echo" "sidecar pair"
  expect_transport cg_sidecar_a $CG_A_ADMIN h2
  cg_measure two-hop/outrider-mtls "cg_sidecar_a cg_sidecar_b" "127.0.0.1:$CG_A_API" /v1.0/invoke/cgb/method/echo
  cg_stop cg_sidecar_a cg_sidecar_b
}
