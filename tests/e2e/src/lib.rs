//! End-to-end tests of Outrider: real sidecar processes and real apps on loopback. The tests live
//! in `tests/`; support code lives in the `outrider-testkit` crate.
