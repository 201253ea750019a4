# Outrider: `make run` starts a sidecar with an echo app; `make test` runs everything.
SHELL := /bin/bash
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/debug
CARGO ?= cargo
API_PORT ?= 3500
APP_PORT ?= 7001

.PHONY: all deps sdk-deps build release run demo test lint fmt check-deps bench bench-quick bench-build bench-soak fuzz sizes clean

all: build

## deps: install the Debian packages builds and tests need (idempotent)
deps:
	@scripts/deps.sh

## sdk-deps: install the official Dapr SDKs the compatibility suite drives (idempotent)
sdk-deps: deps
	@scripts/sdk-deps.sh

## build: the outrider binary and the demo echo app (debug)
build:
	$(CARGO) build --workspace --bins

## release: optimised binaries
release:
	$(CARGO) build --release --workspace --bins

## run: one sidecar on embedded defaults in front of the bundled echo app
run: build
	@echo "Outrider: Dapr HTTP API on http://127.0.0.1:$(API_PORT), gRPC API on 127.0.0.1:50001, app 'echo' on port $(APP_PORT)"
	@echo "  try: curl -s http://127.0.0.1:$(API_PORT)/v1.0/invoke/echo/method/hello"
	@echo "       curl -s http://127.0.0.1:$(API_PORT)/v1.0/metadata"
	@echo "  metrics: http://127.0.0.1:9090/metrics   (Ctrl-C stops both)"
	$(BIN)/outrider run --app-id echo --app-port $(APP_PORT) --dapr-http-port $(API_PORT) -- $(BIN)/echo-app

## demo: the shop (examples/shop/): order, billing, shipping and notification, each behind its
## own sidecar, from one run file (SHOP= another); open the dashboard it prints. Needs python3.
SHOP ?= examples/shop/dapr.yaml
# DEMO_NO_BUILD=1 runs what is built (the demo's test does, after `make test`'s build).
demo: $(if $(DEMO_NO_BUILD),,build)
	@echo "Outrider shop demo: order publishes orders; billing, shipping and notification subscribe;"
	@echo "  billing calls shipping; billing's policy refuses notification's calls."
	@echo "  open the dashboard: http://127.0.0.1:$$(sed -n 's/^ *metricsPort: *//p' $(SHOP) | head -1)/   (Ctrl-C stops the shop)"
	@echo "  place an order: curl -s -X POST http://127.0.0.1:$$(sed -n 's/^ *daprHTTPPort: *//p' $(SHOP) | head -1)/v1.0/invoke/order/method/orders -d '{\"item\":\"book\"}'"
	$(BIN)/outrider run -f $(SHOP)

## test: unit, end-to-end and SDK compatibility tests
test: sdk-deps build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
		$(CARGO) nextest run --workspace --no-fail-fast; \
	else \
		$(CARGO) test --workspace --no-fail-fast; \
	fi

## lint: formatting, clippy with warnings as errors, crate dependency directions
lint: check-deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## sizes: files over 500 lines and functions over 50/80 lines (style.md's budgets)
sizes:
	@scripts/sizes.py .

## check-deps: fail on a forbidden edge between our crates, or a banned crate in the tree
check-deps:
	@scripts/check-deps.sh

## bench: every scenario of BENCHMARKS.md, 3 interleaved repeats, then the instruction counts
## (about 20 minutes; the interception cells need root); results in bench/results/
bench: deps bench-build
	bench/run.sh

## bench-quick: the same scenarios with short cells (about 5 minutes), after data-path changes
bench-quick: deps bench-build
	bench/run.sh --quick

# The binaries the benchmarks run: ours, and the Pingora peer (bench/pingora/, a workspace of
# its own, never linked into outrider).
bench-build: deps
	$(CARGO) build --release -p outrider -p outrider-bench
	$(CARGO) build --release --manifest-path bench/pingora/Cargo.toml --target-dir $(TARGET_DIR)

## bench-soak: a sidecar pair at 1000 requests/s for 10 minutes (SOAK_MINUTES); fails if its memory
## grows over 10 % after the warm-up or a request fails; results in bench/results/soak-*/
bench-soak: deps
	$(CARGO) build --release -p outrider -p outrider-bench
	bench/soak.sh

## fuzz: every fuzz target for 10 M executions or 30 minutes each (FUZZ_TARGETS, FUZZ_RUNS,
## FUZZ_SECONDS narrow it); make test replays the kept corpus and random inputs on stable
fuzz:
	@scripts/fuzz.sh

clean:
	$(CARGO) clean
