//! The local control socket: `corosync-eip status` asks the running daemon over it.
//!
//! Protocol: the client writes one command line, the daemon answers one JSON line and closes.
//! Commands: `status`; `standby [NODE]`, `unstandby [NODE]`; `move UNIT NODE`. Replies to
//! the others are `{"ok": "..."}` or `{"error": "..."}`. The socket's directory is root-only
//! (0700) and the socket itself 0600.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::listener::{Gate, Limits};
use crate::status::StatusReport;

/// Why the control socket could not be served or used; the message names the socket path.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The daemon could not create its socket (directory, stale file, permissions).
    #[error("cannot create control socket {path}: {source}")]
    Bind {
        /// The configured `control_socket`.
        path: PathBuf,
        /// The failing filesystem or socket call.
        source: std::io::Error,
    },
    /// Another daemon answers on the socket: a second one would take its socket over and then
    /// act beside it.
    #[error("another corosync-eip daemon is running and answers on {path}; refusing to start a second one (stop it first, or give this one another [daemon] control_socket)")]
    InUse {
        /// The configured `control_socket`.
        path: PathBuf,
    },
    /// A command-line client could not talk to the daemon, usually because it is not running.
    #[error("cannot reach the daemon at {path} (is corosync-eip running?): {source}")]
    Connect {
        /// The socket the client tried.
        path: PathBuf,
        /// The connect, write or read error.
        source: std::io::Error,
    },
    /// The daemon answered something the client cannot read (e.g. another version).
    #[error("control socket {path}: {message}")]
    Protocol {
        /// The socket that answered.
        path: PathBuf,
        /// What was wrong with the reply, with the reply itself.
        message: String,
    },
}

/// The latest status report, published by the main loop and read by `status` clients
/// without waiting on the loop.
pub type SharedStatus = Arc<Mutex<StatusReport>>;

/// An admin command the daemon's main loop must carry out (through CPG).
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `standby` / `unstandby`: drain a node, or let it hold addresses again.
    Standby {
        /// A corosync node id or instance id; `None` means this node.
        node: Option<String>,
        /// `true` drains the node, `false` ends standby (nothing moves back by itself).
        standby: bool,
    },
    /// `move`: a planned switchover of one unit.
    Move {
        /// The resource or group name.
        unit: String,
        /// The target node: a corosync node id or an instance id.
        to: String,
    },
}

/// A command from a client on its way to the main loop, with the way back to that client.
pub struct Request {
    /// What the operator asked for.
    pub command: Command,
    /// Gets `Ok(message)` once the cluster carried it out, `Err(message)` when refused.
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
}

/// Where the control socket hands commands to the main loop, which alone acts through CPG.
pub type Requests = tokio::sync::mpsc::Sender<Request>;

/// How long a client waits for a command to complete in the cluster.
const COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads one command line from a client; `Err` is the message sent back for an unknown one.
pub fn parse_command(line: &str) -> Result<Command, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["standby"] => Ok(Command::Standby { node: None, standby: true }),
        ["standby", node] => Ok(Command::Standby { node: Some(node.to_string()), standby: true }),
        ["unstandby"] => Ok(Command::Standby { node: None, standby: false }),
        ["unstandby", node] => Ok(Command::Standby { node: Some(node.to_string()), standby: false }),
        ["move", unit, to] => Ok(Command::Move { unit: unit.to_string(), to: to.to_string() }),
        _ => Err(format!("unknown command `{line}`")),
    }
}

/// Creates the root-only socket (directory 0700, socket 0600), replacing a stale file left by
/// a crashed or re-executed daemon; refuses while another daemon answers on it.
pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    }
    // A live daemon accepts the connection (even when hung: the kernel queues it); a socket
    // file left by a crashed or re-executed daemon refuses it, and is replaced.
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(ControlError::InUse { path: path.to_owned() });
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// The control socket's limits: admin commands are few and their request and reply lines
/// short; the wait for the cluster to carry a command out is bounded apart (`COMMAND_TIMEOUT`).
pub const LIMITS: Limits = Limits {
    connections: 32,
    read: std::time::Duration::from_secs(5),
    write: std::time::Duration::from_secs(5),
};

/// Answers clients forever, each on its own task, so a slow client never stalls the daemon.
pub async fn serve(listener: UnixListener, status: SharedStatus, requests: Requests) {
    serve_with(listener, status, requests, LIMITS).await
}

/// [`serve`] with other limits (tests use short ones).
pub async fn serve_with(listener: UnixListener, status: SharedStatus, requests: Requests, limits: Limits) {
    let mut gate = Gate::new("control socket", limits);
    let listener = &listener;
    loop {
        let (stream, permit) = gate.next(|| async move { listener.accept().await.map(|(s, _)| s) }).await;
        let status = status.clone();
        let requests = requests.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, status, requests, limits).await {
                tracing::debug!(error = %e, "control client went away");
            }
            drop(permit);
        });
    }
}

async fn run_command(command: Command, requests: &Requests) -> Result<String, String> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    requests
        .send(Request { command, reply })
        .await
        .map_err(|_| "the daemon is shutting down".to_string())?;
    match tokio::time::timeout(COMMAND_TIMEOUT, answer).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the daemon dropped the request (corosync connection lost?)".into()),
        Err(_) => Err(format!("no result within {}s", COMMAND_TIMEOUT.as_secs())),
    }
}

fn timed_out(what: &str, limit: std::time::Duration) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, format!("client took more than {}ms to {what}", limit.as_millis()))
}

async fn answer(stream: UnixStream, status: SharedStatus, requests: Requests, limits: Limits) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(4096);
    tokio::time::timeout(limits.read, reader.read_line(&mut line))
        .await
        .map_err(|_| timed_out("send its request", limits.read))??;
    let reply = match line.trim() {
        "status" => {
            let report = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
            serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
        other => {
            let result = match parse_command(other) {
                Ok(command) => run_command(command, &requests).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(message) => serde_json::json!({ "ok": message }).to_string(),
                Err(message) => serde_json::json!({ "error": message }).to_string(),
            }
        }
    };
    let send = async {
        write.write_all(reply.as_bytes()).await?;
        write.write_all(b"\n").await?;
        write.shutdown().await
    };
    tokio::time::timeout(limits.write, send).await.map_err(|_| timed_out("read the reply", limits.write))?
}

use tokio::io::AsyncReadExt;

async fn exchange(path: &Path, line: &str) -> Result<String, ControlError> {
    let connect_err = |source| ControlError::Connect {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).await.map_err(connect_err)?;
    stream.write_all(format!("{line}\n").as_bytes()).await.map_err(connect_err)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.map_err(connect_err)?;
    Ok(reply)
}

/// What `corosync-eip status` shows: the running daemon's current report.
pub async fn request_status(path: &Path) -> Result<StatusReport, ControlError> {
    let reply = exchange(path, "status").await?;
    serde_json::from_str(reply.trim()).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: format!("unexpected reply ({e}): {}", reply.trim()),
    })
}

/// Sends an admin command; Ok(message) when the cluster carried it out, Err(message) when
/// the daemon refused it or it did not complete.
pub async fn request_command(path: &Path, line: &str) -> Result<Result<String, String>, ControlError> {
    let reply = exchange(path, line).await?;
    let value: serde_json::Value = serde_json::from_str(reply.trim()).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: format!("unexpected reply ({e}): {}", reply.trim()),
    })?;
    if let Some(ok) = value["ok"].as_str() {
        Ok(Ok(ok.to_owned()))
    } else {
        Ok(Err(value["error"].as_str().unwrap_or("unexpected reply").to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    proptest! {
        /// A line from any local client: parsed or refused with a message, never a panic.
        #[test]
        fn any_line_is_parsed_or_refused(line in "\\PC{0,200}") {
            if let Err(message) = parse_command(&line) {
                prop_assert!(message.starts_with("unknown command"));
            }
        }

        /// Every command an admin can type reads back as itself, whatever the spacing.
        #[test]
        fn commands_read_back(unit in "[A-Za-z0-9_.-]{1,30}", node in "[A-Za-z0-9-]{1,20}", pad in "[ \t]{0,3}") {
            prop_assert_eq!(
                parse_command(&format!("{pad}move{pad} {unit} {node}{pad}")),
                Ok(Command::Move { unit: unit.clone(), to: node.clone() })
            );
            prop_assert_eq!(parse_command(&format!("standby {node}")), Ok(Command::Standby { node: Some(node.clone()), standby: true }));
            prop_assert_eq!(parse_command(&format!("{pad}unstandby{pad}")), Ok(Command::Standby { node: None, standby: false }));
            prop_assert!(parse_command(&format!("move {unit}")).is_err(), "a move needs a target");
        }
    }

    async fn closed_without_answer(stream: &mut UnixStream) -> bool {
        let mut reply = String::new();
        matches!(tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut reply)).await, Ok(Ok(0)))
    }

    #[tokio::test]
    async fn idle_and_excess_clients_are_closed_and_the_socket_keeps_answering() {
        let dir = std::env::temp_dir().join(format!("corosync-eip-control-{}", std::process::id()));
        let path = dir.join("control.sock");
        let listener = bind(&path).unwrap();
        let status: SharedStatus = Arc::new(Mutex::new(StatusReport { version: "lab".into(), ..Default::default() }));
        let (requests, _commands) = tokio::sync::mpsc::channel(1);
        let limits = Limits { connections: 2, read: Duration::from_millis(300), write: Duration::from_secs(1) };
        tokio::spawn(serve_with(listener, status, requests, limits));
        // Two clients that never send take both slots; a third is closed at once.
        let mut idle = [UnixStream::connect(&path).await.unwrap(), UnixStream::connect(&path).await.unwrap()];
        let mut excess = UnixStream::connect(&path).await.unwrap();
        assert!(closed_without_answer(&mut excess).await, "a client over the cap is closed");
        // The idle ones are closed after the read limit, and their slots serve again.
        for stream in &mut idle {
            assert!(closed_without_answer(stream).await, "an idle client is closed after the read limit");
        }
        let report = request_status(&path).await.unwrap();
        assert_eq!(report.version, "lab");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
