//! The command line without a cluster: configuration checking and its exit codes.

use std::process::Command;

fn corosync_eip(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_corosync-eip")).args(args).output().expect("binary runs")
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("corosync-eip-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    // As the package installs it: only root may write it, whatever the umask.
    std::fs::set_permissions(&path, <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600)).unwrap();
    path
}

/// `run --check-config` and `run` on one file, which both must judge alike: for each, the
/// command line, the exit code and what it said on standard error.
fn check_and_run(path: &std::path::Path) -> Vec<(String, Option<i32>, String)> {
    let path = path.to_str().unwrap();
    [vec!["run", "--check-config", "--config", path], vec!["run", "--config", path]]
        .into_iter()
        .map(|argv| {
            let out = corosync_eip(&argv);
            (argv.join(" "), out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect()
}

#[test]
fn check_config_accepts_a_good_file() {
    let path = write("good.toml", "[cluster]\nmonitor_interval = \"5s\"\n[[eip]]\nname = \"web\"\nallocation_id = \"eipalloc-0abc\"\n");
    let out = corosync_eip(&["run", "--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn check_config_counts_eips_and_vips() {
    let vip_only = "[[vip]]\nname = \"db\"\naddress = \"172.31.255.10\"\nroute_tables = [\"rtb-1\"]\n";
    let both = format!("[[eip]]\nname = \"web\"\nallocation_id = \"eipalloc-0abc\"\n{vip_only}");
    for (name, text, counts) in [("vip-only.toml", vip_only.to_owned(), "0 EIP(s), 1 VIP(s)"), ("both.toml", both, "1 EIP(s), 1 VIP(s)")] {
        let path = write(name, &text);
        let out = corosync_eip(&["run", "--check-config", "--config", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains(counts), "{name}: should report {counts}: {said}");
    }
}

#[test]
fn bad_config_exits_64_naming_the_key() {
    let cases = [
        ("badint.toml", "[cluster]\nmonitor_interval = \"soon\"\n[[eip]]\nname = \"web\"\nallocation_id = \"eipalloc-1\"\n", "monitor_interval"),
        ("badalloc.toml", "[[eip]]\nname = \"web\"\nallocation_id = \"10.0.0.1\"\n", "eip[0].allocation_id"),
        ("typo.toml", "[clster]\n[[eip]]\nname = \"web\"\nallocation_id = \"eipalloc-1\"\n", "clster"),
    ];
    for (name, text, key) in cases {
        let path = write(name, text);
        for (argv, code, err) in check_and_run(&path) {
            assert_eq!(code, Some(64), "{argv}: {err}");
            assert!(err.contains(key), "{argv}: message should name `{key}`: {err}");
        }
    }
    let out = corosync_eip(&["run", "--check-config", "--config", "/nonexistent/corosync-eip.toml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/corosync-eip.toml"));
}

#[test]
fn status_without_a_daemon_says_so() {
    let out = corosync_eip(&["status", "--socket", "/nonexistent/control.sock"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is corosync-eip running"));
}

/// The file's [[health]] and [[notify]] commands run as root: a file someone else could have
/// written is refused with exit 64, naming who, for the daemon and the check alike.
#[test]
fn a_config_file_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    assert!(nix::unistd::geteuid().is_root(), "the suite runs as root (the lab needs it)");
    let path = write("writable.toml", "[[eip]]\nname = \"web\"\nallocation_id = \"eipalloc-0abc\"\n");
    for (mode, who) in [(0o666, "writable by everyone (mode 0666)"), (0o620, "writable by its group (mode 0620)")] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        for (argv, code, err) in check_and_run(&path) {
            assert_eq!(code, Some(64), "{argv}: {err}");
            assert!(err.contains(who) && err.contains("chmod go-w"), "{argv}: {err}");
        }
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = corosync_eip(&["run", "--check-config", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A second daemon started by mistake (a manual `run` beside the service) must not take the
/// running daemon's control socket over.
#[test]
fn a_second_daemon_refuses_to_take_a_live_control_socket() {
    let dir = std::env::temp_dir().join(format!("corosync-eip-cli-sock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("control.sock");
    let _ = std::fs::remove_file(&socket);
    // Stands for the running daemon: something listens on the socket.
    let live = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let path = write(
        "second.toml",
        &format!(
            "[daemon]\ncontrol_socket = \"{}\"\nstate_dir = \"{}\"\n[[eip]]\nname = \"web\"\nallocation_id = \"eipalloc-0abc\"\n",
            socket.display(),
            dir.display()
        ),
    );
    let out = corosync_eip(&["run", "--config", path.to_str().unwrap()]);
    // The daemon logs its fatal error (to the journal under systemd, here to stdout).
    let err = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("another corosync-eip daemon") && err.contains(socket.to_str().unwrap()), "{err}");
    // The live socket is still there and still answers.
    assert!(std::os::unix::net::UnixStream::connect(&socket).is_ok());
    drop(live);
}
