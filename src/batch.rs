//! Concurrent AWS requests of one kind, merged into one call.
//!
//! After a membership change a node starts one acquisition per address it just took, all at
//! once, and each reads EC2 after its change (and tags or assigns). Sent one by one that is one
//! read per address; EC2 answers a read for a hundred addresses as fast as for one. A
//! `Batcher` collects what arrives during a short window, or while the previous round is in
//! flight, and hands the whole round to one function that makes as few calls as it can.
//!
//! A round runs in its own task: a caller that is aborted (its acquisition was cancelled)
//! never strands the others waiting on the same round.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::oneshot;

/// How long the first request of a round waits for others. Acquisitions started by one
/// membership change are spawned within microseconds of each other; EC2 answers in tens of
/// milliseconds, so the wait costs little and saves a call per address.
pub const WINDOW: Duration = Duration::from_millis(2);

/// Carries out one round: gets every request of the round, returns one outcome per request,
/// in the same order.
pub type Round<I, O> = Arc<dyn Fn(Vec<I>) -> BoxFuture<'static, Vec<O>> + Send + Sync>;

struct Queue<I, O> {
    waiting: Vec<(I, oneshot::Sender<O>)>,
    /// A task is draining the queue; new requests join its next round.
    draining: bool,
}

/// Merges concurrent requests into rounds (see the module documentation).
pub struct Batcher<I, O> {
    queue: Arc<Mutex<Queue<I, O>>>,
    round: Round<I, O>,
    window: Duration,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// A batcher whose rounds `round` carries out, the first request of each burst waiting
    /// `window` for company.
    pub fn new(window: Duration, round: Round<I, O>) -> Batcher<I, O> {
        Batcher {
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                draining: false,
            })),
            round,
            window,
        }
    }

    /// Queues `request` and waits for its outcome; None only if the round lost it (a bug in
    /// the round function, or a runtime shutting down).
    pub async fn submit(&self, request: I) -> Option<O> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.waiting.push((request, tx));
            !std::mem::replace(&mut q.draining, true)
        };
        if start {
            tokio::spawn(drain(self.queue.clone(), self.round.clone(), self.window));
        }
        rx.await.ok()
    }
}

/// Runs rounds until nobody waits: whatever arrived during one round's call is the next round.
async fn drain<I, O>(queue: Arc<Mutex<Queue<I, O>>>, round: Round<I, O>, window: Duration) {
    tokio::time::sleep(window).await;
    loop {
        let waiting = {
            let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.waiting.is_empty() {
                q.draining = false;
                return;
            }
            std::mem::take(&mut q.waiting)
        };
        let (requests, senders): (Vec<I>, Vec<oneshot::Sender<O>>) = waiting.into_iter().unzip();
        let outcomes = round(requests).await;
        for (tx, outcome) in senders.into_iter().zip(outcomes) {
            // The caller may have been aborted meanwhile: nobody left to tell.
            let _ = tx.send(outcome);
        }
    }
}

/// Acquisitions started together (by one membership change, one move): each sends its change,
/// then waits for the others to have sent theirs before it reads EC2 back, so one shared read
/// (and one shared ownership write after it) serves them all. Sent changes complete at
/// slightly different times; without the wait, the early ones would each read alone.
pub struct Cohort {
    remaining: std::sync::atomic::AtomicUsize,
    all_sent: tokio::sync::Notify,
}

impl Cohort {
    /// A cohort of `size` members; give each acquisition one of `members`.
    pub fn new(size: usize) -> Arc<Cohort> {
        Arc::new(Cohort {
            remaining: std::sync::atomic::AtomicUsize::new(size),
            all_sent: tokio::sync::Notify::new(),
        })
    }

    /// One member's place in the cohort.
    pub fn member(self: &Arc<Cohort>) -> Member {
        Member {
            cohort: Some(self.clone()),
        }
    }
}

/// One acquisition of a cohort. Dropping it (the acquisition failed or was aborted) counts as
/// having sent: nobody waits for a member that will never send.
pub struct Member {
    cohort: Option<Arc<Cohort>>,
}

impl Member {
    /// Says this member's change is out (or needs none).
    pub fn sent(&mut self) {
        if let Some(c) = self.cohort.take() {
            if c.remaining.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                c.all_sent.notify_waiters();
            }
        }
    }

    /// Says this member's change is out, then waits until every member's is, but never longer
    /// than `limit`: a member whose call hangs delays the others' read-back by at most that.
    pub async fn sent_and_wait(&mut self, limit: Duration) {
        let Some(cohort) = self.cohort.clone() else { return };
        let notified = cohort.all_sent.notified();
        tokio::pin!(notified);
        // Registered before counting down, so the last member's notification is never missed.
        notified.as_mut().enable();
        self.sent();
        if cohort.remaining.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        let _ = tokio::time::timeout(limit, notified).await;
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.sent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn summing(calls: Arc<AtomicUsize>, delay: Duration) -> Batcher<u32, (u32, usize)> {
        Batcher::new(
            WINDOW,
            Arc::new(move |requests: Vec<u32>| {
                let calls = calls.clone();
                Box::pin(async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    let total: u32 = requests.iter().sum();
                    requests.iter().map(|_| (total, requests.len())).collect()
                })
            }),
        )
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_round() {
        let calls = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(summing(calls.clone(), Duration::from_millis(5)));
        let tasks: Vec<_> = (1..=10u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(i).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), Some((55, 10)));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn requests_during_a_round_make_the_next_round() {
        let calls = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(summing(calls.clone(), Duration::from_millis(50)));
        let first = {
            let b = b.clone();
            tokio::spawn(async move { b.submit(1).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let later: Vec<_> = (2..=4u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(i).await })
            })
            .collect();
        assert_eq!(first.await.expect("task"), Some((1, 1)));
        for t in later {
            assert_eq!(t.await.expect("task"), Some((9, 3)));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Idle again: a new request starts a new round.
        assert_eq!(b.submit(7).await, Some((7, 1)));
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_cohort_reads_back_together_and_never_waits_for_the_departed() {
        let cohort = Cohort::new(3);
        let (mut a, mut b, c) = (cohort.member(), cohort.member(), cohort.member());
        let started = tokio::time::Instant::now();
        let slow = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(40)).await;
            b.sent_and_wait(Duration::from_secs(5)).await;
        });
        drop(c); // failed before sending: counts as sent
        a.sent_and_wait(Duration::from_secs(5)).await;
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(40), "waited for the slow member: {waited:?}");
        slow.await.expect("task");
        // A member that never sends delays the others by at most the limit.
        let cohort = Cohort::new(2);
        let (mut a, _stuck) = (cohort.member(), cohort.member());
        let started = tokio::time::Instant::now();
        a.sent_and_wait(Duration::from_millis(30)).await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_aborted_caller_does_not_strand_the_round() {
        let calls = Arc::new(AtomicUsize::new(0));
        let b = Arc::new(summing(calls.clone(), Duration::from_millis(30)));
        let aborted = {
            let b = b.clone();
            tokio::spawn(async move { b.submit(1).await })
        };
        let kept = {
            let b = b.clone();
            tokio::spawn(async move { b.submit(2).await })
        };
        tokio::time::sleep(Duration::from_millis(10)).await;
        aborted.abort();
        assert_eq!(kept.await.expect("task"), Some((3, 2)));
    }
}
