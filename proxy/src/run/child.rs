//! `outrider run -- CMD ARGS…`: the app as a child process, told where its sidecar is.

use std::process::ExitStatus;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Starts `argv` with `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `APP_PORT` and `APP_ID` set.
pub(crate) fn spawn(
    argv: &[String],
    api_port: u16,
    grpc_port: u16,
    app_port: Option<u16>,
    app_id: &str,
) -> std::io::Result<Child> {
    let (program, args) = argv.split_first().expect("spawn needs a command");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("DAPR_HTTP_PORT", api_port.to_string())
        .env("DAPR_GRPC_PORT", grpc_port.to_string())
        // SDKs prefer these to the ports: one left in the shell would point elsewhere.
        .env_remove("DAPR_HTTP_ENDPOINT")
        .env_remove("DAPR_GRPC_ENDPOINT")
        .env("APP_ID", app_id)
        .kill_on_drop(true);
    if let Some(p) = app_port {
        cmd.env("APP_PORT", p.to_string());
    }
    cmd.spawn()
}

/// Sends `signal` to the child, if it is still running.
pub(crate) fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// The exit code a shell would report: the status, or 128 + the signal number.
pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}
