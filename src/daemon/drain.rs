//! Draining before AWS's announced events (`[aws_events]`): polls IMDS, lets
//! [`crate::core::events::decide`] judge, and puts this node in a timed standby over CPG, so
//! its addresses leave by planned moves before EC2 takes the instance away.
//!
//! The drain is this process's own: it is not persisted like an admin's standby (a node that
//! reboots for the event must come back serving), and an admin's `standby` of this node, or an
//! `unstandby` from anywhere, takes it over for the rest of the event.

use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::{Daemon, TaskResult};
use crate::core::events::{self, AwsEvent, Drain, DrainPolicy};
use crate::core::view::View;
use crate::core::wire::{self, Body};
use crate::corosync::{Corosync, CorosyncError};
use crate::imds::Imds;
use crate::notify::{HookContext, HookEvent};

/// What one poll of IMDS found.
#[derive(Debug)]
pub(super) struct EventsSeen {
    /// Announced events of kinds this program knows (enabled or not).
    pub events: Vec<AwsEvent>,
    /// Documents that could not be read or understood, and unknown event codes: logged and
    /// shown, never acted on.
    pub problems: Vec<String>,
}

/// The drain in force, and the event an admin overrode (not drained for again).
#[derive(Debug, Default)]
pub(super) struct DrainState {
    pub current: Option<Drain>,
    pub overridden: Option<String>,
    pub polling: bool,
    pub problems: Vec<String>,
}

const SCHEDULED: &str = "/latest/meta-data/events/maintenance/scheduled";
const SPOT: &str = "/latest/meta-data/spot/instance-action";
const REBALANCE: &str = "/latest/meta-data/events/recommendations/rebalance";

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Reads the three documents; a missing one (404) is no event.
async fn poll(imds: Imds) -> EventsSeen {
    let mut seen = EventsSeen { events: Vec::new(), problems: Vec::new() };
    match imds.get_optional(SCHEDULED).await {
        Ok(Some(text)) => match events::parse_scheduled(&text) {
            Ok((found, unknown)) => {
                seen.events.extend(found);
                seen.problems.extend(unknown.into_iter().map(|c| format!("unknown scheduled event code `{c}` ignored")));
            }
            Err(e) => seen.problems.push(e.to_string()),
        },
        Ok(None) => {}
        Err(e) => seen.problems.push(e.to_string()),
    }
    for (path, parse) in [
        (SPOT, events::parse_spot as fn(&str) -> Result<AwsEvent, events::EventParseError>),
        (REBALANCE, events::parse_rebalance),
    ] {
        match imds.get_optional(path).await {
            Ok(Some(text)) => match parse(&text) {
                Ok(event) => seen.events.push(event),
                Err(e) => seen.problems.push(e.to_string()),
            },
            Ok(None) => {}
            Err(e) => seen.problems.push(e.to_string()),
        }
    }
    seen
}

impl Daemon {
    fn drain_policy(&self) -> DrainPolicy {
        let c = &self.config.aws_events;
        DrainPolicy {
            drain_before: c.drain_before.as_secs(),
            window: c.window.as_secs(),
            kinds: c.events.clone(),
        }
    }

    /// Starts one IMDS poll unless one is running.
    pub(super) fn start_event_poll(&mut self) {
        if !self.config.aws_events.enabled || self.drain.polling {
            return;
        }
        self.drain.polling = true;
        let tx = self.results_tx.clone();
        tokio::spawn(async move {
            let seen = poll(Imds::single_attempt()).await;
            let _ = tx.send(TaskResult::AwsEvents(seen));
        });
    }

    /// Acts on a poll: drain when an enabled event comes within `drain_before`, end the drain
    /// when its window is over (or the event was withdrawn). Nothing moves back by itself.
    pub(super) async fn on_aws_events(&mut self, cs: &Corosync, view: &View, seen: EventsSeen) -> Result<(), CorosyncError> {
        self.drain.polling = false;
        if seen.problems != self.drain.problems {
            for p in &seen.problems {
                warn!(problem = %p, "AWS event metadata ignored");
            }
        }
        self.drain.problems = seen.problems;
        let decision = events::decide(&seen.events, unix_now(), &self.drain_policy())
            .filter(|d| self.drain.overridden.as_deref() != Some(d.event.id.as_str()));
        let local = view.local().node;
        match (decision, self.drain.current.take()) {
            (Some(d), None) => {
                if view.local_info().standby {
                    // An admin's standby already keeps the node empty; leave it theirs.
                    return Ok(());
                }
                info!(
                    event = d.event.kind.as_str(),
                    id = %d.event.id,
                    starts = d.event.not_before,
                    until = d.until,
                    "AWS announced an event for this instance: draining, addresses leave by planned moves"
                );
                cs.send(&wire::encode(&Body::Standby { node: local, standby: true })).await?;
                self.fire_drain_hook(HookEvent::Drain, &d);
                self.drain.current = Some(d);
            }
            (Some(d), Some(_)) if !view.local_info().standby => {
                // Someone took this node out of standby (an admin on another node): theirs now.
                info!(id = %d.event.id, "this node was taken out of standby during its AWS event drain; not draining again for it");
                self.drain.overridden = Some(d.event.id);
            }
            (Some(d), Some(_)) => self.drain.current = Some(d),
            (None, Some(old)) => {
                if view.local_info().standby {
                    info!(event = old.event.kind.as_str(), id = %old.event.id, "the AWS event's window is over: serving again (nothing moves back)");
                    cs.send(&wire::encode(&Body::Standby { node: local, standby: false })).await?;
                    self.fire_drain_hook(HookEvent::Undrain, &old);
                }
            }
            (None, None) => {}
        }
        Ok(())
    }

    /// An admin's standby or unstandby of this node ends our drain's say over it.
    pub(super) fn admin_took_standby(&mut self) {
        if let Some(d) = self.drain.current.take() {
            info!(id = %d.event.id, "an admin changed this node's standby: the AWS event drain leaves it to them");
            self.drain.overridden = Some(d.event.id);
        }
    }

    fn fire_drain_hook(&self, event: HookEvent, drain: &Drain) {
        let Some(node_id) = self.node_id else { return };
        self.notifier.fire(HookContext {
            event,
            resource: String::new(),
            group: String::new(),
            kind: "node",
            role: if event == HookEvent::Drain { "standby" } else { "member" },
            address: String::new(),
            node_id,
            instance_id: self.identity.instance_id.clone(),
            detail: format!("{} {} at {} (until {})", drain.event.kind.as_str(), drain.event.id, drain.event.not_before, drain.until),
        });
    }
}
