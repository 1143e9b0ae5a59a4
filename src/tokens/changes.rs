//! Following the other replicas' writes. Every write of a token is appended to the database's
//! change feed (`store/changes.rs`) in its own transaction; each broker polls the feed every
//! `tokens.change_poll_ms` and drops its cached copies of the tokens named there, so a save,
//! refresh, revoke, delete or re-login on one replica shows on the others within about that
//! interval instead of the cache's time to live. The time to live then only bounds staleness
//! while the feed cannot be read.
//!
//! Numbers are handed out when a change is inserted, so for a moment a later number can be
//! visible before an earlier one commits: the poll reads everything after the highest number
//! below which it has seen every change, skips the ones it applied already, and steps over a
//! hole that stays open for a second (a failed insert leaves one for good).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use super::TokenService;
use crate::store::{ChangeRow, CHANGES_PER_POLL};

/// How long a hole in the numbers is waited for before it is stepped over.
const HOLE_PATIENCE: Duration = Duration::from_secs(1);

/// Changes are kept this long (a replica that cannot read the feed for longer relies on the
/// cache's time to live).
const KEEP_CHANGES_MS: i64 = 3_600_000;

/// Where a broker is in the feed.
#[derive(Debug, Default)]
pub(crate) struct FeedPosition {
    /// Every change up to this one has been applied.
    watermark: i64,
    /// Changes after the watermark already applied.
    applied: BTreeSet<i64>,
    /// Since when the oldest hole after the watermark is open.
    hole_since: Option<Instant>,
}

impl FeedPosition {
    pub(crate) fn at(seq: i64) -> Self {
        Self {
            watermark: seq,
            ..Self::default()
        }
    }

    pub(crate) fn watermark(&self) -> i64 {
        self.watermark
    }

    /// Takes in a poll's rows; returns the ones not applied before.
    pub(crate) fn take(&mut self, rows: Vec<ChangeRow>, now: Instant) -> Vec<ChangeRow> {
        let fresh: Vec<ChangeRow> = rows
            .into_iter()
            .filter(|r| r.seq > self.watermark && self.applied.insert(r.seq))
            .collect();
        self.advance(now);
        fresh
    }

    fn advance(&mut self, now: Instant) {
        loop {
            while self.applied.remove(&(self.watermark + 1)) {
                self.watermark += 1;
            }
            let Some(&next) = self.applied.first() else {
                self.hole_since = None;
                return;
            };
            let since = *self.hole_since.get_or_insert(now);
            if now.duration_since(since) < HOLE_PATIENCE {
                return;
            }
            // The hole never filled: step over it to the next applied change.
            self.watermark = next - 1;
            self.hole_since = None;
        }
    }
}

impl TokenService {
    /// Polls the change feed every `every`, dropping cached copies of tokens written elsewhere.
    /// `None` when this broker keeps no cache (nothing to drop).
    pub fn spawn_change_feed(&self, every: Duration) -> Option<JoinHandle<()>> {
        self.cache.as_ref()?;
        let tokens = self.clone();
        Some(tokio::spawn(async move {
            let mut position = loop {
                match tokens.store.latest_change().await {
                    Ok(seq) => break FeedPosition::at(seq),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the change feed yet; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let started = Instant::now();
                match tokens.store.changes_since(position.watermark()).await {
                    Ok(rows) => {
                        failing = false;
                        // A full page means more to read: not caught up yet.
                        let caught_up = (rows.len() as i64) < CHANGES_PER_POLL;
                        for change in position.take(rows, Instant::now()) {
                            match change.token_id {
                                Some(id) => tokens.forget(&id),
                                None => tokens.forget_all(),
                            }
                        }
                        if caught_up {
                            tokens.mark_fed(started);
                        }
                    }
                    // Logged once per outage, not every poll.
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "cannot read the change feed; other replicas' writes show when cached copies expire");
                    }
                    Err(_) => {}
                }
            }
        }))
    }

    /// Deletes changes older than an hour.
    pub async fn purge_changes(&self) {
        let before = self.now_ms() - KEEP_CHANGES_MS;
        if let Err(e) = self.store.purge_changes(before).await {
            tracing::warn!(error = %e, "could not delete old token changes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seqs: &[i64]) -> Vec<ChangeRow> {
        seqs.iter()
            .map(|&seq| ChangeRow {
                seq,
                token_id: Some(format!("t{seq}")),
            })
            .collect()
    }

    #[test]
    fn each_change_is_applied_once_and_holes_are_waited_for_then_stepped_over() {
        let start = Instant::now();
        let mut p = FeedPosition::at(10);
        assert_eq!(p.take(rows(&[11, 12]), start).len(), 2);
        assert_eq!(p.watermark(), 12);
        // 14 is visible before 13 commits: 14 is applied, the watermark waits at 12.
        assert_eq!(p.take(rows(&[14]), start).len(), 1);
        assert_eq!(p.watermark(), 12);
        // Read again (the poll starts at the watermark): 14 is not applied twice; 13 is new.
        let fresh = p.take(rows(&[13, 14, 15]), start);
        assert_eq!(fresh.iter().map(|r| r.seq).collect::<Vec<_>>(), [13, 15]);
        assert_eq!(p.watermark(), 15);
        // 16 never comes (a failed insert): after a second it is stepped over.
        p.take(rows(&[17]), start);
        assert_eq!(p.watermark(), 15);
        p.take(vec![], start + Duration::from_millis(500));
        assert_eq!(p.watermark(), 15);
        p.take(vec![], start + Duration::from_millis(1600));
        assert_eq!(p.watermark(), 17);
        // Old numbers are ignored.
        assert!(p.take(rows(&[3, 17]), start).is_empty());
    }
}
