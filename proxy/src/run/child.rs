//! `outrider run -- CMD ARGS…`: the app as a child process, told where its sidecar is.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The longest piece of an output line passed on at once: a longer line is cut into pieces.
const MAX_LINE: usize = 64 * 1024;

/// How the child is started beyond its command: by default in this directory, with this
/// environment, its output on this process's.
#[derive(Clone, Debug, Default)]
pub(crate) struct ChildSetup {
    /// Its working directory.
    pub(crate) dir: Option<PathBuf>,
    /// Added to its environment.
    pub(crate) env: Vec<(String, String)>,
    /// Its output, line by line, prefixed (a multi-app run).
    pub(crate) output: Option<Prefixed>,
}

/// Where a prefixed child's output lines go.
#[derive(Clone, Debug)]
pub(crate) struct Prefixed {
    /// Put before each line on the console (colours included, if any).
    pub(crate) prefix: String,
    /// Lines go to standard output.
    pub(crate) console: bool,
    /// Lines go to this file too, without the prefix.
    pub(crate) file: Option<PathBuf>,
}

/// The ports and names the child is told.
pub(crate) struct Told<'a> {
    pub(crate) api_port: u16,
    pub(crate) grpc_port: u16,
    pub(crate) app_port: Option<u16>,
    pub(crate) app_id: &'a str,
}

/// Starts `argv` with `DAPR_HTTP_PORT`, `DAPR_GRPC_PORT`, `APP_PORT` and `APP_ID` set.
pub(crate) fn spawn(
    argv: &[String],
    told: &Told<'_>,
    setup: &ChildSetup,
) -> std::io::Result<Child> {
    let (program, args) = argv.split_first().expect("spawn needs a command");
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(setup.env.iter().map(|(k, v)| (k, v)))
        .env("DAPR_HTTP_PORT", told.api_port.to_string())
        .env("DAPR_GRPC_PORT", told.grpc_port.to_string())
        // SDKs prefer these to the ports: one left in the shell would point elsewhere.
        .env_remove("DAPR_HTTP_ENDPOINT")
        .env_remove("DAPR_GRPC_ENDPOINT")
        .env("APP_ID", told.app_id)
        .kill_on_drop(true);
    if let Some(p) = told.app_port {
        cmd.env("APP_PORT", p.to_string());
    }
    if let Some(dir) = &setup.dir {
        cmd.current_dir(dir);
    }
    let Some(out) = &setup.output else {
        return cmd.spawn();
    };
    let file = match &out.file {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Some(std::fs::File::create(path)?)
        }
        None => None,
    };
    // A multi-app run's apps are stopped by their sidecars, in order: in a process group of
    // their own, a Ctrl-C at the terminal reaches the runner only (as the dapr CLI does).
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let file =
        file.map(|f| std::sync::Arc::new(tokio::sync::Mutex::new(tokio::fs::File::from_std(f))));
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(pass_lines(stdout, out.clone(), file.clone()));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(pass_lines(stderr, out.clone(), file));
    }
    Ok(child)
}

/// Copies `from` line by line: prefixed to standard output, and as it is to `file`.
async fn pass_lines<R: AsyncRead + Unpin>(
    mut from: R,
    out: Prefixed,
    file: Option<std::sync::Arc<tokio::sync::Mutex<tokio::fs::File>>>,
) {
    let mut buf = Vec::with_capacity(8 * 1024);
    let mut chunk = [0u8; 8 * 1024];
    loop {
        let n = from.read(&mut chunk).await.unwrap_or(0);
        if n == 0 {
            if !buf.is_empty() {
                buf.push(b'\n');
                emit(&buf, &out, file.as_deref()).await;
            }
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            emit(&line, &out, file.as_deref()).await;
        }
        if buf.len() >= MAX_LINE {
            let mut line = std::mem::take(&mut buf);
            line.push(b'\n');
            emit(&line, &out, file.as_deref()).await;
        }
    }
}

/// One line (ending in `\n`) to where it goes; a write that fails is dropped, as a closed
/// terminal would drop it.
async fn emit(line: &[u8], out: &Prefixed, file: Option<&tokio::sync::Mutex<tokio::fs::File>>) {
    if out.console {
        let mut text = Vec::with_capacity(out.prefix.len() + line.len());
        text.extend_from_slice(out.prefix.as_bytes());
        text.extend_from_slice(line);
        write_all(&mut tokio::io::stdout(), &text).await;
    }
    if let Some(f) = file {
        write_all(&mut *f.lock().await, line).await;
    }
}

async fn write_all<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) {
    let _ = w.write_all(bytes).await;
    let _ = w.flush().await;
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
