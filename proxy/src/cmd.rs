//! Subcommands other than `run`: `outrider proxy` (the L7 proxy on its own) and
//! `outrider policy check` (one access decision, explained).

pub(crate) mod policy;
pub(crate) mod proxy;
