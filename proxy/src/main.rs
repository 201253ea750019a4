//! The `outrider` binary: everything lives in the library; this file only picks the allocator.

use std::process::ExitCode;

/// Memory freed after a burst (a flood of connections, large bodies, big queries) goes back to
/// the system about a second later (decay settings in .cargo/config.toml); with glibc's malloc
/// the process kept what its largest burst took.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    outrider::main(std::env::args_os())
}
