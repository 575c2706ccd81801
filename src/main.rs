use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use corosync_eip::config::{Config, DEFAULT_CONFIG_PATH};
use corosync_eip::{control, daemon, status};

/// Exit code for a configuration error (sysexits EX_USAGE family: EX_USAGE = 64).
const EXIT_BAD_CONFIG: u8 = 64;

/// The man page's description: what each kind of address does in EC2.
const LONG_ABOUT: &str = "Keeps AWS floating addresses on a live, quorate member of a Corosync cluster. Every daemon \
joins a Corosync closed process group and computes the same holder for every address; only that holder, in a quorate \
partition, changes EC2, and it reads EC2 back before it declares an address held.

Address kinds, one configuration section each (/etc/corosync-eip/corosync-eip.toml):

[[eip]]: an Elastic IP, moved by one AssociateAddress with reassociation allowed, never disassociated.

[[vip]]: a private address outside the VPC's ranges, routed as a /32 (IPv6: a /128) to the holder's ENI by \
ReplaceRoute (or CreateRoute) in every listed route table, and configured on the holder's interface.

[[secondary_ip]]: a private address of the nodes' subnet, moved to the holder's ENI by one \
AssignPrivateIpAddresses with reassignment allowed (never unassigned first), verified on that ENI alone with \
DescribeNetworkInterfaces, and configured as a /32 on the holder's interface. Every node's ENI must be in the \
address's subnet: a node whose subnet does not hold it refuses to start (exit 64). An IPv6 address moves by \
UnassignIpv6Addresses then AssignIpv6Addresses (EC2 has no reassignment for IPv6), with a short gap.

[[dns]]: a Route 53 A or AAAA record pointed at the holder (its private or public IP, or an address of its group) \
by one ChangeResourceRecordSets UPSERT, followed until GetChange reports INSYNC and verified with \
ListResourceRecordSets (exact values and TTL). A failed read never moves anything.

Coming from Pacemaker: `corosync-eip import-pacemaker` reads the CIB (`cibadmin --query`, --cib FILE, or - for \
standard input) and writes the configuration for its awseip, awsvip + IPaddr2, aws-vpc-move-ip and aws-vpc-route53 \
resources, their groups, location preferences and monitor interval, with a report of what has no equivalent; what \
it cannot carry over faithfully is refused (exit 64).

Exit status: 0 on success, 64 for an invalid configuration, 1 for other failures.";

#[derive(Parser)]
#[command(
    name = "corosync-eip",
    version,
    about = "Keeps AWS Elastic IPs, route-table VIPs and secondary IPs on a live, quorate member of a Corosync cluster",
    long_about = LONG_ABOUT
)]
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
    /// Pre-flight check on this node: IMDS, credentials, region, EC2 endpoint, permissions
    /// (DryRun), configured resources, source/dest check and corosync. Exits 1 on any failure.
    Check {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Show this node's view, read from the running daemon.
    Status {
        /// Machine-readable output (schema corosync-eip/status/v1).
        #[arg(long)]
        json: bool,
        /// Redraw every N seconds (default 2) until interrupted, like crm_mon.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
        watch: Option<u64>,
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Control socket of the daemon; default from the configuration file.
        #[arg(long)]
        socket: Option<PathBuf>,
    },
    /// Drain a node (default: this one): its addresses move to other eligible members and it
    /// takes none until `unstandby`. Persists across restarts of the node's daemon.
    Standby {
        /// Corosync node id or EC2 instance id.
        node: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// End standby of a node (default: this one).
    Unstandby {
        node: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Planned switchover of a resource or group to a node: one atomic EC2 call, never
    /// unassociated.
    Move {
        /// Resource name or group name.
        resource: String,
        /// Corosync node id or EC2 instance id.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        target: Target,
    },
    /// Convert a Pacemaker CIB's address resources (ocf:heartbeat:awseip, awsvip with its
    /// IPaddr2, aws-vpc-move-ip, aws-vpc-route53) into a configuration file, with a report of
    /// what was mapped, what has no equivalent and what behaves differently. Anything that
    /// cannot be carried over with the same meaning is refused (exit 64) and nothing is written.
    ImportPacemaker {
        /// The CIB: a file (`cibadmin -Q` output), or `-` for standard input. Default: run
        /// `cibadmin --query` on this node.
        #[arg(long, value_name = "FILE|-")]
        cib: Option<String>,
        /// Write the configuration to this file (mode 0600, all or nothing) instead of
        /// standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Replace the --output file if it exists.
        #[arg(long, requires = "output")]
        force: bool,
        /// Write the report to this file instead of standard error.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// The corosync node id of a node that location constraints name and the CIB's
        /// <nodes> lacks (or lists by a UUID); repeatable.
        #[arg(long = "node", value_name = "NAME=ID", value_parser = corosync_eip::pacemaker::parse_node_option)]
        nodes: Vec<(String, u32)>,
        /// Then run the pre-flight check (as `corosync-eip check`) against the written file.
        #[arg(long, requires = "output")]
        check: bool,
    },
    /// Write the man page or shell completions to stdout (used by packaging).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generated,
    },
}

/// What `generate` writes.
#[derive(Subcommand)]
enum Generated {
    /// The man page, corosync-eip(8), in roff.
    Man,
    /// Shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct Target {
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Control socket of the daemon; default from the configuration file.
    #[arg(long)]
    socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run { config, check_config } => run(config, check_config),
        Command::Status { json, watch, config, socket } => status(json, watch, config, socket),
        Command::Standby { node, target } => command(&target, &format!("standby {}", node.unwrap_or_default())),
        Command::Unstandby { node, target } => command(&target, &format!("unstandby {}", node.unwrap_or_default())),
        Command::Move { resource, to, target } => command(&target, &format!("move {resource} {to}")),
        Command::Generate { what } => generate(what),
        Command::Check { config } => check(&config),
        Command::ImportPacemaker {
            cib,
            output,
            force,
            report,
            nodes,
            check: then_check,
        } => {
            let code = import_pacemaker(cib.as_deref(), output.as_deref(), force, report.as_deref(), nodes);
            match (code, output) {
                (Ok(()), Some(path)) if then_check => check(&path),
                (Ok(()), _) => ExitCode::SUCCESS,
                (Err(code), _) => code,
            }
        }
    }
}

/// Exit code for an environment failure of the import (no cibadmin, unwritable output).
const EXIT_FAILURE: u8 = 1;

/// `import-pacemaker`: reads the CIB, writes the file and the report; Err carries the exit
/// code after the message has been printed.
fn import_pacemaker(
    cib: Option<&str>,
    output: Option<&Path>,
    force: bool,
    report: Option<&Path>,
    nodes: Vec<(String, u32)>,
) -> Result<(), ExitCode> {
    let fail = |code: u8, message: String| {
        eprintln!("corosync-eip: {message}");
        ExitCode::from(code)
    };
    // Before the CIB is even read: an admin who forgot --force loses nothing, not even time.
    if let Some(path) = output.filter(|p| !force && p.exists()) {
        return Err(fail(EXIT_FAILURE, format!("{} exists; --force replaces it", path.display())));
    }
    let xml = read_cib(cib).map_err(|m| fail(EXIT_FAILURE, m))?;
    let options = corosync_eip::pacemaker::Options {
        node_ids: nodes.into_iter().collect(),
    };
    let import = corosync_eip::pacemaker::import_cib(&xml, &options).map_err(|e| fail(EXIT_BAD_CONFIG, e.to_string()))?;
    let report_text = import.report.render();
    match output {
        Some(path) => {
            write_atomically(path, &import.toml, force).map_err(|e| fail(EXIT_FAILURE, format!("cannot write {}: {e}", path.display())))?
        }
        None => print!("{}", import.toml),
    }
    match report {
        Some(path) => {
            write_atomically(path, &report_text, true).map_err(|e| fail(EXIT_FAILURE, format!("cannot write {}: {e}", path.display())))?
        }
        None => eprint!("{report_text}"),
    }
    if let Some(path) = output {
        eprintln!("corosync-eip: wrote {}", path.display());
    }
    Ok(())
}

/// The CIB text: a file, standard input (`-`), or `cibadmin --query` on this node.
fn read_cib(cib: Option<&str>) -> Result<String, String> {
    match cib {
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text).map_err(|e| format!("cannot read the CIB from standard input: {e}"))?;
            Ok(text)
        }
        Some(path) => std::fs::read_to_string(path).map_err(|e| format!("cannot read the CIB {path}: {e}")),
        None => {
            let out = std::process::Command::new("cibadmin").arg("--query").output().map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => "cibadmin is not installed here (package pacemaker-cli-utils): run this on a Pacemaker node, or pass --cib FILE with the output of `cibadmin -Q` from one".to_owned(),
                _ => format!("cannot run cibadmin: {e}"),
            })?;
            if !out.status.success() {
                return Err(format!(
                    "cibadmin --query failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            String::from_utf8(out.stdout).map_err(|_| "cibadmin --query printed something that is not UTF-8".to_owned())
        }
    }
}

/// Writes `text` to `path` so that readers see the old file or the whole new one, never a
/// part: a temporary file beside it (mode 0600, since the daemon refuses a configuration
/// others may write), synced, then renamed over it, or, without `replace`, linked in place,
/// which fails rather than replace a file that appeared meanwhile.
fn write_atomically(path: &Path, text: &str, replace: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.import-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        if replace {
            std::fs::rename(&tmp, path)
        } else {
            std::fs::hard_link(&tmp, path)?;
            std::fs::remove_file(&tmp)
        }
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn check(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corosync-eip: invalid configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    let report = match runtime() {
        Ok(rt) => rt.block_on(corosync_eip::check::run_checks(&config)),
        Err(e) => {
            eprintln!("corosync-eip: {e}");
            return ExitCode::FAILURE;
        }
    };
    print!("{}", report.render(status::color_stdout()));
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn generate(what: Generated) -> ExitCode {
    use clap::CommandFactory;
    let mut cli = Cli::command();
    let mut out = std::io::stdout();
    let result = match what {
        Generated::Man => clap_mangen::Man::new(cli).section("8").render(&mut out),
        Generated::Completions { shell } => {
            clap_complete::generate(shell, &mut cli, "corosync-eip", &mut out);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corosync-eip: {e}");
            ExitCode::FAILURE
        }
    }
}

fn socket_of(config: &Path, socket: Option<PathBuf>) -> PathBuf {
    socket.unwrap_or_else(|| match Config::load(config) {
        Ok(c) => c.daemon.control_socket,
        Err(_) => PathBuf::from(corosync_eip::config::DEFAULT_CONTROL_SOCKET),
    })
}

fn command(target: &Target, line: &str) -> ExitCode {
    let socket = socket_of(&target.config, target.socket.clone());
    let result = runtime()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(control::request_command(&socket, line.trim())).map_err(anyhow::Error::from));
    match result {
        Ok(Ok(message)) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Ok(Err(message)) => {
            eprintln!("corosync-eip: {message}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("corosync-eip: {e:#}");
            ExitCode::FAILURE
        }
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
        println!(
            "{}: OK ({} EIP(s), {} VIP(s), {} secondary IP(s), {} DNS record(s))",
            path.display(),
            config.eips.len(),
            config.vips.len(),
            config.secondary_ips.len(),
            config.dns.len()
        );
        return ExitCode::SUCCESS;
    }
    init_logging();
    let result = runtime()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                let signals = daemon::Signals::install()?;
                daemon::run(config, path, signals).await
            })
        });
    match result {
        Ok(daemon::Exit::Stopped) => ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<corosync_eip::config::ConfigError>() {
            // The file is valid on its own but not on this node (e.g. a secondary IP outside
            // this node's subnet): still the file's fault, so the same exit code.
            Some(bad) => {
                tracing::error!(error = %bad, "invalid configuration for this node");
                eprintln!("corosync-eip: invalid configuration: {bad}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
            None => {
                tracing::error!(error = format!("{e:#}"), "corosync-eip stopped on an error");
                ExitCode::FAILURE
            }
        },
    }
}

/// Structured journald fields (RESOURCE=, NODE=, INSTANCE=, ELAPSED_MS=) under systemd, plain
/// lines elsewhere.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if corosync_eip::systemd::logging_to_journal() {
        match tracing_journald::layer() {
            Ok(layer) => {
                let layer = layer.with_field_prefix(None).with_syslog_identifier("corosync-eip".into());
                tracing_subscriber::registry().with(filter()).with(layer).init();
                return;
            }
            Err(e) => eprintln!("corosync-eip: journald unavailable ({e}); logging to stderr"),
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn status(json: bool, watch: Option<u64>, config: PathBuf, socket: Option<PathBuf>) -> ExitCode {
    let Some(seconds) = watch else { return status_once(json, &config, socket) };
    // Like crm_mon: redraw until interrupted.
    loop {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            print!("\x1b[H\x1b[2J");
        }
        let _ = status_once(json, &config, socket.clone());
        std::thread::sleep(std::time::Duration::from_secs(seconds.max(1)));
    }
}

fn status_once(json: bool, config: &Path, socket: Option<PathBuf>) -> ExitCode {
    let socket = socket_of(config, socket);
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
        print!("{}", status::render(&report, status::color_stdout()));
    }
    ExitCode::SUCCESS
}
