//! Proactive refresh: tokens that callers use are refreshed shortly before they expire, a few at a
//! time, through the same single-flight path as callers (so replicas never double-refresh).

use std::time::Duration;

use futures::StreamExt;
use tokio::task::JoinHandle;

use super::OAuthService;
use crate::config::BackgroundRefreshSettings;

/// How many due tokens one pass looks at.
const BATCH: i64 = 200;

/// Starts the refresher; `None` when it is switched off. Abort the handle to stop it.
pub fn spawn(engine: OAuthService, settings: &BackgroundRefreshSettings) -> Option<JoinHandle<()>> {
    if !settings.enabled {
        tracing::info!("background refresh is off");
        return None;
    }
    let settings = settings.clone();
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(settings.interval_secs.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A wave of tokens expiring together is drained pass after pass (each at most
            // `concurrency` refreshes at once) rather than a batch per tick; a pass that mostly
            // failed waits for the next tick, so a provider that is down is not hammered.
            loop {
                let pass = run_pass(&engine, &settings).await;
                if pass.due < BATCH as usize || pass.refreshed * 2 < pass.due {
                    break;
                }
            }
        }
    }))
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    /// Tokens found due (at most a batch).
    pub due: usize,
    pub refreshed: usize,
}

/// Writes the hot path's use marks every few seconds (always on: the background refresher, here
/// or in another replica, relies on them), and now and then forgets refresh budgets whose window
/// is over and connect sessions long expired. Abort the handle to stop it.
pub fn spawn_use_marks(engine: OAuthService) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(USE_MARKS_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for n in 0u64.. {
            tick.tick().await;
            engine.tokens().write_use_marks().await;
            if n % PURGE_BUDGETS_EVERY_TICKS == PURGE_BUDGETS_EVERY_TICKS - 1 {
                engine.purge_refresh_budgets().await;
                engine.tokens().purge_changes().await;
                match engine.tokens().sweep_sessions().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(sessions = n, "forgot expired connect sessions"),
                    Err(e) => {
                        tracing::warn!(error = %e, "could not sweep expired connect sessions")
                    }
                }
            }
        }
    })
}

/// How often use marks are written.
const USE_MARKS_EVERY: Duration = Duration::from_secs(5);

/// Budgets are purged every this many use-mark ticks (5 minutes).
const PURGE_BUDGETS_EVERY_TICKS: u64 = 60;

/// One pass: refresh every due token (a batch at most, the soonest to expire first).
pub async fn run_pass(engine: &OAuthService, settings: &BackgroundRefreshSettings) -> Pass {
    let now = engine.now_ms();
    let ahead_ms = (settings.ahead_secs * 1000) as i64;
    // Marks not written yet would hide tokens that are in use.
    engine.tokens().write_use_marks().await;
    let due = match engine
        .tokens()
        .refresh_due(
            now + ahead_ms,
            now - (settings.used_within_secs * 1000) as i64,
            BATCH,
        )
        .await
    {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "background refresh could not list due tokens");
            return Pass::default();
        }
    };
    let count = due.len();
    let refreshed = futures::stream::iter(due)
        .map(|d| async move {
            let d = match d {
                Ok(d) => d,
                Err(e) => {
                    // A corrupt row is skipped, loudly: never refreshed as "no tenant".
                    tracing::error!(error = %e, "background refresh skipped a token it cannot read");
                    return false;
                }
            };
            match engine.refresh(&d.tenancy, &d.id, ahead_ms, false).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(token_id = %d.id, error = %e, "background refresh failed");
                    false
                }
            }
        })
        .buffer_unordered(settings.concurrency.max(1))
        .filter(|ok| std::future::ready(*ok))
        .count()
        .await;
    Pass {
        due: count,
        refreshed,
    }
}
