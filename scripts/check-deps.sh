#!/usr/bin/env bash
# Enforces the crate graph of ARCHITECTURE.md and the banned-crate list of shared/crates.md.
#   certs, discovery, policy, blocks, proto: depend on none of our crates
#   filters: may depend on policy and discovery
#   proxy (outrider): may depend on all of them
#   only test and fuzz crates depend on proxy (its library, to run a sidecar in-process);
#   test, fuzz and bench crates are leaves
set -euo pipefail
cd "$(dirname "$0")/.."

fail=0
edges=$(cargo metadata --format-version 1 --no-deps --offline 2>/dev/null || cargo metadata --format-version 1 --no-deps)
while IFS=$'\t' read -r from to kind; do
  case "$from" in
    outrider-certs|outrider-discovery|outrider-policy|outrider-blocks|outrider-proto) allowed="" ;;
    outrider-filters) allowed=" outrider-policy outrider-discovery " ;;
    outrider) allowed=" outrider-filters outrider-discovery outrider-policy outrider-blocks outrider-certs outrider-proto " ;;
    outrider-testkit|outrider-e2e|outrider-bench|outrider-fuzz|echo-app) allowed="*" ;;
    *) echo "check-deps: unknown workspace crate $from: add it to scripts/check-deps.sh"; fail=1; continue ;;
  esac
  [ "$kind" = "dev" ] && [ "$to" != "outrider" ] && continue   # test-only edges may reach sideways
  if [ "$to" = "outrider" ]; then
    case "$from" in
      outrider-testkit|outrider-e2e|outrider-fuzz) ;;
      *) echo "check-deps: forbidden edge $from -> outrider ($kind): only tests use the sidecar's library"; fail=1 ;;
    esac
  elif [ "$allowed" != "*" ] && [[ "$allowed" != *" $to "* ]]; then
    echo "check-deps: forbidden edge $from -> $to ($kind)"; fail=1
  fi
done < <(jq -r '
  [.packages[].name] as $ours
  | .packages[] | .name as $from
  | .dependencies[] | select(.name as $n | $ours | index($n))
  | [$from, .name, (.kind // "normal")] | @tsv' <<<"$edges")

# Banned crates, as resolved for the platforms the sidecar is built for (Linux on x86_64 and
# aarch64) with every feature we enable. Cargo.lock may still list an optional dependency that
# nothing activates (rustls-webpki's weak `ring?/…`), or one only another platform compiles
# (quinn-proto takes ring on wasm32 alone); the resolved tree is what gets compiled.
for bad in ring openssl-sys openssl reqwest serde_yaml serde_yml axum; do
  tree=$(cargo tree --workspace --edges normal,build,dev --target x86_64-unknown-linux-gnu \
    --target aarch64-unknown-linux-gnu -i "$bad" 2>/dev/null || true)
  if [ -n "$tree" ]; then
    echo "check-deps: banned crate '$bad' is in the tree:"; head -20 <<<"$tree"; fail=1
  fi
done
[ "$fail" = 0 ] && echo "check-deps: ok"
exit "$fail"
