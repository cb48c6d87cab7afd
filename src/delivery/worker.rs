//! The delivery worker: claims due deliveries with a lease (committed before any network call),
//! sends each signed attempt, and records the outcome in a second short transaction.
//!
//! Isolation: at most `max_in_flight_per_destination` attempts per destination and
//! `max_in_flight` overall, claimed destination by destination so a slow or dead receiver only
//! ever holds its own slots.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::metrics::Metrics;
use super::sender::{SendResult, Sender};
use super::signature;
use crate::api::wire;
use crate::clock::SharedClock;
use crate::config::DeliveryConfig;
use crate::domain::delivery::{AttemptOutcome, DeliveryAttempt};
use crate::domain::destination::Target;
use crate::domain::event::Event;
use crate::domain::event::Family;
use crate::domain::retry::RetrySchedule;
use crate::store::{Allot, ClaimedDelivery, Store, StoreError};

/// How often due deliveries of disabled or deleted destinations are cancelled.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// The longest the worker sleeps without looking for due work (a polling fallback).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long shutdown waits for the outcomes of attempts it cut off to be written.
const RECORD_GRACE: Duration = Duration::from_secs(5);
/// The most attempt outcomes written in one store call.
const MAX_RECORD_BATCH: usize = 256;
/// With at least this many attempts in flight the worker is busy: rather than claim the few slots
/// each answer frees (a claim round per couple of deliveries, each a transaction and an fsync),
/// it lets claim rounds start at most every `BUSY_ROUND_GAP`, so each claims what a few
/// milliseconds of answers freed. An idle worker claims at once (no added latency).
const BUSY_IN_FLIGHT: usize = 32;
const BUSY_ROUND_GAP: Duration = Duration::from_millis(2);

/// An outcome waiting to be written, and who waits for the write.
type Outcome = (DeliveryAttempt, oneshot::Sender<Result<(), StoreError>>);

#[derive(Default)]
struct InFlight {
    per_destination: HashMap<String, usize>,
    leased: HashSet<String>,
}

struct Shared {
    store: Store,
    sender: Sender,
    schedule: RetrySchedule,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    in_flight: Mutex<InFlight>,
    slot_freed: Notify,
    /// Claim rounds so far (rotates where a round starts).
    rounds: AtomicUsize,
    /// Outcomes to the recorder, which writes them in batches.
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// Turns true when shutdown stops waiting for attempts in flight.
    cut_off: watch::Sender<bool>,
}

pub struct Worker {
    shared: Arc<Shared>,
    config: DeliveryConfig,
}

impl Worker {
    pub fn new(
        store: Store,
        config: DeliveryConfig,
        clock: SharedClock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        tokio::spawn(record_outcomes(store.clone(), outcomes_rx));
        let shared = Shared {
            sender: Sender::new(&config)?,
            schedule: config.schedule(),
            store,
            clock,
            metrics,
            in_flight: Mutex::default(),
            slot_freed: Notify::new(),
            rounds: AtomicUsize::new(0),
            outcomes,
            cut_off: watch::Sender::new(false),
        };
        Ok(Worker {
            shared: Arc::new(shared),
            config,
        })
    }

    /// Runs until `shutdown` turns true, then lets attempts in flight finish for the grace period
    /// and cuts off the rest (see `drain`).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let s = &self.shared;
        let mut last_sweep: Option<tokio::time::Instant> = None;
        let mut failures = 0u32;
        let mut round_started = tokio::time::Instant::now();
        while !*shutdown.borrow() {
            if lock(&s.in_flight).leased.len() >= BUSY_IN_FLIGHT {
                tokio::select! {
                    _ = tokio::time::sleep_until(round_started + BUSY_ROUND_GAP) => {}
                    _ = shutdown.changed() => continue,
                }
            }
            round_started = tokio::time::Instant::now();
            if last_sweep.is_none_or(|t| t.elapsed() >= SWEEP_EVERY) {
                if let Err(e) = s.store.cancel_inactive_due().await {
                    tracing::debug!(error = %e, "cancel sweep failed");
                }
                last_sweep = Some(tokio::time::Instant::now());
            }
            s.metrics.claim_rounds.fetch_add(1, Relaxed);
            let (claimed, wait) = match self.claim_round().await {
                Ok(r) => {
                    failures = 0;
                    s.metrics.last_claim_ok_ms.store(s.clock.now_ms(), Relaxed);
                    r
                }
                Err(e) => {
                    failures += 1;
                    s.metrics.claim_errors.fetch_add(1, Relaxed);
                    if failures == 1 || failures.is_multiple_of(60) {
                        tracing::warn!(error = %e, failures, "cannot claim deliveries; retrying");
                    }
                    let backoff = Duration::from_millis(200 * u64::from(failures.min(25)));
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    continue;
                }
            };
            for (delivery, body) in claimed {
                tokio::spawn(attempt(self.shared.clone(), delivery, body));
            }
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = s.store.new_work() => {}
                _ = s.slot_freed.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        self.drain().await;
    }

    /// Claims for every deliverable destination as many deliveries as it has free slots (one
    /// store call), and renders each event once for all the destinations that receive it.
    async fn claim_round(&self) -> Result<(Vec<(ClaimedDelivery, Bytes)>, Duration), StoreError> {
        let s = &self.shared;
        if lock(&s.in_flight).leased.len() >= self.config.max_in_flight {
            return Ok((Vec::new(), POLL_EVERY)); // a freed slot wakes the loop
        }
        let shared = self.shared.clone();
        let (limit, per_destination) = (
            self.config.max_in_flight,
            self.config.max_in_flight_per_destination,
        );
        let allot: Allot = Box::new(move |mut destinations: Vec<String>| {
            // Start each round at another destination, so that when the global limit binds
            // every destination with due work gets slots in turn.
            if !destinations.is_empty() {
                let start = shared.rounds.fetch_add(1, Relaxed) % destinations.len();
                destinations.rotate_left(start);
            }
            let in_flight = lock(&shared.in_flight);
            let mut free_total = limit.saturating_sub(in_flight.leased.len());
            let mut wants = Vec::new();
            for id in destinations {
                let busy = in_flight.per_destination.get(&id).copied().unwrap_or(0);
                let free = per_destination.saturating_sub(busy).min(free_total);
                if free > 0 {
                    free_total -= free;
                    wants.push((id, free));
                }
            }
            wants
        });
        let lease_ms = self.config.lease().as_millis() as i64;
        let round = s.store.claim_due(allot, lease_ms).await?;
        {
            let mut in_flight = lock(&s.in_flight);
            for d in &round.claimed {
                *in_flight
                    .per_destination
                    .entry(d.destination.id.clone())
                    .or_default() += 1;
                in_flight.leased.insert(d.delivery_id.clone());
            }
            s.metrics
                .in_flight
                .store(in_flight.leased.len() as i64, Relaxed);
        }
        let full = !round.claimed.is_empty() && round.claimed.len() == round.wanted;
        let wait = match (full, round.next_due_ms) {
            (true, _) => Duration::ZERO, // there may be more due right now
            (false, Some(due)) => {
                let ms = (due - s.clock.now_ms()).clamp(0, POLL_EVERY.as_millis() as i64);
                Duration::from_millis(ms as u64)
            }
            (false, None) => POLL_EVERY,
        };
        Ok((with_bodies(round.claimed), wait))
    }

    /// Waits up to the grace period for attempts in flight. Those still running are then cut
    /// off: each is recorded as a failed attempt and retried on schedule, so the log shows it and
    /// no other worker re-sends it at once while its receiver may still be working on it. (A
    /// lease is never handed back early: the lease covers the longest attempt.)
    async fn drain(&self) {
        let s = &self.shared;
        if !self.wait_idle(self.config.shutdown_grace).await {
            let left = lock(&s.in_flight).leased.len();
            tracing::info!(count = left, "cutting off attempts still in flight");
            s.cut_off.send_replace(true);
            if !self.wait_idle(RECORD_GRACE).await {
                tracing::warn!("outcomes not written in time; their leases will expire");
            }
        }
    }

    /// Whether every held delivery is done within `limit`.
    async fn wait_idle(&self, limit: Duration) -> bool {
        let s = &self.shared;
        let deadline = tokio::time::Instant::now() + limit;
        while !lock(&s.in_flight).leased.is_empty() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), s.slot_freed.notified()).await;
        }
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Pairs each claim with its body, rendering each event once per body shape (the thin
/// notification, or the v1 event of one API version; as its own account or a connected one sees
/// it) however many destinations receive it.
fn with_bodies(claimed: Vec<ClaimedDelivery>) -> Vec<(ClaimedDelivery, Bytes)> {
    type Shape = (*const Event, Option<String>, bool);
    let mut rendered: HashMap<Shape, Bytes> = HashMap::new();
    claimed
        .into_iter()
        .map(|d| {
            let version = match d.event.family {
                Family::Thin => None,
                Family::Snapshot => d.destination.snapshot_api_version.clone(),
            };
            let own = d.destination.account_id == d.event.account_id;
            let body = rendered
                .entry((Arc::as_ptr(&d.event), version, own))
                .or_insert_with(|| Bytes::from(render_body(&d)))
                .clone();
            (d, body)
        })
        .collect()
}

/// The exact bytes a destination receives for an event.
pub fn render_body(delivery: &ClaimedDelivery) -> Vec<u8> {
    let (event, destination) = (&delivery.event, &delivery.destination);
    let context = event.context_for_owner(&destination.account_id);
    let value = match event.family {
        Family::Thin => wire::event_notification(event, context),
        Family::Snapshot => {
            wire::v1_event(event, destination.snapshot_api_version.as_deref(), context)
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// One attempt: sign, send, record. Never holds a transaction across the network call.
async fn attempt(s: Arc<Shared>, delivery: ClaimedDelivery, body: Bytes) {
    let Target::WebhookEndpoint {
        url,
        signing_secret,
    } = &delivery.destination.target
    else {
        sent(&s, &delivery);
        return recorded(&s, &delivery);
    };
    let started = s.clock.now_ms();
    let header = signature::header(&[signing_secret.as_str()], started.div_euclid(1000), &body);
    let mut cut_off = s.cut_off.subscribe();
    let result = tokio::select! {
        result = s.sender.post(url, &header, body) => result,
        _ = cut_off.wait_for(|cut| *cut) => SendResult::cut_off(),
    };
    // The receiver is done with this attempt: its slot is free while the outcome is written
    // (the delivery stays leased, and counts against the global limit, until then).
    sent(&s, &delivery);
    let now = s.clock.now_ms();
    let number = delivery.previous_attempts + 1;
    let succeeded = result.succeeded();
    let next_attempt_ms = if succeeded {
        None
    } else {
        let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
        s.schedule
            .next_delay(delivery.event.mode, number, jitter, result.retry_after)
            .map(|d| now + d.as_millis() as i64)
    };
    s.metrics.observe_latency(now - started);
    if succeeded {
        s.metrics.attempts_succeeded.fetch_add(1, Relaxed);
    } else {
        s.metrics.attempts_failed.fetch_add(1, Relaxed);
        if next_attempt_ms.is_none() {
            s.metrics.deliveries_failed.fetch_add(1, Relaxed);
        }
    }
    let record = DeliveryAttempt {
        delivery_id: delivery.delivery_id.clone(),
        event_id: delivery.event.id.clone(),
        destination_id: delivery.destination.id.clone(),
        attempt: number,
        started_ms: started,
        latency_ms: now - started,
        outcome: if succeeded {
            AttemptOutcome::Succeeded
        } else {
            AttemptOutcome::Failed
        },
        http_status: result.status,
        error: result.error,
        response_body: result.response_prefix,
        next_attempt_ms,
        next_attempt_canceled: false,
    };
    let (done, write) = oneshot::channel();
    let written = match s.outcomes.send((record, done)) {
        Ok(()) => write.await.unwrap_or(Err(StoreError::Closed)),
        Err(_) => Err(StoreError::Closed),
    };
    if let Err(e) = written {
        // The lease expires and the delivery is attempted again: at least once, never lost.
        tracing::warn!(error = %e, delivery = %delivery.delivery_id, "could not record an attempt");
    }
    recorded(&s, &delivery);
}

/// Writes outcomes as they come, all those waiting in one store call (one transaction), so a
/// busy worker pays one commit per batch rather than per attempt. Ends when the worker is gone.
async fn record_outcomes(store: Store, mut rx: mpsc::UnboundedReceiver<Outcome>) {
    let mut batch = Vec::with_capacity(MAX_RECORD_BATCH);
    while rx.recv_many(&mut batch, MAX_RECORD_BATCH).await > 0 {
        let (attempts, waiting): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        let result = store.record_attempts(attempts).await;
        for done in waiting {
            let _ = done.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::Commit(e.to_string())),
            });
        }
    }
}

/// The attempt's request is over: frees its slot of the destination.
fn sent(s: &Shared, delivery: &ClaimedDelivery) {
    let mut in_flight = lock(&s.in_flight);
    if let Some(n) = in_flight.per_destination.get_mut(&delivery.destination.id) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            in_flight.per_destination.remove(&delivery.destination.id);
        }
    }
    drop(in_flight);
    s.slot_freed.notify_one();
}

/// The attempt's outcome is written (or given up on): the delivery is no longer held.
fn recorded(s: &Shared, delivery: &ClaimedDelivery) {
    let mut in_flight = lock(&s.in_flight);
    in_flight.leased.remove(&delivery.delivery_id);
    s.metrics
        .in_flight
        .store(in_flight.leased.len() as i64, Relaxed);
    drop(in_flight);
    s.slot_freed.notify_one();
}
