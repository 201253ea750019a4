//! Subcommands other than `run`: `outrider proxy` (the L7 proxy on its own),
//! `outrider policy check` (one access decision, explained), `outrider init` (the nat rules
//! of transparent interception) and `outrider ca init` (a CA of one's own).

pub(crate) mod ca;
pub(crate) mod init;
pub(crate) mod policy;
pub(crate) mod proxy;
