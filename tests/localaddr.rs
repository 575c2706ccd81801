//! src/localaddr.rs against a real kernel, inside a throw-away network namespace holding a dummy
//! eth0. Needs root. Run: cargo test --test localaddr

use std::fs::File;
use std::net::Ipv4Addr;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use corosync_eip::localaddr::{LocalAddrError, LocalAddresses};

/// Deletes the namespace when the test ends, panicking or not.
struct Netns(String);

impl Netns {
    fn create() -> Netns {
        // One per test: the tests of this file run side by side in one process.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("celocaddr-{}-{n}", std::process::id());
        // a leftover from a crashed run with a recycled pid would make `netns add` fail
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        let ns = Netns(name);
        // Kernels without the dummy driver (minimal VM kernels, no modules) still have veth;
        // the peer stays in the namespace and is never looked at.
        let dummy = Command::new("ip")
            .args(["-n", &ns.0, "link", "add", "eth0", "type", "dummy"])
            .output()
            .expect("running ip");
        if !dummy.status.success() {
            ip(&[
                "-n", &ns.0, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
            ]);
        }
        ip(&["-n", &ns.0, "link", "set", "eth0", "up"]);
        // The kernel destroys this pair when the namespace dies, so the host end tells us
        // whether anything of ours still holds the namespace.
        ip(&[
            "link",
            "add",
            &ns.probe(),
            "type",
            "veth",
            "peer",
            "name",
            "probe",
            "netns",
            &ns.0,
        ]);
        ns
    }

    fn probe(&self) -> String {
        // pid and test number, as the namespace's name has them (at most 15 characters)
        format!("cela{}", self.0.trim_start_matches("celocaddr-").replace('-', "x"))
    }

    /// Deletes the namespace and waits until the kernel has torn it down.
    fn delete_and_wait_gone(&self) -> bool {
        ip(&["netns", "del", &self.0]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let probe = Command::new("ip")
                .args(["link", "show", "dev", &self.probe()])
                .output()
                .expect("running ip");
            if !probe.status.success() {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.probe()])
            .output();
    }
}

/// `ip -o -4 addr show dev eth0` in the namespace, one line per address.
fn addrs(ns: &str) -> Vec<String> {
    ip(&["-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn line_of(ns: &str, cidr: &str) -> Option<String> {
    let needle = format!("inet {cidr} ");
    addrs(ns).into_iter().find(|l| l.contains(&needle))
}

fn has_addr(ns: &str, addr: Ipv4Addr) -> bool {
    let needle = format!("inet {addr}/");
    addrs(ns).iter().any(|l| l.contains(&needle))
}

fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `f` on a thread that has entered the namespace, inside a current-thread runtime.
fn in_netns<F, Fut>(ns: &Netns, f: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    // tokio creates a process-wide socketpair (signal/process support) with the first runtime
    // that has IO enabled; were that first runtime built after setns, the socket would keep the
    // namespace alive until the test process exits. Build one here, in the host namespace.
    thread::spawn(|| {
        let _ = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
    })
    .join()
    .expect("tokio warm-up thread panicked");

    let path = format!("/run/netns/{}", ns.0);
    let worker = thread::Builder::new()
        .name("localaddr-netns".into())
        .spawn(move || {
            let f_ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
            nix::sched::setns(&f_ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns({path}): {e}"));
            drop(f_ns);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the runtime");
            rt.block_on(f());
        })
        .expect("spawning the netns thread");
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn add_remove_and_errors_in_a_namespace() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "this test needs root (it creates a network namespace)"
    );
    let ns = Netns::create();
    let name = ns.0.clone();

    let vip = Ipv4Addr::new(10, 0, 0, 5);
    let labelled = Ipv4Addr::new(10, 0, 0, 6);
    let foreign = Ipv4Addr::new(10, 0, 0, 7);

    in_netns(&ns, move || async move {
        let ns = name.as_str();
        let la = LocalAddresses::new().expect("opening netlink");

        assert!(!la.is_present("eth0", vip).await.unwrap());
        assert!(
            !la.ensure_absent("eth0", vip).await.unwrap(),
            "absent address: Ok(false)"
        );

        // add, then add again
        assert!(la.ensure_present("eth0", vip, 32, None).await.unwrap());
        assert!(
            line_of(ns, "10.0.0.5/32").is_some(),
            "after add: {:?}",
            addrs(ns)
        );
        assert!(!la.ensure_present("eth0", vip, 32, None).await.unwrap());
        assert!(la.is_present("eth0", vip).await.unwrap());
        assert_eq!(
            addrs(ns).iter().filter(|l| l.contains("10.0.0.5/")).count(),
            1,
            "{:?}",
            addrs(ns)
        );

        // with a label
        assert!(la
            .ensure_present("eth0", labelled, 24, Some("eth0:vip"))
            .await
            .unwrap());
        let line = line_of(ns, "10.0.0.6/24").unwrap_or_else(|| panic!("{:?}", addrs(ns)));
        assert!(line.contains("eth0:vip"), "label missing: {line}");
        assert!(!la
            .ensure_present("eth0", labelled, 24, Some("eth0:vip"))
            .await
            .unwrap());

        // remove, then remove again
        assert!(la.ensure_absent("eth0", vip).await.unwrap());
        assert!(!has_addr(ns, vip), "after remove: {:?}", addrs(ns));
        assert!(!la.is_present("eth0", vip).await.unwrap());
        assert!(!la.ensure_absent("eth0", vip).await.unwrap());
        assert!(
            has_addr(ns, labelled),
            "the other address must stay: {:?}",
            addrs(ns)
        );
        assert!(la.ensure_absent("eth0", labelled).await.unwrap());
        assert!(!has_addr(ns, labelled), "{:?}", addrs(ns));

        // an address configured by someone else, with another prefix: present, and removable
        ip(&["-n", ns, "addr", "add", "10.0.0.7/24", "dev", "eth0"]);
        assert!(la.is_present("eth0", foreign).await.unwrap());
        assert!(!la.ensure_present("eth0", foreign, 32, None).await.unwrap());
        assert!(line_of(ns, "10.0.0.7/32").is_none(), "{:?}", addrs(ns));
        assert!(la.ensure_absent("eth0", foreign).await.unwrap());
        assert!(!has_addr(ns, foreign), "{:?}", addrs(ns));

        // missing interface, for each operation
        let e = la.ensure_present("nope0", vip, 32, None).await.unwrap_err();
        assert!(
            matches!(e, LocalAddrError::InterfaceNotFound { .. }),
            "{e:?}"
        );
        assert_eq!(e.to_string(), "interface nope0 not found");
        let e = la.ensure_absent("nope0", vip).await.unwrap_err();
        assert!(
            matches!(e, LocalAddrError::InterfaceNotFound { .. }),
            "{e:?}"
        );
        let e = la.is_present("nope0", vip).await.unwrap_err();
        assert!(e.to_string().contains("nope0"), "{e}");
        let e = la.is_present("much-too-long-name0", vip).await.unwrap_err();
        assert!(
            matches!(e, LocalAddrError::InterfaceNotFound { .. }),
            "{e:?}"
        );

        // bad requests are refused before touching the kernel
        let e = la
            .ensure_present("eth0", vip, 32, Some("eth1:vip"))
            .await
            .unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("eth0") && msg.contains("10.0.0.5/32") && msg.contains("eth1:vip"),
            "{msg}"
        );
        assert!(la
            .ensure_present("eth0", vip, 32, Some("eth0:much-too-long"))
            .await
            .is_err());
        assert!(la.ensure_present("eth0", vip, 33, None).await.is_err());
        assert!(!has_addr(ns, vip), "{:?}", addrs(ns));
    });

    // Neither our netlink socket nor tokio's process-wide sockets may outlive their use.
    assert!(
        ns.delete_and_wait_gone(),
        "network namespace {} still alive after the test: something holds it",
        ns.0
    );
}

/// The acquisitions of one failover put their addresses on the interface together, from tasks
/// on several threads, through one netlink socket: each lists the interface's addresses first,
/// and the kernel runs one listing per socket at a time (a second one is refused with EBUSY
/// while the first spans several reads). None of them may fail for another's listing.
#[test]
fn addresses_put_on_together_all_arrive() {
    assert!(nix::unistd::Uid::effective().is_root(), "this test needs root (it creates a network namespace)");
    let ns = Netns::create();
    let name = ns.0.clone();
    // Enough addresses already there that a listing takes several reads.
    let batch: String = (0..600).map(|k| format!("address add 10.1.{}.{}/32 dev eth0\n", k / 200, k % 200 + 1)).collect();
    let file = std::env::temp_dir().join(format!("{name}.batch"));
    std::fs::write(&file, batch).expect("writing the batch");
    ip(&["-n", &name, "-batch", &file.to_string_lossy()]);
    let _ = std::fs::remove_file(&file);
    let path = format!("/run/netns/{name}");
    let worker = thread::spawn(move || {
        let f_ns = File::open(&path).unwrap_or_else(|e| panic!("opening {path}: {e}"));
        nix::sched::setns(&f_ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap_or_else(|e| panic!("setns({path}): {e}"));
        drop(f_ns);
        // The daemon's runtime: worker threads, started here, share this thread's namespace.
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
        rt.block_on(async move {
            let la = std::sync::Arc::new(LocalAddresses::new().expect("opening netlink"));
            let addresses: Vec<Ipv4Addr> = (1..=16).map(|k| Ipv4Addr::new(10, 0, 9, k)).collect();
            let tasks: Vec<_> = addresses
                .iter()
                .map(|a| {
                    let (la, a) = (la.clone(), *a);
                    tokio::spawn(async move { (a, la.ensure_present("eth0", a, 32, None).await) })
                })
                .collect();
            for t in tasks {
                let (a, r) = t.await.expect("task");
                assert!(matches!(r, Ok(true)), "{a}: {r:?}");
            }
            for round in 0..10 {
                let tasks: Vec<_> = addresses
                    .iter()
                    .map(|a| {
                        let (la, a) = (la.clone(), *a);
                        tokio::spawn(async move { la.is_present("eth0", a).await })
                    })
                    .collect();
                for t in tasks {
                    let r = t.await.expect("task");
                    assert!(matches!(r, Ok(true)), "round {round}: {r:?}");
                }
            }
            for a in &addresses {
                assert!(la.ensure_absent("eth0", *a).await.expect("removing"));
            }
        });
    });
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
    assert!(!addrs(&ns.0).iter().any(|l| l.contains("10.0.9.")), "{:?}", addrs(&ns.0));
}
