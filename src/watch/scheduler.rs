//! A de-duplicating per-key scheduler with capped exponential backoff, in the style of kube-runtime's controller.
//!
//! Keys are what reconciles independently — here a [`ReconcileKey`]: the config, or one
//! provider. The rules:
//!
//! - [`Scheduler::schedule`]`(key, at)`: a key has at most one pending run; an earlier request
//!   moves it earlier, a later one changes nothing. A burst of requests is one run.
//! - A key never runs twice at once. A request that arrives while the key runs makes it run
//!   once more after the current run (at the earliest requested time), however many arrived.
//! - Different keys run concurrently: one slow or broken provider holds up nobody else.
//! - A failed run is retried after a capped exponential backoff with jitter
//!   ([`BackoffPolicy`]). While a key backs off, new requests cannot bring it forward (a broken
//!   cloud is not hammered by every trigger); [`Scheduler::reset_backoff`] lifts that, e.g. when
//!   the config changed. Success resets the backoff.
//! - [`Scheduler::status`] reports, per key, the last run, last error, next run and the number of
//!   consecutive failures, for `/status`.
//!
//! [`Scheduler::next`] hands out due keys as [`Job`]s; [`Job::finish`] reports the outcome (a job
//! dropped without it — a panic, a cancelled task — counts as a failure). [`Scheduler::run`]
//! is the ready-made loop: one task per job, until [`Scheduler::close`], then waits for the jobs
//! in flight. Time is tokio's ([`tokio::time::Instant`]), so tests run on paused time.
//!
//! The queue is a map scanned for the earliest due key: O(keys) per step, which suits the tens
//! to hundreds of providers of a node pool.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Serialize, Serializer};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What the nodepool daemon schedules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReconcileKey {
    /// Re-read the config source (fetch, validate, load).
    Config,
    /// Reconcile one provider.
    Provider(String),
}

impl fmt::Display for ReconcileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReconcileKey::Config => f.write_str("config"),
            ReconcileKey::Provider(name) => write!(f, "provider:{name}"),
        }
    }
}

impl Serialize for ReconcileKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What a successful run asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: wait for the next trigger.
    Done,
    /// Run again after this long (a timer: a node's age limit, a build's schedule, …).
    RequeueAfter(Duration),
}

/// Retry delays after consecutive failures: `initial * 2^(n-1)`, at most `max`, each shortened
/// by a random fraction up to `jitter` (so the cap is never exceeded and retries of keys that
/// failed together spread out).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffPolicy {
    pub initial: Duration,
    pub max: Duration,
    /// In `[0, 1]`; 0 makes delays exact.
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    /// 2 s, 4 s, 8 s, … capped at 5 minutes, with up to 20 % jitter.
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(300),
            jitter: 0.2,
        }
    }
}

impl BackoffPolicy {
    /// The delay before retry after `failures` (≥ 1) consecutive failures.
    pub fn delay(&self, failures: u32, rng: &mut fastrand::Rng) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let full = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 {
            return full;
        }
        full.mul_f64(1.0 - jitter * rng.f64())
    }
}

/// Where a key stands, for status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyState {
    /// Nothing pending.
    Idle,
    /// A run is pending.
    Scheduled,
    /// Running now.
    Running,
    /// The last run failed; a retry is pending.
    BackingOff,
}

/// One key's status, as `/status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KeyStatus<K> {
    pub key: K,
    pub state: KeyState,
    /// Runs started so far.
    pub runs: u64,
    pub consecutive_failures: u32,
    pub last_started: Option<DateTime<Utc>>,
    pub last_finished: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<u64>,
    pub last_success: Option<DateTime<Utc>>,
    /// The error of the last run, if it failed.
    pub last_error: Option<String>,
    /// When the next run is due (a pending run, or the re-run queued behind a running one).
    pub next_run: Option<DateTime<Utc>>,
    pub next_run_in_ms: Option<u64>,
}

#[derive(Debug, Default)]
struct Entry {
    /// When the pending run is due, and its queue sequence number (ties run FIFO).
    pending: Option<(Instant, u64)>,
    running: bool,
    /// Requested while running: run again at this time once the current run ends.
    rerun: Option<Instant>,
    /// Backoff floor: no run before this.
    not_before: Option<Instant>,
    /// Remove the entry when its current run ends.
    removed: bool,
    failures: u32,
    runs: u64,
    last_started: Option<DateTime<Utc>>,
    last_finished: Option<DateTime<Utc>>,
    last_duration: Option<Duration>,
    last_success: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

struct State<K> {
    entries: HashMap<K, Entry>,
    seq: u64,
    rng: fastrand::Rng,
    closed: bool,
}

struct Shared<K> {
    state: Mutex<State<K>>,
    wake: Notify,
    policy: BackoffPolicy,
}

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        // A panic while holding the lock cannot leave the state half-updated in a way that
        // matters more than stopping the daemon would; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The scheduler; cheap to clone (all clones share one queue).
pub struct Scheduler<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Scheduler<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K: Clone + Eq + Hash + Ord + fmt::Debug + Send + 'static> Scheduler<K> {
    pub fn new(policy: BackoffPolicy) -> Self {
        Self::with_rng(policy, fastrand::Rng::new())
    }

    /// A scheduler whose jitter is reproducible.
    pub fn with_seed(policy: BackoffPolicy, seed: u64) -> Self {
        Self::with_rng(policy, fastrand::Rng::with_seed(seed))
    }

    fn with_rng(policy: BackoffPolicy, rng: fastrand::Rng) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    entries: HashMap::new(),
                    seq: 0,
                    rng,
                    closed: false,
                }),
                wake: Notify::new(),
                policy,
            }),
        }
    }

    /// Ask for `key` to run at `at` (see the module docs for how requests merge).
    pub fn schedule(&self, key: K, at: Instant) {
        let mut state = self.shared.lock();
        let seq = state.seq;
        state.seq += 1;
        let entry = state.entries.entry(key).or_default();
        entry.removed = false;
        let at = entry.not_before.map_or(at, |floor| at.max(floor));
        if entry.running {
            entry.rerun = Some(entry.rerun.map_or(at, |r| r.min(at)));
        } else {
            entry.pending = match entry.pending {
                Some((current, current_seq)) if current <= at => Some((current, current_seq)),
                _ => Some((at, seq)),
            };
        }
        drop(state);
        self.shared.wake.notify_waiters();
    }

    /// [`Scheduler::schedule`] for now.
    pub fn schedule_now(&self, key: K) {
        self.schedule(key, Instant::now());
    }

    /// Forget `key`'s failures so its next request is not held back (a pending retry stays
    /// where it is; schedule the key to bring it forward).
    pub fn reset_backoff(&self, key: &K) {
        if let Some(entry) = self.shared.lock().entries.get_mut(key) {
            entry.failures = 0;
            entry.not_before = None;
        }
    }

    /// Drop `key` (a provider removed from the config): its pending run and its status. A run
    /// in progress finishes, and is not followed by another.
    pub fn remove(&self, key: &K) {
        let mut state = self.shared.lock();
        if let Some(entry) = state.entries.get_mut(key) {
            if entry.running {
                entry.removed = true;
                entry.rerun = None;
            } else {
                state.entries.remove(key);
            }
        }
    }

    /// The next due key, waiting until one is due. `None` once [`Scheduler::close`] was called.
    pub async fn next(&self) -> Option<Job<K>> {
        loop {
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            // Register before looking, so a schedule() between the look and the wait wakes us.
            notified.as_mut().enable();
            let wait_until = {
                let mut state = self.shared.lock();
                if state.closed {
                    return None;
                }
                let now = Instant::now();
                let earliest = state
                    .entries
                    .iter()
                    .filter(|(_, e)| !e.running)
                    .filter_map(|(k, e)| e.pending.map(|(at, seq)| (at, seq, k)))
                    .min_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
                    .map(|(at, _, k)| (at, k.clone()));
                match earliest {
                    Some((at, key)) if at <= now => {
                        let entry = state.entries.get_mut(&key).expect("key was just found");
                        entry.pending = None;
                        entry.running = true;
                        entry.runs += 1;
                        entry.last_started = Some(Utc::now());
                        return Some(Job {
                            key,
                            shared: Arc::clone(&self.shared),
                            started: now,
                            finished: false,
                        });
                    }
                    Some((at, _)) => Some(at),
                    None => None,
                }
            };
            match wait_until {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = &mut notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Stop handing out jobs: [`Scheduler::next`] returns `None` from now on. Jobs in flight
    /// still finish and are recorded.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// How many keys are running now.
    pub fn running(&self) -> usize {
        self.shared
            .lock()
            .entries
            .values()
            .filter(|e| e.running)
            .count()
    }

    /// Every key's status, sorted by key.
    pub fn status(&self) -> Vec<KeyStatus<K>> {
        let state = self.shared.lock();
        let (now, wall) = (Instant::now(), Utc::now());
        let mut all: Vec<_> = state
            .entries
            .iter()
            .filter(|(_, e)| !e.removed)
            .map(|(k, e)| status_of(k, e, now, wall))
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// One key's status, if it is known.
    pub fn status_of(&self, key: &K) -> Option<KeyStatus<K>> {
        let state = self.shared.lock();
        let entry = state.entries.get(key).filter(|e| !e.removed)?;
        Some(status_of(key, entry, Instant::now(), Utc::now()))
    }

    /// Run jobs until [`Scheduler::close`], each in its own task (`reconcile(key)` produces
    /// the run), then wait for the jobs in flight and return. Bound the wait with
    /// `tokio::time::timeout` for a bounded shutdown.
    pub async fn run<F, Fut, E>(&self, reconcile: F)
    where
        F: Fn(K) -> Fut,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        E: fmt::Display,
    {
        let mut tasks = JoinSet::new();
        while let Some(job) = self.next().await {
            let run = reconcile(job.key().clone());
            tasks.spawn(async move {
                let result = run.await;
                job.finish(result.map_err(|e| e.to_string()));
            });
            // Reap finished tasks so the set does not grow; a panic was already recorded by
            // the job's Drop.
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
    }
}

fn status_of<K: Clone>(key: &K, e: &Entry, now: Instant, wall: DateTime<Utc>) -> KeyStatus<K> {
    let next = if e.running {
        e.rerun
    } else {
        e.pending.map(|(at, _)| at)
    };
    let next_in = next.map(|at| at.saturating_duration_since(now));
    let state = match (e.running, e.pending.is_some(), e.failures > 0) {
        (true, _, _) => KeyState::Running,
        (false, true, true) => KeyState::BackingOff,
        (false, true, false) => KeyState::Scheduled,
        (false, false, _) => KeyState::Idle,
    };
    KeyStatus {
        key: key.clone(),
        state,
        runs: e.runs,
        consecutive_failures: e.failures,
        last_started: e.last_started,
        last_finished: e.last_finished,
        last_duration_ms: e.last_duration.map(|d| d.as_millis() as u64),
        last_success: e.last_success,
        last_error: e.last_error.clone(),
        next_run: next_in
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| wall + d),
        next_run_in_ms: next_in.map(|d| d.as_millis() as u64),
    }
}

/// A key handed out by [`Scheduler::next`]; report its outcome with [`Job::finish`].
#[must_use = "a job must be finished; dropping it records a failure"]
pub struct Job<K: Clone + Eq + Hash> {
    key: K,
    shared: Arc<Shared<K>>,
    started: Instant,
    finished: bool,
}

impl<K: Clone + Eq + Hash> Job<K> {
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Record the run's outcome and queue what follows: a re-run requested meanwhile, a
    /// requeue asked for by [`Action::RequeueAfter`], or a backoff retry after an error.
    pub fn finish<E: fmt::Display>(mut self, result: Result<Action, E>) {
        self.finished = true;
        self.record(result.map_err(|e| e.to_string()));
    }

    fn record(&mut self, result: Result<Action, String>) {
        let now = Instant::now();
        let mut state = self.shared.lock();
        let seq = state.seq;
        state.seq += 1;
        let State { entries, rng, .. } = &mut *state;
        let Some(entry) = entries.get_mut(&self.key) else {
            return;
        };
        entry.running = false;
        entry.last_finished = Some(Utc::now());
        entry.last_duration = Some(now.saturating_duration_since(self.started));
        let next = match result {
            Ok(action) => {
                entry.failures = 0;
                entry.not_before = None;
                entry.last_error = None;
                entry.last_success = entry.last_finished;
                let requeue = match action {
                    Action::Done => None,
                    Action::RequeueAfter(after) => Some(now + after),
                };
                match (entry.rerun.take(), requeue) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
            Err(message) => {
                entry.failures = entry.failures.saturating_add(1);
                let retry = now + self.shared.policy.delay(entry.failures, rng);
                tracing::debug!(failures = entry.failures, retry_in_ms = (retry - now).as_millis() as u64, error = %message, "run failed; backing off");
                entry.last_error = Some(message);
                entry.not_before = Some(retry);
                entry.rerun = None;
                Some(retry)
            }
        };
        if entry.removed {
            entries.remove(&self.key);
        } else {
            entry.pending = next.map(|at| (at, seq));
        }
        drop(state);
        self.shared.wake.notify_waiters();
    }
}

impl<K: Clone + Eq + Hash> Drop for Job<K> {
    fn drop(&mut self) {
        if !self.finished {
            self.record(Err(
                "the run ended without reporting a result (panicked or cancelled)".into(),
            ));
        }
    }
}

impl<K: Clone + Eq + Hash + fmt::Debug> fmt::Debug for Job<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Job")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn exact() -> BackoffPolicy {
        BackoffPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            jitter: 0.0,
        }
    }

    fn sched() -> Scheduler<&'static str> {
        Scheduler::with_seed(exact(), 7)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// The next job, or None if nothing becomes due within an hour (of paused time).
    async fn next_within_hour(s: &Scheduler<&'static str>) -> Option<Job<&'static str>> {
        tokio::time::timeout(HOUR, s.next()).await.ok().flatten()
    }

    #[tokio::test(start_paused = true)]
    async fn runs_at_the_scheduled_time() {
        let s = sched();
        let t0 = Instant::now();
        s.schedule("a", t0 + secs(5));
        let job = s.next().await.unwrap();
        assert_eq!((*job.key(), t0.elapsed()), ("a", secs(5)));
        job.finish::<String>(Ok(Action::Done));
        assert!(next_within_hour(&s).await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_request_wins_and_a_later_one_changes_nothing() {
        let s = sched();
        let t0 = Instant::now();
        s.schedule("a", t0 + secs(10));
        s.schedule("a", t0 + secs(5));
        s.schedule("a", t0 + secs(20));
        let job = s.next().await.unwrap();
        assert_eq!(t0.elapsed(), secs(5));
        job.finish::<String>(Ok(Action::Done));
        assert!(
            next_within_hour(&s).await.is_none(),
            "the 10 s and 20 s requests merged into the 5 s run"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_run() {
        let s = sched();
        for _ in 0..100 {
            s.schedule_now("a");
        }
        s.next().await.unwrap().finish::<String>(Ok(Action::Done));
        assert!(next_within_hour(&s).await.is_none());
        assert_eq!(s.status_of(&"a").unwrap().runs, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn earliest_first_and_ties_in_request_order() {
        let s = sched();
        let t0 = Instant::now();
        s.schedule("late", t0 + secs(3));
        s.schedule("b", t0 + secs(1));
        s.schedule("a", t0 + secs(1));
        let mut order = Vec::new();
        for _ in 0..3 {
            let job = s.next().await.unwrap();
            order.push((*job.key(), t0.elapsed().as_secs()));
            job.finish::<String>(Ok(Action::Done));
        }
        assert_eq!(order, [("b", 1), ("a", 1), ("late", 3)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_running_key_is_not_run_twice_but_runs_once_more_after() {
        let s = sched();
        s.schedule_now("a");
        let job = s.next().await.unwrap();
        // Five requests while it runs, and another key.
        for _ in 0..5 {
            s.schedule_now("a");
        }
        s.schedule_now("b");
        let other = s.next().await.unwrap();
        assert_eq!(*other.key(), "b", "other keys are not held up");
        other.finish::<String>(Ok(Action::Done));
        assert!(
            next_within_hour(&s).await.is_none(),
            "a is still running: no second run at once"
        );
        assert_eq!(s.status_of(&"a").unwrap().state, KeyState::Running);
        job.finish::<String>(Ok(Action::Done));
        let again = next_within_hour(&s)
            .await
            .expect("the re-run requested during the run");
        assert_eq!(*again.key(), "a");
        again.finish::<String>(Ok(Action::Done));
        assert!(
            next_within_hour(&s).await.is_none(),
            "exactly one re-run for five requests"
        );
        assert_eq!(s.status_of(&"a").unwrap().runs, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_next_wakes_for_a_new_earlier_request() {
        let s = sched();
        let t0 = Instant::now();
        s.schedule("far", t0 + secs(100));
        let waiter = tokio::spawn({
            let s = s.clone();
            async move {
                let job = s.next().await.unwrap();
                let key = *job.key();
                job.finish::<String>(Ok(Action::Done));
                key
            }
        });
        tokio::time::sleep(secs(2)).await;
        s.schedule_now("near");
        assert_eq!(waiter.await.unwrap(), "near");
        assert_eq!(t0.elapsed(), secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_capped_and_success_resets() {
        let s = sched();
        s.schedule_now("a");
        let mut delays = Vec::new();
        let mut last = Instant::now();
        for _ in 0..9 {
            let job = s.next().await.unwrap();
            delays.push(last.elapsed().as_secs());
            last = Instant::now();
            job.finish(Err("cloud down"));
        }
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60]);
        let st = s.status_of(&"a").unwrap();
        assert_eq!(
            (st.state, st.consecutive_failures),
            (KeyState::BackingOff, 9)
        );
        assert_eq!(st.last_error.as_deref(), Some("cloud down"));
        assert_eq!(st.next_run_in_ms, Some(60_000));
        s.next().await.unwrap().finish::<String>(Ok(Action::Done));
        let st = s.status_of(&"a").unwrap();
        assert_eq!(
            (st.state, st.consecutive_failures, st.last_error),
            (KeyState::Idle, 0, None)
        );
        assert!(st.last_success.is_some());
        // After the reset the first failure waits 1 s again.
        s.schedule_now("a");
        s.next().await.unwrap().finish(Err("again"));
        assert_eq!(s.status_of(&"a").unwrap().next_run_in_ms, Some(1_000));
    }

    #[tokio::test(start_paused = true)]
    async fn requests_during_backoff_wait_for_it_unless_reset() {
        let s = sched();
        let t0 = Instant::now();
        s.schedule_now("a");
        s.next().await.unwrap().finish(Err("e1"));
        s.next().await.unwrap().finish(Err("e2")); // at 1 s; retry at 3 s
        assert_eq!(t0.elapsed(), secs(1));
        s.schedule_now("a");
        let job = s.next().await.unwrap();
        assert_eq!(
            t0.elapsed(),
            secs(3),
            "the request did not cut the backoff short"
        );
        job.finish(Err("e3")); // retry at 7 s
        s.reset_backoff(&"a");
        s.schedule_now("a");
        let job = s.next().await.unwrap();
        assert_eq!(
            t0.elapsed(),
            secs(3),
            "after a reset the request runs at once"
        );
        job.finish::<String>(Ok(Action::Done));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rerun_requested_during_a_failing_run_waits_for_the_backoff() {
        let s = sched();
        let t0 = Instant::now();
        s.schedule_now("a");
        let job = s.next().await.unwrap();
        s.schedule_now("a");
        job.finish(Err("boom"));
        let retry = s.next().await.unwrap();
        assert_eq!(t0.elapsed(), secs(1));
        retry.finish::<String>(Ok(Action::Done));
        assert!(
            next_within_hour(&s).await.is_none(),
            "the retry covered the request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn jittered_delays_stay_within_bounds() {
        let policy = BackoffPolicy {
            initial: secs(10),
            max: secs(100),
            jitter: 0.5,
        };
        let mut rng = fastrand::Rng::with_seed(42);
        let mut seen = std::collections::BTreeSet::new();
        for failures in 1..=10u32 {
            let full = secs(10 * 2u64.pow(failures - 1)).min(secs(100));
            for _ in 0..50 {
                let d = policy.delay(failures, &mut rng);
                assert!(
                    d <= full && d >= full / 2,
                    "{d:?} outside [{:?}, {full:?}]",
                    full / 2
                );
                seen.insert(d);
            }
        }
        assert!(seen.len() > 100, "jitter varies the delays");
        // Huge failure counts neither overflow nor exceed the cap.
        assert_eq!(exact().delay(u32::MAX, &mut rng), secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn requeue_after_and_an_earlier_rerun() {
        let s = sched();
        let t0 = Instant::now();
        s.schedule_now("a");
        s.next()
            .await
            .unwrap()
            .finish::<String>(Ok(Action::RequeueAfter(secs(30))));
        let job = s.next().await.unwrap();
        assert_eq!(t0.elapsed(), secs(30));
        s.schedule(*job.key(), Instant::now() + secs(5));
        job.finish::<String>(Ok(Action::RequeueAfter(secs(30))));
        s.next().await.unwrap().finish::<String>(Ok(Action::Done));
        assert_eq!(
            t0.elapsed(),
            secs(35),
            "the earlier of rerun and requeue wins"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_job_counts_as_a_failure() {
        let s = sched();
        s.schedule_now("a");
        drop(s.next().await.unwrap());
        let st = s.status_of(&"a").unwrap();
        assert_eq!(
            (st.state, st.consecutive_failures),
            (KeyState::BackingOff, 1)
        );
        assert!(st.last_error.unwrap().contains("without reporting"));
    }

    #[tokio::test(start_paused = true)]
    async fn removed_keys_disappear_even_while_running() {
        let s = sched();
        s.schedule_now("a");
        s.schedule("b", Instant::now() + secs(5));
        let job = s.next().await.unwrap();
        s.schedule_now("a");
        s.remove(&"a");
        s.remove(&"b");
        assert!(s.status().is_empty());
        job.finish::<String>(Ok(Action::Done));
        assert!(next_within_hour(&s).await.is_none());
        assert!(s.status().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn status_reports_times_and_sorts_keys() {
        let s: Scheduler<ReconcileKey> = Scheduler::with_seed(exact(), 1);
        s.schedule(ReconcileKey::Provider("z".into()), Instant::now() + secs(9));
        s.schedule_now(ReconcileKey::Config);
        let job = s.next().await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        job.finish::<String>(Ok(Action::Done));
        let all = s.status();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].key, ReconcileKey::Config);
        assert_eq!(
            (all[0].runs, all[0].last_duration_ms, all[0].state),
            (1, Some(250), KeyState::Idle)
        );
        assert_eq!(
            (all[1].state, all[1].next_run_in_ms),
            (KeyState::Scheduled, Some(8_750))
        );
        let json = serde_json::to_value(&all[1]).unwrap();
        assert_eq!(json["key"], "provider:z");
        assert_eq!(json["state"], "scheduled");
    }

    #[tokio::test(start_paused = true)]
    async fn run_drives_jobs_concurrently_and_drains_on_close() {
        let s: Scheduler<&'static str> = sched();
        let t0 = Instant::now();
        s.schedule_now("slow");
        s.schedule_now("fast");
        s.schedule_now("panics");
        let driver = tokio::spawn({
            let s = s.clone();
            async move {
                s.run(|key| async move {
                    match key {
                        "slow" => tokio::time::sleep(secs(10)).await,
                        "panics" => panic!("reconcile bug"),
                        _ => tokio::time::sleep(secs(1)).await,
                    }
                    Ok::<_, String>(Action::Done)
                })
                .await
            }
        });
        tokio::time::sleep(secs(2)).await;
        assert_eq!(s.status_of(&"fast").unwrap().runs, 1);
        assert_eq!(
            s.status_of(&"fast").unwrap().state,
            KeyState::Idle,
            "fast finished while slow runs"
        );
        assert_eq!(s.running(), 1);
        let panicked = s.status_of(&"panics").unwrap();
        // Failed at 0 s and at its 1 s retry; the next retry is at 3 s.
        assert_eq!(
            panicked.consecutive_failures, 2,
            "a panicking run is recorded as a failure"
        );
        s.close();
        driver.await.unwrap();
        assert_eq!(
            t0.elapsed(),
            secs(10),
            "close waited for the slow run in flight"
        );
        assert_eq!(s.status_of(&"slow").unwrap().state, KeyState::Idle);
        assert!(s.next().await.is_none());
    }
}
