//! The EC2 side: the moto emulator, the seed it is given, the lab's own EC2 client (for the
//! view the assertions check and for the harness's changes), IAM and the request log.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::process::{append_log, run};
use crate::{script, venv_python, Lab, EMULATOR_PORT};

/// One EIP as DescribeAddresses reports it (empty strings normalised to None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EipState {
    pub allocation_id: String,
    pub public_ip: Option<String>,
    pub association_id: Option<String>,
    pub instance_id: Option<String>,
    pub network_interface_id: Option<String>,
    pub private_ip: Option<String>,
}

/// One line of the emulator's request log.
#[derive(Clone, Debug, Deserialize)]
pub struct Ec2Request {
    /// Arrival time, unix seconds.
    pub t: f64,
    /// Client IP (a node's IP for the daemons).
    pub source: String,
    pub action: String,
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    pub status: Option<u16>,
    #[serde(default)]
    pub duration_ms: Option<f64>,
    /// The access key id that signed the request: a node's own, or one of a role it assumed.
    #[serde(default)]
    pub access_key: Option<String>,
}

impl Ec2Request {
    /// A request parameter as a string (e.g. `AllocationId`, `DryRun`).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(|v| v.as_str())
    }
}

/// One node's instance as seed_ec2.py created it: what IMDS serves and EC2 checks name.
#[derive(Clone, Debug, Deserialize)]
pub struct SeededInstance {
    pub instance_id: String,
    pub eni: String,
    pub private_ip: String,
    #[serde(default)]
    pub mac: String,
    #[serde(default)]
    pub az: String,
}

/// One EIP as seed_ec2.py allocated it.
#[derive(Clone, Debug, Deserialize)]
pub struct SeededAllocation {
    pub allocation_id: String,
    pub public_ip: String,
}

/// seed_ec2.py's output: the EC2 world every node and assertion refers to.
#[derive(Clone, Debug, Deserialize)]
pub struct Seed {
    pub vpc_id: String,
    pub subnet_id: String,
    pub instances: Vec<SeededInstance>,
    pub allocations: Vec<SeededAllocation>,
    #[serde(default)]
    pub route_tables: Vec<String>,
    /// The Route 53 hosted zone of the lab (`lab.internal.`).
    #[serde(default)]
    pub hosted_zone_id: String,
    /// Its name, with the trailing dot.
    #[serde(default)]
    pub zone: String,
    /// The subnet's IPv6 /64.
    #[serde(default)]
    pub subnet_ipv6_cidr: String,
}

/// One route of a lab route table as DescribeRouteTables reports it (empty strings → None).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteState {
    pub route_table_id: String,
    /// DestinationCidrBlock (or the IPv6 block / prefix list id when that is what it has).
    pub destination: String,
    pub network_interface_id: Option<String>,
    pub instance_id: Option<String>,
    /// GatewayId ("local" for the VPC's own route), NAT gateway, transit gateway, ...
    pub other_target: Option<String>,
    /// "active" or "blackhole".
    pub state: Option<String>,
}

impl RouteState {
    /// The ENI, else the instance, else whatever other target the route has.
    pub fn target(&self) -> Option<&str> {
        self.network_interface_id
            .as_deref()
            .or(self.instance_id.as_deref())
            .or(self.other_target.as_deref())
    }
}

/// "172.31.255.10" → "172.31.255.10/32"; a CIDR is returned unchanged.
pub(crate) fn as_cidr(dest: &str) -> String {
    if dest.contains('/') {
        dest.to_string()
    } else {
        format!("{dest}/32")
    }
}

pub(crate) type Ec2Job = Box<dyn FnOnce(&tokio::runtime::Runtime, &aws_sdk_ec2::Client) + Send>;

pub(crate) struct Ec2Worker {
    pub(crate) tx: Option<mpsc::Sender<Ec2Job>>,
    pub(crate) handle: Option<thread::JoinHandle<()>>,
}

impl Lab {
    pub(crate) fn start_emulator(&mut self) -> Result<()> {
        let dir = &self.spec.work_dir;
        let (o, e) = append_log(&dir.join("emulator.log"))?;
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.emu_netns))
            .arg("--")
            .arg(venv_python())
            .arg(script("ec2_emulator.py"))
            .args(["--host", &self.emulator_ip().to_string()])
            .args(["--port", &EMULATOR_PORT.to_string()])
            .arg("--request-log")
            .arg(self.request_log_path())
            .arg("--ready-file")
            .arg(dir.join("emulator.ready"))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(o)
            .stderr(e)
            .spawn()
            .context("spawning the EC2 emulator")?;
        self.emulator = Some(child);
        Ok(())
    }

    pub(crate) fn wait_emulator(&mut self) -> Result<()> {
        let ready = self.spec.work_dir.join("emulator.ready");
        let log = self.spec.work_dir.join("emulator.log");
        let start = Instant::now();
        while !ready.exists() {
            if let Some(st) = self.emulator.as_mut().unwrap().try_wait()? {
                bail!(
                    "EC2 emulator exited ({st}): {}",
                    fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if start.elapsed() > Duration::from_secs(60) {
                bail!("EC2 emulator not ready after 60 s, see {}", log.display());
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub(crate) fn seed(&mut self) -> Result<()> {
        self.wait_emulator()?;
        let out = run(Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.emu_netns))
            .arg("--")
            .arg(venv_python())
            .arg(script("seed_ec2.py"))
            .args(["--endpoint", &self.emulator_url()])
            .args(["--nodes", &self.nodes.len().to_string()])
            .args(["--eips", &self.spec.eips.to_string()])
            .args(["--route-tables", &self.spec.route_tables.to_string()]))
        .context("seeding the EC2 emulator")?;
        fs::write(self.spec.work_dir.join("seed.json"), &out.stdout)?;
        let seed: Seed =
            serde_json::from_slice(&out.stdout).context("parsing seed_ec2.py output")?;
        if seed.instances.len() != self.nodes.len()
            || seed.allocations.len() != self.spec.eips
            || seed.route_tables.len() != self.spec.route_tables
        {
            bail!(
                "seed_ec2.py returned {} instances / {} EIPs / {} route tables",
                seed.instances.len(),
                seed.allocations.len(),
                seed.route_tables.len()
            );
        }
        self.seed = Some(seed);
        Ok(())
    }

    pub(crate) fn start_ec2_worker(&mut self) -> Result<()> {
        // tokio's IO driver (with the crate's "signal"/"process" features) lazily creates a
        // process-global unix socketpair the first time any runtime is built. If that happened
        // on our worker thread, the socket would live in the emulator's netns and pin it (and
        // its veth) until the process exits. Make sure it is created here, in the caller's
        // netns, on a plain thread (dropping a runtime inside an async context would panic).
        thread::spawn(|| {
            let _ = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build();
        })
        .join()
        .map_err(|_| anyhow!("tokio warm-up thread panicked"))?;
        let (tx, rx) = mpsc::channel::<Ec2Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
        let netns = format!("/run/netns/{}", self.emu_netns);
        let url = self.emulator_url();
        let handle = thread::Builder::new()
            .name("lab-ec2".into())
            .spawn(move || {
                let init = (|| -> Result<(tokio::runtime::Runtime, aws_sdk_ec2::Client)> {
                    let f = File::open(&netns).with_context(|| format!("opening {netns}"))?;
                    nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("setns({netns})"))?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_io()
                        .enable_time()
                        .build()?;
                    let conf = aws_sdk_ec2::Config::builder()
                        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
                        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
                        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                            "testing", "testing", None, None, "lab",
                        ))
                        .endpoint_url(url)
                        .timeout_config(
                            aws_sdk_ec2::config::timeout::TimeoutConfig::builder()
                                .operation_timeout(Duration::from_secs(10))
                                .build(),
                        )
                        .build();
                    Ok((rt, aws_sdk_ec2::Client::from_conf(conf)))
                })();
                let (rt, client) = match init {
                    Ok(v) => {
                        let _ = ready_tx.send(Ok(()));
                        v
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&rt, &client);
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| anyhow!("lab-ec2 thread died"))?
            .context("starting the lab's EC2 client thread")?;
        self.ec2 = Some(Ec2Worker {
            tx: Some(tx),
            handle: Some(handle),
        });
        Ok(())
    }

    /// Runs `f` with the lab's EC2 client (on a thread inside the emulator's netns) and returns
    /// its result. Use `rt.block_on(client.some_call().send())`.
    pub fn with_ec2<T: Send + 'static>(
        &self,
        f: impl FnOnce(&tokio::runtime::Runtime, &aws_sdk_ec2::Client) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let w = self
            .ec2
            .as_ref()
            .ok_or_else(|| anyhow!("EC2 client not started"))?;
        let (tx, rx) = mpsc::channel();
        let job: Ec2Job = Box::new(move |rt, c| {
            let _ = tx.send(f(rt, c));
        });
        w.tx.as_ref()
            .unwrap()
            .send(job)
            .map_err(|_| anyhow!("lab-ec2 thread is gone"))?;
        rx.recv()
            .map_err(|_| anyhow!("lab-ec2 thread dropped the job"))?
    }

    // -----------------------------------------------------------------------------------------
    // EC2 view

    /// DescribeAddresses for the lab's EIPs, in allocation order.
    pub fn describe_addresses(&self) -> Result<Vec<EipState>> {
        let ids = self.allocation_ids();
        let mut states = self.with_ec2(move |rt, c| {
            let out = rt
                .block_on(c.describe_addresses().set_allocation_ids(Some(ids)).send())
                .map_err(|e| {
                    anyhow!(
                        "DescribeAddresses: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(e)
                    )
                })?;
            let s = |o: Option<&str>| o.filter(|v| !v.is_empty()).map(str::to_string);
            Ok(out
                .addresses()
                .iter()
                .map(|a| EipState {
                    allocation_id: a.allocation_id().unwrap_or_default().to_string(),
                    public_ip: s(a.public_ip()),
                    association_id: s(a.association_id()),
                    instance_id: s(a.instance_id()),
                    network_interface_id: s(a.network_interface_id()),
                    private_ip: s(a.private_ip_address()),
                })
                .collect::<Vec<_>>())
        })?;
        let order = self.allocation_ids();
        states.sort_by_key(|s| order.iter().position(|a| *a == s.allocation_id));
        Ok(states)
    }

    /// The state name (`running`, `stopped`, ...) EC2 shows for node `i`'s instance.
    pub fn instance_state(&self, i: usize) -> Result<String> {
        let id = self.instance_id(i).to_string();
        self.with_ec2(move |rt, c| {
            let out = rt
                .block_on(c.describe_instances().instance_ids(&id).send())
                .map_err(|e| anyhow!("DescribeInstances: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .find_map(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str().to_string()))
                .ok_or_else(|| anyhow!("{id} not in DescribeInstances"))
        })
    }

    /// Starts node `i`'s instance again in EC2 (after a fence stopped it), with the lab's keys.
    pub fn start_instance(&self, i: usize) -> Result<()> {
        let id = self.instance_id(i).to_string();
        self.with_ec2(move |rt, c| {
            rt.block_on(c.start_instances().instance_ids(&id).send())
                .map_err(|e| anyhow!("StartInstances: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
            Ok(())
        })
    }

    /// State of one EIP by allocation id.
    pub fn eip(&self, allocation_id: &str) -> Result<EipState> {
        self.describe_addresses()?
            .into_iter()
            .find(|s| s.allocation_id == allocation_id)
            .ok_or_else(|| anyhow!("{allocation_id} not in DescribeAddresses"))
    }

    /// The node whose instance holds this EIP, if any.
    pub fn eip_holder(&self, allocation_id: &str) -> Result<Option<usize>> {
        let s = self.eip(allocation_id)?;
        Ok(s.instance_id
            .as_deref()
            .or(s.network_interface_id.as_deref())
            .and_then(|id| self.node_of(id)))
    }

    /// Every route of the given tables (one DescribeRouteTables call), tables in the given
    /// order, routes as the emulator lists them, including the VPC's local route.
    pub fn describe_routes(&self, route_table_ids: &[String]) -> Result<Vec<RouteState>> {
        if route_table_ids.is_empty() {
            // DescribeRouteTables without ids would list every table (the VPC's main one too)
            return Ok(vec![]);
        }
        let ids = route_table_ids.to_vec();
        let mut routes = self.with_ec2(move |rt, c| {
            let out = rt
                .block_on(
                    c.describe_route_tables()
                        .set_route_table_ids(Some(ids))
                        .send(),
                )
                .map_err(|e| {
                    anyhow!(
                        "DescribeRouteTables: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(e)
                    )
                })?;
            let s = |o: Option<&str>| o.filter(|v| !v.is_empty()).map(str::to_string);
            let mut v = Vec::new();
            for t in out.route_tables() {
                let table = t.route_table_id().unwrap_or_default().to_string();
                for r in t.routes() {
                    v.push(RouteState {
                        route_table_id: table.clone(),
                        destination: s(r.destination_cidr_block())
                            .or(s(r.destination_ipv6_cidr_block()))
                            .or(s(r.destination_prefix_list_id()))
                            .unwrap_or_default(),
                        network_interface_id: s(r.network_interface_id()),
                        instance_id: s(r.instance_id()),
                        other_target: s(r.gateway_id())
                            .or(s(r.nat_gateway_id()))
                            .or(s(r.transit_gateway_id()))
                            .or(s(r.vpc_peering_connection_id()))
                            .or(s(r.egress_only_internet_gateway_id()))
                            .or(s(r.local_gateway_id()))
                            .or(s(r.carrier_gateway_id())),
                        state: r.state().map(|st| st.as_str().to_string()),
                    });
                }
            }
            Ok(v)
        })?;
        routes.sort_by_key(|r| route_table_ids.iter().position(|t| *t == r.route_table_id));
        Ok(routes)
    }

    /// (route table, destination, target) of every route in the lab's route tables except the
    /// VPC's local route, in one DescribeRouteTables call. The target is the route's
    /// NetworkInterfaceId, else its InstanceId, else its other target (gateway ...).
    pub fn routes(&self) -> Result<Vec<(String, String, Option<String>)>> {
        Ok(self
            .describe_routes(&self.route_table_ids())?
            .into_iter()
            .filter(|r| r.other_target.as_deref() != Some("local"))
            .map(|r| {
                let target = r.target().map(str::to_string);
                (r.route_table_id, r.destination, target)
            })
            .collect())
    }

    /// Target (NetworkInterfaceId, else InstanceId, else other target) of the route for
    /// `destination_cidr` (a bare address means /32) in `route_table_id`; None if the table has
    /// no such route.
    pub fn route_target(
        &self,
        route_table_id: &str,
        destination_cidr: &str,
    ) -> Result<Option<String>> {
        let dest = as_cidr(destination_cidr);
        Ok(self
            .describe_routes(&[route_table_id.to_string()])?
            .into_iter()
            .find(|r| r.destination == dest)
            .and_then(|r| r.target().map(str::to_string)))
    }

    /// The node whose ENI (or instance) the route for `destination_cidr` points at, if any.
    pub fn route_holder(
        &self,
        route_table_id: &str,
        destination_cidr: &str,
    ) -> Result<Option<usize>> {
        Ok(self
            .route_target(route_table_id, destination_cidr)?
            .and_then(|t| self.node_of(&t)))
    }

    /// Points `destination_cidr` in `route_table_id` at ENI `eni` from the test harness:
    /// ReplaceRoute, or CreateRoute when the table has no such route. The request log records
    /// these calls with the emulator's own address as source, not a node's.
    pub fn set_route(&self, route_table_id: &str, destination_cidr: &str, eni: &str) -> Result<()> {
        let exists = self
            .route_target(route_table_id, destination_cidr)?
            .is_some();
        let (t, d, e) = (
            route_table_id.to_string(),
            as_cidr(destination_cidr),
            eni.to_string(),
        );
        self.with_ec2(move |rt, c| {
            if exists {
                rt.block_on(
                    c.replace_route()
                        .route_table_id(&t)
                        .destination_cidr_block(&d)
                        .network_interface_id(&e)
                        .send(),
                )
                .map(|_| ())
                .map_err(|err| {
                    anyhow!(
                        "ReplaceRoute {t} {d} -> {e}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(err)
                    )
                })
            } else {
                rt.block_on(
                    c.create_route()
                        .route_table_id(&t)
                        .destination_cidr_block(&d)
                        .network_interface_id(&e)
                        .send(),
                )
                .map(|_| ())
                .map_err(|err| {
                    anyhow!(
                        "CreateRoute {t} {d} -> {e}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(err)
                    )
                })
            }
        })
    }

    /// DeleteRoute from the test harness (fails if there is no such route). An IPv6
    /// destination goes as DestinationIpv6CidrBlock.
    pub fn delete_route(&self, route_table_id: &str, destination_cidr: &str) -> Result<()> {
        let (t, d) = (route_table_id.to_string(), as_cidr(destination_cidr));
        self.with_ec2(move |rt, c| {
            let call = c.delete_route().route_table_id(&t);
            let call = if d.contains(':') { call.destination_ipv6_cidr_block(&d) } else { call.destination_cidr_block(&d) };
            rt.block_on(call.send())
            .map(|_| ())
            .map_err(|err| {
                anyhow!(
                    "DeleteRoute {t} {d}: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(err)
                )
            })
        })
    }

    /// Turns source/destination check of node i's ENI on or off
    /// (ModifyNetworkInterfaceAttribute; the instance's SourceDestCheck follows, see
    /// ec2_emulator.py patch (f)).
    pub fn set_source_dest_check(&self, i: usize, on: bool) -> Result<()> {
        let eni = self.eni(i).to_string();
        self.with_ec2(move |rt, c| {
            rt.block_on(
                c.modify_network_interface_attribute()
                    .network_interface_id(&eni)
                    .source_dest_check(
                        aws_sdk_ec2::types::AttributeBooleanValue::builder()
                            .value(on)
                            .build(),
                    )
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| {
                anyhow!(
                    "ModifyNetworkInterfaceAttribute {eni} SourceDestCheck={on}: {}",
                    aws_sdk_ec2::error::DisplayErrorContext(e)
                )
            })
        })
    }

    /// The ENIs (of any instance, not only the lab's nodes) that carry `address` as a
    /// secondary private IP or an IPv6 address, read from every ENI of the emulator so that nothing is missed
    /// by a filter: the lab's own view of EC2.
    pub fn secondary_ip_enis(&self, address: &str) -> Result<Vec<String>> {
        let address = address.to_string();
        self.with_ec2(move |rt, c| {
            let out = rt
                .block_on(c.describe_network_interfaces().send())
                .map_err(|e| anyhow!("DescribeNetworkInterfaces: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))?;
            let mut enis: Vec<String> = out
                .network_interfaces()
                .iter()
                .filter(|n| {
                    n.private_ip_addresses()
                        .iter()
                        .any(|a| a.primary() != Some(true) && a.private_ip_address() == Some(address.as_str()))
                        || n.ipv6_addresses().iter().any(|a| {
                            a.ipv6_address().and_then(|v| v.parse::<std::net::IpAddr>().ok()) == address.parse().ok()
                        })
                })
                .filter_map(|n| n.network_interface_id().map(str::to_string))
                .collect();
            enis.sort();
            Ok(enis)
        })
    }

    /// The nodes whose ENI carries `address` as a secondary IP (an ENI outside the lab shows
    /// as an error: the lab never creates one).
    pub fn secondary_ip_holders(&self, address: &str) -> Result<Vec<usize>> {
        self.secondary_ip_enis(address)?
            .iter()
            .map(|eni| self.node_of(eni).ok_or_else(|| anyhow!("{address} is on {eni}, which is no lab node's ENI")))
            .collect()
    }

    /// Assigns `address` to node i's ENI as an operator would, taking it from any other ENI
    /// (AllowReassignment): how the tests make a secondary IP drift.
    pub fn assign_secondary_ip(&self, i: usize, address: &str) -> Result<()> {
        let eni = self.eni(i).to_string();
        let address = address.to_string();
        self.with_ec2(move |rt, c| {
            rt.block_on(
                c.assign_private_ip_addresses()
                    .network_interface_id(&eni)
                    .private_ip_addresses(&address)
                    .allow_reassignment(true)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| anyhow!("AssignPrivateIpAddresses {address} to {eni}: {}", aws_sdk_ec2::error::DisplayErrorContext(e)))
        })
    }

    /// Runs `body` with boto3's `r53` client inside the emulator's network namespace (so its
    /// calls come from no node) and parses the JSON it prints last. boto3 retries Route 53's
    /// Throttling, which the emulator enforces at 5 requests/s for everyone, as AWS does.
    pub fn route53_script(&self, body: &str) -> Result<serde_json::Value> {
        let script = format!(
            "import boto3, json\n\
             r53 = boto3.client('route53', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='testing', aws_secret_access_key='testing')\n{body}\n",
            self.emulator_url()
        );
        let py = crate::venv_python();
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", self.emulator_netns()])
            .arg(&py)
            .args(["-c", &script])
            .output()
            .context("running boto3 in the emulator's namespace")?;
        if !out.status.success() {
            bail!("boto3 route53 script failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default();
        serde_json::from_str(last).with_context(|| format!("boto3 route53 output {text:?}"))
    }

    /// The values and TTL of record `name`/`record_type` in the lab zone; None when it does
    /// not exist.
    pub fn dns_record(&self, name: &str, record_type: &str) -> Result<Option<(Vec<String>, Option<i64>)>> {
        let v = self.route53_script(&format!(
            "out = r53.list_resource_record_sets(HostedZoneId='{zone}', StartRecordName='{name}', StartRecordType='{record_type}', MaxItems='1')\n\
             rs = [r for r in out['ResourceRecordSets'] if r['Name'].lower() == '{name}'.lower() and r['Type'] == '{record_type}']\n\
             print(json.dumps([{{'values': [v['Value'] for v in r.get('ResourceRecords', [])], 'ttl': r.get('TTL')}} for r in rs]))",
            zone = self.seed_info().hosted_zone_id
        ))?;
        let Some(first) = v.as_array().and_then(|a| a.first()) else { return Ok(None) };
        let values = first["values"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        Ok(Some((values, first["ttl"].as_i64())))
    }

    /// UPSERTs record `name` (A) in the lab zone to `value`, as an operator would: how the
    /// tests make a record drift.
    pub fn set_dns_record(&self, name: &str, value: &str, ttl: i64) -> Result<()> {
        self.route53_script(&format!(
            "r53.change_resource_record_sets(HostedZoneId='{zone}', ChangeBatch={{'Changes': [{{'Action': 'UPSERT', \
             'ResourceRecordSet': {{'Name': '{name}', 'Type': 'A', 'TTL': {ttl}, 'ResourceRecords': [{{'Value': '{value}'}}]}}}}]}})\n\
             print('{{}}')",
            zone = self.seed_info().hosted_zone_id
        ))?;
        Ok(())
    }

    /// SourceDestCheck of node i's ENI (DescribeNetworkInterfaces).
    pub fn source_dest_check(&self, i: usize) -> Result<bool> {
        let eni = self.eni(i).to_string();
        self.with_ec2(move |rt, c| {
            let out = rt
                .block_on(
                    c.describe_network_interfaces()
                        .network_interface_ids(&eni)
                        .send(),
                )
                .map_err(|e| {
                    anyhow!(
                        "DescribeNetworkInterfaces {eni}: {}",
                        aws_sdk_ec2::error::DisplayErrorContext(e)
                    )
                })?;
            out.network_interfaces()
                .first()
                .and_then(|n| n.source_dest_check())
                .ok_or_else(|| anyhow!("DescribeNetworkInterfaces {eni}: no SourceDestCheck"))
        })
    }

    fn iam_script(&self, args: &[&str]) -> Result<Output> {
        run(Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.emu_netns))
            .arg("--")
            .arg(venv_python())
            .arg(script("iam.py"))
            .args(["--endpoint", &self.emulator_url()])
            .args(args))
    }

    /// Creates an IAM user in the emulator with `policy` (an IAM policy document) as its only
    /// inline policy; returns its (access key id, secret access key). Give them to a node's
    /// command with `.env("AWS_ACCESS_KEY_ID", ..)` after `node_command`.
    pub fn create_iam_user(&self, name: &str, policy: &serde_json::Value) -> Result<(String, String)> {
        let out = self
            .iam_script(&["user", name, &policy.to_string()])
            .with_context(|| format!("creating IAM user {name}"))?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("iam.py gave no {k}"))
        };
        Ok((field("access_key_id")?, field("secret_access_key")?))
    }

    /// Turns IAM enforcement in the emulator on or off. While on, every request must be signed
    /// by an IAM user's key and allowed by its policies (denied EC2 calls fail with
    /// UnauthorizedOperation); the lab's own keys ("testing") act as the account root and are
    /// always allowed, so the lab's helpers and daemons keep working.
    pub fn enforce_iam(&self, on: bool) -> Result<()> {
        self.iam_script(&["enforce", if on { "on" } else { "off" }])
            .context("switching IAM enforcement")?;
        Ok(())
    }

    /// Every EC2 API request the emulator received so far.
    pub fn ec2_requests(&self) -> Result<Vec<Ec2Request>> {
        let text = match fs::read_to_string(self.request_log_path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(e.into()),
        };
        // a line may be half-written: only complete lines count
        let complete = match text.rfind('\n') {
            Some(p) => &text[..=p],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("request log line {l:?}")))
            .collect()
    }

}

/// IAM policy of a healthy node: everything an EIP holder calls.
pub fn full_policy() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["ec2:Describe*", "ec2:AssociateAddress", "ec2:DisassociateAddress", "ec2:CreateTags", "ec2:DeleteTags",
                       "ec2:AssignPrivateIpAddresses"],
            "Resource": "*"
        }]
    })
}

/// IAM policy of a drifted role: it can look, but cannot associate nor tag.
pub fn no_associate_policy() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["ec2:Describe*", "ec2:DisassociateAddress", "ec2:DeleteTags"],
            "Resource": "*"
        }]
    })
}
