//! Virtual actors and the durable scheduler they share with the jobs API: what the app says of
//! the actor types it hosts (`config`), which host owns an actor (`placement`, one consistent
//! hash every sidecar computes alike), which host holds it now (`claim`, host sessions and
//! per-actor claims in the actor state store: exactly one activation), one call at a time per
//! actor (`turn`), when reminders and jobs fire (`schedule`, in every time form daprd takes),
//! and the reminders and jobs themselves, kept in the actor state store (`durable`).

pub mod claim;
pub mod config;
pub mod durable;
pub mod placement;
pub mod schedule;
pub mod turn;
