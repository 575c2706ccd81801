use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use corosync_eip::config::{Config, DEFAULT_CONFIG_PATH};
use corosync_eip::status::StatusReport;
use corosync_eip::{control, daemon};

/// Exit code for a configuration error (sysexits EX_USAGE family: EX_USAGE = 64).
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(name = "corosync-eip", version, about = "Keeps AWS Elastic IPs on a live, quorate member of a Corosync cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (normally started by systemd).
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Validate the configuration and exit: 0 when valid, 64 when not.
        #[arg(long)]
        check_config: bool,
    },
    /// Show this node's view, read from the running daemon.
    Status {
        /// Machine-readable output (schema corosync-eip/status/v1).
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Control socket of the daemon; default from the configuration file.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, check_config } => run(config, check_config),
        Command::Status { json, config, socket } => status(json, config, socket),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build()
}

fn run(path: PathBuf, check_only: bool) -> ExitCode {
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corosync-eip: invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if check_only {
        println!("{}: OK ({} address resource(s))", path.display(), config.eips.len());
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_ansi(false)
        .init();
    let result = runtime()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(daemon::run(config, path)));
    match result {
        Ok(daemon::Exit::Stopped) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "corosync-eip stopped on an error");
            ExitCode::FAILURE
        }
    }
}

fn status(json: bool, config: PathBuf, socket: Option<PathBuf>) -> ExitCode {
    let socket = match socket {
        Some(s) => s,
        None => match Config::load(&config) {
            Ok(c) => c.daemon.control_socket,
            Err(_) => PathBuf::from(corosync_eip::config::DEFAULT_CONTROL_SOCKET),
        },
    };
    let report = match runtime().map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(control::request_status(&socket)).map_err(anyhow::Error::from)
    }) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("corosync-eip: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("corosync-eip: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{}", render(&report));
    }
    ExitCode::SUCCESS
}

fn render(r: &StatusReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let yes_no = |b: bool| if b { "yes" } else { "NO" };
    let _ = writeln!(
        out,
        "node {} (pid {}), instance {}, corosync {}, synced {}, quorate {}",
        r.node_id.map_or("?".into(), |n| n.to_string()),
        r.pid,
        r.instance_id.as_deref().unwrap_or("?"),
        r.corosync,
        yes_no(r.synced),
        yes_no(r.quorate),
    );
    let _ = writeln!(out, "members:");
    for m in &r.members {
        let _ = writeln!(
            out,
            "  node {:<4} pid {:<8} {:<22} {}",
            m.node_id,
            m.pid,
            m.instance_id.as_deref().unwrap_or("(joining)"),
            m.network_interface_id.as_deref().unwrap_or("")
        );
    }
    for m in &r.reattaching {
        let _ = writeln!(out, "  node {:<4} pid {:<8} (daemon gone; addresses kept during reattach grace)", m.node_id, m.pid);
    }
    let _ = writeln!(out, "resources:");
    for res in &r.resources {
        let holder = res.holder.as_ref().map_or("-".to_string(), |h| {
            format!("node {} {}", h.node_id, h.instance_id.as_deref().unwrap_or(""))
        });
        let ec2 = res.ec2.as_ref().map_or("-".to_string(), |e| {
            format!(
                "{} {}",
                e.instance_id.as_deref().unwrap_or("-"),
                e.network_interface_id.as_deref().unwrap_or("")
            )
        });
        let _ = writeln!(
            out,
            "  {:<16} {:<26} {:<12} holder {:<28} EC2 {}{}",
            res.name,
            res.allocation_id,
            res.state,
            holder,
            ec2,
            res.verified_age_ms.map_or(String::new(), |a| format!(" (verified {}s ago)", a / 1000)),
        );
        if let Some(t) = &res.last_failover {
            let _ = writeln!(
                out,
                "    last failover {}: elected +{}ms, associate sent {}, verified +{}ms",
                t.detected_at,
                t.elected_ms,
                t.associate_sent_ms.map_or("(not needed)".into(), |m| format!("+{m}ms")),
                t.verified_ms
            );
        }
        if let Some(e) = &res.last_error {
            let _ = writeln!(out, "    last error: {e}");
        }
    }
    out
}
