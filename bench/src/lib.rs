//! The benchmark harness of `make bench` (see BENCHMARKS.md): an open-loop load generator
//! ([`load`]), the app the scenarios put behind each proxy ([`echo`]), the subscribing app that
//! times publish → delivery ([`deliveries`]), the reminder-rate run ([`reminders`]), and the
//! report writer ([`report`]) that turns a run's cells into a JSON file, a Markdown table and a
//! latency plot.
//! The soak run of `make bench-soak` has its own report writer ([`soak`]), which also decides
//! whether the sidecars' memory held flat.

pub mod deliveries;
pub mod echo;
pub mod load;
pub mod reminders;
pub mod report;
pub mod soak;
pub mod startup;
