//! The benchmark harness of `make bench` (see BENCHMARKS.md): an open-loop load generator
//! ([`load`]), the app the scenarios put behind each proxy ([`echo`]), the subscribing app that
//! times publish → delivery ([`deliveries`]), and the report writer
//! ([`report`]) that turns a run's cells into a JSON file, a Markdown table and a latency plot.

pub mod deliveries;
pub mod echo;
pub mod load;
pub mod report;
