//! Virtual actors and the durable scheduler they share with the jobs API. So far: which host
//! owns an actor (`placement`, one consistent hash every sidecar computes alike) and when
//! reminders and jobs fire (`schedule`, in every time form daprd takes).

pub mod placement;
pub mod schedule;
