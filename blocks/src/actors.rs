//! Virtual actors and the durable scheduler they share with the jobs API. So far: what the app
//! says of the actor types it hosts (`config`), which host owns an actor (`placement`, one
//! consistent hash every sidecar computes alike) and when reminders and jobs fire (`schedule`,
//! in every time form daprd takes).

pub mod config;
pub mod placement;
pub mod schedule;
