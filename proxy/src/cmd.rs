//! Subcommands other than `run`: `outrider proxy` (the L7 proxy on its own),
//! `outrider policy check` (one access decision, explained) and `outrider init` (the nat rules
//! of transparent interception).

pub(crate) mod init;
pub(crate) mod policy;
pub(crate) mod proxy;
