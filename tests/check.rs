//! `corosync-eip check` (pre-flight) on the real lab: every item ✔ on a good node, and each
//! usual AWS/cluster failure provoked and reported as ✖ with its remedy and exit code 1.
//!
//! Needs root and `scripts/setup.sh`. Labs: `chka` (subnet 73) and `chkb` (subnet 74).

use std::time::{Duration, Instant};

use lab::{Lab, LabSpec, Signal, DAEMON_CONFIG};

const VIP: &str = "172.31.255.10";
/// The whole check must finish well before this even when nothing answers.
const CHECK_BOUND: Duration = Duration::from_secs(15);

struct Run {
    code: Option<i32>,
    out: String,
    took: Duration,
}

impl Run {
    /// The line of the item whose name starts with `name`.
    fn line(&self, name: &str) -> Option<&str> {
        self.out.lines().find(|l| {
            l.get(2..).is_some_and(|rest| rest.starts_with(name))
                || l.get(4..).is_some_and(|rest| rest.starts_with(name))
        })
    }
    fn failed_lines(&self) -> Vec<&str> {
        self.out.lines().filter(|l| l.starts_with('✖')).collect()
    }
    /// Asserts the item `name` is ✖, mentions every one of `words`, and has a remedy line.
    fn assert_fail(&self, name: &str, words: &[&str]) {
        let line = self
            .line(name)
            .unwrap_or_else(|| panic!("no item {name:?} in:\n{}", self.out));
        assert!(line.starts_with('✖'), "{name} should fail:\n{}", self.out);
        for w in words {
            assert!(
                line.contains(w),
                "{name}: {w:?} missing in {line:?}\n{}",
                self.out
            );
        }
        let next = self
            .out
            .lines()
            .skip_while(|l| *l != line)
            .nth(1)
            .unwrap_or("");
        assert!(
            next.starts_with("    → "),
            "{name}: no remedy under it:\n{}",
            self.out
        );
        assert_eq!(self.code, Some(1), "exit code with a ✖:\n{}", self.out);
        assert!(self.took < CHECK_BOUND, "check took {:?}", self.took);
    }
}

fn check_bin(lab: &Lab) -> String {
    lab.spec().daemon_bin.display().to_string()
}

fn run_check(lab: &Lab, i: usize, env: &[(&str, &str)]) -> Run {
    let bin = check_bin(lab);
    let mut cmd = lab.node_command(i, &[&bin, "check", "--config", DAEMON_CONFIG]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t0 = Instant::now();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs check");
    let run = Run {
        code: out.status.code(),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        took: t0.elapsed(),
    };
    eprintln!(
        "--- check on node {i}: exit {:?} in {:?}\n{}{}",
        run.code,
        run.took,
        run.out,
        String::from_utf8_lossy(&out.stderr)
    );
    run
}

fn good_config(lab: &Lab) -> String {
    lab.default_daemon_config() + &lab.vip_config("db", VIP)
}

fn start(name: &str, subnet: u8) -> Lab {
    let mut spec = LabSpec::new(name, subnet, 2);
    spec.route_tables = 1;
    let lab = Lab::start(spec).expect("lab starts");
    let table = lab.route_table_ids()[0].clone();
    lab.set_route(&table, &format!("{VIP}/32"), lab.eni(0))
        .expect("route");
    for i in 0..lab.node_count() {
        lab.write_daemon_config(i, &good_config(&lab))
            .expect("config");
    }
    lab
}

#[test]
fn check_passes_on_a_good_node_and_names_each_usual_failure() {
    let mut lab = start("chka", 73);
    let alloc = lab.allocation_ids()[0].clone();
    let table = lab.route_table_ids()[0].clone();

    // good setup: no ✖, exit 0, every item present
    let good = run_check(&lab, 0, &[]);
    assert_eq!(good.failed_lines(), Vec::<&str>::new(), "{}", good.out);
    assert_eq!(good.code, Some(0));
    assert!(good.took < CHECK_BOUND, "took {:?}", good.took);
    for (name, words) in [
        ("IMDSv2", vec![lab.instance_id(0), lab.eni(0), "us-east-1a"]),
        ("credentials", vec!["environment variables"]),
        ("region", vec!["us-east-1"]),
        ("EC2 endpoint", vec!["custom endpoint", "answered"]),
        ("this instance", vec![lab.instance_id(0), lab.eni(0)]),
        ("permission ec2:AssociateAddress", vec![&alloc, "allowed"]),
        ("permission ec2:ReplaceRoute", vec![&table, "allowed"]),
        ("permission ec2:DescribeAddresses", vec!["allowed"]),
        ("permission ec2:DescribeRouteTables", vec!["allowed"]),
        ("permission ec2:DescribeInstances", vec!["allowed"]),
        ("permission ec2:DescribeNetworkInterfaces", vec!["allowed"]),
        ("EIP eip1", vec![&alloc]),
        ("route table", vec![&table, "exists"]),
        ("VIP db route", vec![lab.eni(0), "this node"]),
        ("source/dest check", vec!["off"]),
        ("corosync:", vec!["running", "local node id 1"]),
        ("quorum", vec!["quorate"]),
        ("totem timing", vec!["token 1000 ms"]),
        ("corosync nodes", vec!["all 2 nodes"]),
    ] {
        let line = good
            .line(name)
            .unwrap_or_else(|| panic!("no item {name}:\n{}", good.out));
        for w in words {
            assert!(line.contains(w), "{name}: {w:?} missing in {line:?}");
        }
    }
    // static env keys on EC2 and a 1 s token are warnings, not failures
    assert!(good.line("credentials").unwrap().starts_with('!'));
    assert!(good.line("totem timing").unwrap().starts_with('!'));
    // DryRun changed nothing: the route still points at node 0, the EIP is still unassociated
    assert_eq!(
        lab.route_target(&table, VIP).unwrap().as_deref(),
        Some(lab.eni(0))
    );
    assert_eq!(lab.eip(&alloc).unwrap().association_id, None);

    // wrong allocation id
    let wrong = good_config(&lab).replace(&alloc, "eipalloc-0123456789abcdef0");
    lab.write_daemon_config(0, &wrong).unwrap();
    let r = run_check(&lab, 0, &[]);
    r.assert_fail(
        "EIP eip1",
        &["eipalloc-0123456789abcdef0", "does not exist"],
    );

    // missing route table
    let missing = good_config(&lab).replace(&table, "rtb-0123456789abcdef0");
    lab.write_daemon_config(0, &missing).unwrap();
    let r = run_check(&lab, 0, &[]);
    r.assert_fail(
        "route table rtb-0123456789abcdef0",
        &["does not exist", "InvalidRouteTableID.NotFound"],
    );

    // route missing while create_route = false: a warning with the remedy
    lab.delete_route(&table, &format!("{VIP}/32")).unwrap();
    lab.write_daemon_config(0, &good_config(&lab)).unwrap();
    let r = run_check(&lab, 0, &[]);
    let line = r.line("VIP db route").expect("route item");
    assert!(
        line.starts_with('!') && line.contains("missing"),
        "{}",
        r.out
    );
    assert!(r.out.contains("create_route = true"), "{}", r.out);
    assert_eq!(r.code, Some(0));
    lab.set_route(&table, &format!("{VIP}/32"), lab.eni(0))
        .unwrap();

    // endpoint: a port nobody listens on (refused) ...
    let refused = format!(
        "[aws]\nendpoint_url = \"http://{}:5999\"\n\n{}",
        lab.emulator_ip(),
        good_config(&lab)
    );
    lab.write_daemon_config(0, &refused).unwrap();
    let r = run_check(&lab, 0, &[]);
    r.assert_fail("EC2 endpoint", &["unreachable", "5999"]);
    assert!(r.out.contains("refused"), "{}", r.out);
    // ... and an address where nothing answers at all (no host on the bridge)
    let blackhole = format!(
        "[aws]\nendpoint_url = \"http://10.213.{}.249:443\"\n\n{}",
        lab.spec().subnet,
        good_config(&lab)
    );
    lab.write_daemon_config(0, &blackhole).unwrap();
    let r = run_check(&lab, 0, &[]);
    r.assert_fail("EC2 endpoint", &["unreachable"]);
    assert!(r.out.contains("no route to the internet"), "{}", r.out);
    assert!(r.out.contains("VPC endpoint"), "{}", r.out);
    lab.write_daemon_config(0, &good_config(&lab)).unwrap();

    // IMDS down
    lab.stop_imds(0);
    let r = run_check(&lab, 0, &[]);
    r.assert_fail("IMDSv2", &["no instance metadata", "127.0.0.1:1338"]);
    assert!(r.out.contains("hop-limit 2"), "{}", r.out);
    // with [node] instance_id set it is only a warning
    let pinned = format!(
        "[node]\ninstance_id = \"{}\"\n\n{}",
        lab.instance_id(0),
        good_config(&lab)
    );
    lab.write_daemon_config(0, &pinned).unwrap();
    let r = run_check(&lab, 0, &[]);
    assert!(
        r.line("IMDSv2").is_some_and(|l| l.starts_with('!')),
        "{}",
        r.out
    );
    assert!(
        r.line("this instance")
            .is_some_and(|l| l.starts_with('✔') && l.contains(lab.eni(0))),
        "{}",
        r.out
    );
    lab.write_daemon_config(0, &good_config(&lab)).unwrap();
    lab.restart_imds(0).unwrap();

    // corosync stopped on node 1: ✖ there, and node 0 names the missing node
    lab.kill_corosync(1, Signal::SIGTERM);
    let r = run_check(&lab, 1, &[]);
    r.assert_fail("corosync", &["cannot reach corosync"]);
    let r0 = lab
        .wait_for("node 0 to see node1 leave", Duration::from_secs(20), || {
            let r = run_check(&lab, 0, &[]);
            Ok(r.line("corosync nodes")
                .is_some_and(|l| l.starts_with('!'))
                .then_some(r))
        })
        .unwrap();
    assert!(
        r0.line("corosync nodes").unwrap().contains("node1 (id 2)"),
        "{}",
        r0.out
    );
}

#[test]
fn check_proves_permissions_with_dry_run_against_iam() {
    let lab = start("chkb", 74);
    let alloc = lab.allocation_ids()[0].clone();
    let table = lab.route_table_ids()[0].clone();
    let all_but_associate = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeAddresses", "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces",
                "ec2:DescribeRouteTables", "ec2:ReplaceRoute", "ec2:CreateRoute", "ec2:CreateTags"
            ],
            "Resource": "*"
        }]
    });
    let (lim_key, lim_secret) = lab.create_iam_user("noassoc", &all_but_associate).unwrap();
    let full = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}]
    });
    let (full_key, full_secret) = lab.create_iam_user("full", &full).unwrap();
    lab.enforce_iam(true).unwrap();

    // the role that may do everything: every permission ✔
    let r = run_check(
        &lab,
        0,
        &[
            ("AWS_ACCESS_KEY_ID", &full_key),
            ("AWS_SECRET_ACCESS_KEY", &full_secret),
        ],
    );
    assert_eq!(r.failed_lines(), Vec::<&str>::new(), "{}", r.out);
    assert_eq!(r.code, Some(0));
    for l in r.out.lines().filter(|l| l.contains("permission ec2:")) {
        assert!(l.starts_with('✔') && l.contains("DryRunOperation"), "{l}");
    }

    // the role without ec2:AssociateAddress: ✖ naming the action, everything else ✔
    let r = run_check(
        &lab,
        0,
        &[
            ("AWS_ACCESS_KEY_ID", &lim_key),
            ("AWS_SECRET_ACCESS_KEY", &lim_secret),
        ],
    );
    r.assert_fail(
        "permission ec2:AssociateAddress",
        &[
            &alloc,
            "denied",
            "UnauthorizedOperation",
            "not authorized to perform: ec2:AssociateAddress",
        ],
    );
    assert!(r.out.contains("allow ec2:AssociateAddress"), "{}", r.out);
    // The advice is the shipped policy's scoped statement, never every resource.
    assert!(r.out.contains("MoveClusterElasticIpsOntoClusterInterfaces") && r.out.contains(":elastic-ip/"), "{}", r.out);
    assert!(!r.out.replace(' ', "").contains(r#""Resource":"*""#), "{}", r.out);
    assert_eq!(r.failed_lines().len(), 1, "{}", r.out);
    assert!(
        r.line("permission ec2:ReplaceRoute")
            .unwrap()
            .starts_with('✔'),
        "{}",
        r.out
    );
    assert!(
        !r.out.contains("Encoded authorization failure message"),
        "{}",
        r.out
    );

    // unknown keys: the credentials resolve, but EC2 refuses them
    let r = run_check(
        &lab,
        0,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNUNKNOWN00"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ],
    );
    r.assert_fail("permission ec2:DescribeInstances", &["AuthFailure"]);

    // DryRun under enforcement changed nothing
    assert_eq!(lab.eip(&alloc).unwrap().association_id, None);
    assert_eq!(
        lab.route_target(&table, VIP).unwrap().as_deref(),
        Some(lab.eni(0))
    );
    lab.enforce_iam(false).unwrap();
}
