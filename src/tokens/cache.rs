//! Decrypted tokens in memory for the access-token hot path.
//!
//! While the change feed is being read (`changes.rs` calls [`AccessCache::mark_fed`] after
//! each poll), every write made through any replica drops the copies it touches within a poll
//! interval, so a copy stays good for as long as it is in memory: it is neither re-checked nor
//! expired by age, and a million tokens read at random stay cached however seldom each comes
//! round. The time to live below only applies once the feed has not been read for a time to
//! live, and so bounds how stale a copy can be while the feed is down.
//!
//! Without the feed, an entry lives for about the configured time to live (jittered, so
//! entries filled together do not expire together). Past half of it, the next read is still answered from memory and queues
//! the token for a re-check; queued tokens are checked in batches, one query for many tokens,
//! and only the row's `version` is read: an unchanged token gets a new lease of life, a changed
//! one is read again whole. A token in steady use is never waited on, the database sees a few
//! small queries a second rather than one per token, and no copy is older than the time to
//! live (how long a change made through another replica can go unseen here).
//!
//! Local writes drop the entry. A database read that started before a local write of the same
//! token may not fill the cache after it: writes are numbered, and a fill carries the number its
//! read started under.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::domain::Token;

/// What the cache holds for a token id.
pub enum Lookup {
    /// In memory: use it.
    Hit(Arc<Token>),
    /// In memory, and this read queued the first re-read since the last batch: use it, and
    /// schedule [`AccessCache::take_reloads`].
    HitStartingBatch(Arc<Token>),
    /// Not in memory: read the row.
    Missing,
}

struct Entry {
    token: Arc<Token>,
    /// The row's `version` the copy was read at, when known.
    version: Option<i64>,
    reload_at: Instant,
    expires_at: Instant,
    reloading: AtomicBool,
}

pub struct AccessCache {
    entries: quick_cache::sync::Cache<String, Arc<Entry>>,
    ttl: Duration,
    /// Number of the last local write.
    writes: AtomicU64,
    /// The number of each token's last local write (only the most recent many are kept: a read
    /// never outlasts that many writes).
    written: quick_cache::sync::Cache<String, u64>,
    /// The number of the last write of every token (delete_tokens).
    all_written: AtomicU64,
    /// Held while checking write numbers and inserting, and while numbering a write and
    /// dropping its entry, so a fill can never land between the two.
    fill_or_forget: Mutex<()>,
    /// Tokens queued for a re-read.
    reloads: Mutex<Vec<String>>,
    /// When the cache was made: instants below are stored as milliseconds since.
    born: Instant,
    /// When the last good read of the change feed started, in ms since `born` plus one (0:
    /// never). Every change committed before then has been applied.
    fed_at: AtomicU64,
}

impl AccessCache {
    /// A cache of at most `capacity` tokens (the least used go first when there are more).
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(capacity),
            ttl,
            writes: AtomicU64::new(0),
            written: quick_cache::sync::Cache::new(capacity),
            all_written: AtomicU64::new(0),
            fill_or_forget: Mutex::new(()),
            reloads: Mutex::new(Vec::new()),
            born: Instant::now(),
            fed_at: AtomicU64::new(0),
        }
    }

    /// Records a good read of the change feed that started at `started`.
    pub fn mark_fed(&self, started: Instant) {
        let ms = started.saturating_duration_since(self.born).as_millis() as u64 + 1;
        self.fed_at.fetch_max(ms, Ordering::AcqRel);
    }

    /// Whether the change feed was read within the time to live: copies then need no re-check.
    fn fed(&self, now: Instant) -> bool {
        match self.fed_at.load(Ordering::Acquire) {
            0 => false,
            at => self.born + Duration::from_millis(at - 1) + self.ttl > now,
        }
    }

    pub fn lookup(&self, id: &str) -> Lookup {
        let Some(entry) = self.entries.get(id) else {
            return Lookup::Missing;
        };
        let now = Instant::now();
        if self.fed(now) {
            return Lookup::Hit(entry.token.clone());
        }
        if now >= entry.expires_at {
            self.entries.remove(id);
            return Lookup::Missing;
        }
        if now < entry.reload_at || entry.reloading.swap(true, Ordering::AcqRel) {
            return Lookup::Hit(entry.token.clone());
        }
        let mut reloads = self.reloads.lock().expect("reload queue poisoned");
        reloads.push(id.to_owned());
        if reloads.len() == 1 {
            Lookup::HitStartingBatch(entry.token.clone())
        } else {
            Lookup::Hit(entry.token.clone())
        }
    }

    /// The cached copy, if any, without queueing a re-read.
    pub fn peek(&self, id: &str) -> Option<Arc<Token>> {
        let now = Instant::now();
        self.entries
            .get(id)
            .filter(|e| self.fed(now) || now < e.expires_at)
            .map(|e| e.token.clone())
    }

    /// The tokens queued for a re-read since the last call.
    pub fn take_reloads(&self) -> Vec<String> {
        std::mem::take(&mut *self.reloads.lock().expect("reload queue poisoned"))
    }

    /// The write number a database read starts under; pass it to [`fill`](Self::fill).
    pub fn generation(&self) -> u64 {
        self.writes.load(Ordering::Acquire)
    }

    /// Caches `token` (its row at `version`, when known) as read under `generation`, unless it
    /// was written locally since.
    pub fn fill(&self, token: Arc<Token>, version: Option<i64>, generation: u64) {
        let _guard = self.fill_or_forget.lock().expect("cache lock poisoned");
        let id = token.id.as_str();
        let written_since = self.all_written.load(Ordering::Acquire) > generation
            || self.written.get(id).is_some_and(|at| at > generation);
        if written_since {
            self.entries.remove(id);
            return;
        }
        let ttl = self.ttl.mul_f64(rand::thread_rng().gen_range(0.75..=1.0));
        let now = Instant::now();
        let entry = Entry {
            reload_at: now + ttl / 2,
            expires_at: now + ttl,
            token: token.clone(),
            version,
            reloading: AtomicBool::new(false),
        };
        self.entries.insert(token.id.to_string(), Arc::new(entry));
    }

    /// Keeps the cached copy for another time to live if the row is still at the version it was
    /// read at (checked under `generation`). False when the token has to be read again.
    pub fn renew(&self, id: &str, version: i64, generation: u64) -> bool {
        match self.entries.get(id) {
            Some(entry) if entry.version == Some(version) => {
                self.fill(entry.token.clone(), entry.version, generation);
                true
            }
            _ => false,
        }
    }

    /// Drops the entry of a token that is gone from the database.
    pub fn drop_entry(&self, id: &str) {
        self.entries.remove(id);
    }

    /// Drops a token's entry around a local write (call before and after writing it).
    pub fn forget(&self, id: &str) {
        let _guard = self.fill_or_forget.lock().expect("cache lock poisoned");
        let number = self.writes.fetch_add(1, Ordering::AcqRel) + 1;
        self.written.insert(id.to_owned(), number);
        self.entries.remove(id);
    }

    pub fn forget_all(&self) {
        let _guard = self.fill_or_forget.lock().expect("cache lock poisoned");
        let number = self.writes.fetch_add(1, Ordering::AcqRel) + 1;
        self.all_written.store(number, Ordering::Release);
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ProviderKey, TokenId, TokenStatus};

    fn token(id: &str) -> Arc<Token> {
        Arc::new(Token {
            id: TokenId::parse(id).unwrap(),
            tenant: None,
            provider: ProviderKey::parse("zoho-us").unwrap(),
            user_name: None,
            client_id: None,
            client_secret: None,
            refresh_token: None,
            access_token: None,
            grant_token: None,
            expiry_time: None,
            granted_lifetime_ms: None,
            redirect_url: None,
            api_domain: None,
            status: TokenStatus::Active,
            identity: None,
            scopes: None,
            created_at: 0,
            updated_at: 0,
        })
    }

    #[test]
    fn a_read_from_before_a_write_does_not_fill_the_cache() {
        let cache = AccessCache::new(Duration::from_secs(60), 100_000);
        let before = cache.generation();
        cache.forget("a");
        cache.fill(token("a"), None, before);
        assert!(matches!(cache.lookup("a"), Lookup::Missing));
        // Writes of other tokens do not hold this one back.
        let before = cache.generation();
        cache.forget("b");
        cache.fill(token("a"), None, before);
        assert!(matches!(cache.lookup("a"), Lookup::Hit(_)));
        // delete_tokens holds back every read from before it.
        let before = cache.generation();
        cache.forget_all();
        cache.fill(token("c"), None, before);
        assert!(matches!(cache.lookup("c"), Lookup::Missing));
    }

    #[test]
    fn past_half_its_life_one_reader_queues_a_reload_and_the_rest_are_served() {
        let cache = AccessCache::new(Duration::from_millis(40), 100_000);
        cache.fill(token("a"), None, cache.generation());
        cache.fill(token("b"), None, cache.generation());
        assert!(matches!(cache.lookup("a"), Lookup::Hit(_)));
        std::thread::sleep(Duration::from_millis(21));
        assert!(matches!(cache.lookup("a"), Lookup::HitStartingBatch(_)));
        assert!(matches!(cache.lookup("a"), Lookup::Hit(_)));
        assert!(
            matches!(cache.lookup("b"), Lookup::Hit(_)),
            "joins the batch"
        );
        assert_eq!(cache.take_reloads(), ["a", "b"]);
        cache.fill(token("a"), None, cache.generation());
        assert!(matches!(cache.lookup("a"), Lookup::Hit(_)));
        std::thread::sleep(Duration::from_millis(45));
        assert!(
            matches!(cache.lookup("a"), Lookup::Missing),
            "gone after its ttl"
        );
    }

    #[test]
    fn while_the_change_feed_is_read_copies_outlive_the_ttl_and_after_it_stops_they_expire() {
        let cache = AccessCache::new(Duration::from_millis(100), 100_000);
        cache.fill(token("a"), None, cache.generation());
        cache.mark_fed(Instant::now());
        std::thread::sleep(Duration::from_millis(60));
        cache.mark_fed(Instant::now());
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            matches!(cache.lookup("a"), Lookup::Hit(_)),
            "past its ttl, no re-check queued"
        );
        assert!(cache.take_reloads().is_empty());
        assert!(cache.peek("a").is_some());
        // The feed stops: a time to live after its last read, the copy is gone.
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(cache.lookup("a"), Lookup::Missing));
    }

    #[test]
    fn a_recheck_keeps_an_unchanged_copy_and_refuses_a_changed_one() {
        // Lives 750–1000 ms (jittered); the sleeps leave 150 ms or more of slack either side.
        let cache = AccessCache::new(Duration::from_millis(1000), 100_000);
        cache.fill(token("a"), Some(7), cache.generation());
        cache.fill(token("b"), None, cache.generation());
        std::thread::sleep(Duration::from_millis(600));
        assert!(cache.renew("a", 7, cache.generation()), "same version");
        assert!(!cache.renew("a", 8, cache.generation()), "changed since");
        assert!(
            !cache.renew("b", 7, cache.generation()),
            "version never known"
        );
        assert!(!cache.renew("c", 7, cache.generation()), "not cached");
        // Renewed: alive past the first time to live.
        std::thread::sleep(Duration::from_millis(500));
        assert!(!matches!(cache.lookup("a"), Lookup::Missing));
        // A local write since the check began wins over the renewal.
        let before = cache.generation();
        cache.forget("a");
        cache.renew("a", 7, before);
        assert!(matches!(cache.lookup("a"), Lookup::Missing));
    }
}
