//! Subcommands other than `run`: `outrider proxy` (the L7 proxy on its own),
//! `outrider policy check` (one access decision, explained), `outrider init` (the nat rules
//! of transparent interception), `outrider ca …` (a CA of one's own: init, serve, token,
//! rotate), `outrider inject` (the sidecar added to Kubernetes pod templates) and
//! `outrider run --wait` (daprd's wait for a sidecar to be ready) and `outrider run -f` (a
//! multi-app run template).

pub(crate) mod ca;
pub(crate) mod init;
pub(crate) mod inject;
pub(crate) mod multi;
pub(crate) mod policy;
pub(crate) mod proxy;
pub(crate) mod status;
pub(crate) mod wait;
