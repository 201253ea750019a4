//! The benchmark harness: an open-loop load generator and the scenarios of `shared/bench.md`,
//! comparing Outrider with direct calls, nginx, haproxy and Redis.
//!
//! Not written yet: it lands with the benchmark issue. Until then `make bench` only builds this
//! crate, and this binary says so instead of pretending to measure.

fn main() {
    eprintln!("outrider-bench: the benchmark harness has not been written yet; nothing was measured.");
    std::process::exit(2);
}
