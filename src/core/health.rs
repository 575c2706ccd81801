//! Rise/fall damping of health check results, like keepalived's and HAProxy's: a node changes
//! eligibility only after `fall` consecutive failures or `rise` consecutive successes, so one
//! slow check does not move addresses.

/// One health check's damped result: whether this node counts as healthy for elections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthTracker {
    rise: u32,
    fall: u32,
    healthy: bool,
    streak: u32,
}

impl HealthTracker {
    /// `initially_healthy` is the result of the first check, run before the node joins.
    pub fn new(rise: u32, fall: u32, initially_healthy: bool) -> HealthTracker {
        HealthTracker {
            rise: rise.max(1),
            fall: fall.max(1),
            healthy: initially_healthy,
            streak: 0,
        }
    }

    /// The damped result: false makes this node ineligible to hold addresses.
    pub fn healthy(&self) -> bool {
        self.healthy
    }

    /// Records one result; returns the new state when it flipped.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if ok { self.rise } else { self.fall };
        if self.streak >= needed {
            self.healthy = ok;
            self.streak = 0;
            Some(ok)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_after_fall_failures_and_rises_after_rise_successes() {
        let mut t = HealthTracker::new(3, 2, true);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(false));
        assert!(!t.healthy());
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(true));
    }

    #[test]
    fn flapping_is_damped() {
        let mut t = HealthTracker::new(2, 2, true);
        for _ in 0..10 {
            assert_eq!(t.record(false), None);
            assert_eq!(t.record(true), None);
        }
        assert!(t.healthy());
    }
}
