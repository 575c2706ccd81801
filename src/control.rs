//! The local control socket: `corosync-eip status` asks the running daemon over it.
//!
//! Protocol: the client writes one command line (`status`), the daemon answers one JSON line
//! and closes. The socket's directory is root-only (0700) and the socket itself 0600.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::status::StatusReport;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot create control socket {path}: {source}")]
    Bind { path: PathBuf, source: std::io::Error },
    #[error("cannot reach the daemon at {path} (is corosync-eip running?): {source}")]
    Connect { path: PathBuf, source: std::io::Error },
    #[error("control socket {path}: {message}")]
    Protocol { path: PathBuf, message: String },
}

pub type SharedStatus = Arc<Mutex<StatusReport>>;

pub fn bind(path: &Path) -> Result<UnixListener, ControlError> {
    let err = |source| ControlError::Bind {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    }
    // A socket file left by a crashed or re-executed daemon: nobody listens on it any more.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, status: SharedStatus) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let status = status.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, status).await {
                tracing::debug!(error = %e, "control client went away");
            }
        });
    }
}

async fn answer(stream: UnixStream, status: SharedStatus) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read).take(4096);
    reader.read_line(&mut line).await?;
    let reply = match line.trim() {
        "status" => {
            let report = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
            serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        }
        other => serde_json::json!({ "error": format!("unknown command `{other}`") }).to_string(),
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.shutdown().await
}

use tokio::io::AsyncReadExt;

pub async fn request_status(path: &Path) -> Result<StatusReport, ControlError> {
    let connect_err = |source| ControlError::Connect {
        path: path.to_owned(),
        source,
    };
    let mut stream = UnixStream::connect(path).await.map_err(connect_err)?;
    stream.write_all(b"status\n").await.map_err(connect_err)?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await.map_err(connect_err)?;
    serde_json::from_str(reply.trim()).map_err(|e| ControlError::Protocol {
        path: path.to_owned(),
        message: format!("unexpected reply ({e}): {}", reply.trim()),
    })
}
