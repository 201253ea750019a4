#!/usr/bin/env bash
# Installs the Debian packages that building and testing Outrider need, only those missing.
# Idempotent and quiet when everything is present. Runs as root on a fresh Debian machine.
set -euo pipefail

# command-to-check:debian-package
needs=(
  "cc:gcc"
  "make:make"
  "pkg-config:pkg-config"
  "python3:python3"
  "node:nodejs"
  "npm:npm"
  "curl:curl"
  "jq:jq"
  "ip:iproute2"
  "redis-server:redis-server"
  "redis-cli:redis-tools"
  "psql:postgresql-client"
  # state.mysql and bindings.mysql: the client for test clean-up, the server for a private one.
  "mariadb:mariadb-client"
  "mariadb-install-db:mariadb-server"
  "mosquitto:mosquitto"
  "nats-server:nats-server"
  "rabbitmq-server:rabbitmq-server"
  # promtool validates the metrics exposition in the tests.
  "promtool:prometheus"
  # The DNS resolver's tests serve records with dnsmasq inside a network namespace.
  "dnsmasq:dnsmasq-base"
  # make bench: the peer proxies, certificates for their TLS hop, CPU pinning.
  "nginx:nginx-light"
  "haproxy:haproxy"
  "openssl:openssl"
  "taskset:util-linux"
  # make bench, instructions-per-request cells: callgrind counts what each proxy executes.
  "callgrind_control:valgrind"
  # make bench, the Pingora peer (bench/pingora/): its zlib-ng is built with cmake.
  "cmake:cmake"
  # Interception: outrider init writes nat rules; its tests capture the LAN to see TLS on the wire.
  "iptables-restore:iptables"
  "tcpdump:tcpdump"
  # make bench, interception cells: TCP streams sent and received by socat.
  "socat:socat"
  # The dashboard's browser tests drive Debian's Chromium headless (tests/browser/).
  "chromium:chromium"
)

missing=()
for pair in "${needs[@]}"; do
  cmd="${pair%%:*}" pkg="${pair##*:}"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# The PostgreSQL server binaries, for tests that start a private instance when none answers.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=("postgresql")
# The Python SDK suite needs the venv module.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=("python3-venv")

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" != 0 ]; then
  echo "deps: need root to install ${missing[*]} (try: sudo make deps)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Installing must not start services: Prometheus would take port 9090 (the sidecar's admin port),
# nginx port 80, and tests start private brokers themselves when none answers on the standard port.
created_policy=no
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  created_policy=yes
fi
cleanup() { if [ "$created_policy" = yes ]; then rm -f /usr/sbin/policy-rc.d; fi; }
trap cleanup EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
