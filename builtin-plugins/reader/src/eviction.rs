//! Bounds of the entity cache: how long exited processes and idle files stay, the hard
//! cap on cached entities, and the memory of what was evicted.
//!
//! Upstream keeps every entity until the next header, so a stream without headers (a
//! long-lived socket, an unrotated trace) grows without bound. Here the cache follows the
//! entities' own lifecycle in *stream time* (the largest event timestamp seen, never the
//! wall clock, so replaying a trace evicts exactly as the live stream did).

use std::collections::VecDeque;

use rustc_hash::FxHashSet;
use sysflow_plugin_api::{PluginConfig, PluginError};

/// Default of `cache.exitgrace`: seconds of stream time an exited process stays resolvable.
pub const DEFAULT_EXIT_GRACE_SECS: u64 = 60;

/// Default of `cache.filemaxage`: seconds of stream time an unowned file stays after its last reference.
pub const DEFAULT_FILE_MAX_AGE_SECS: u64 = 3_600;

/// Default of `cache.maxentities`: hard cap on cached processes, files, containers and pods together.
pub const DEFAULT_MAX_ENTITIES: usize = 262_144;

/// How many evicted ids of each kind are remembered (to tell a reference to an evicted entity from one
/// to a never-seen entity); older ones are forgotten first, and then count as never seen.
pub const MAX_TOMBSTONES: usize = 65_536;

/// How many distinct files one process owns at most; a file it touches beyond that is kept
/// by age alone (`cache.filemaxage`), so a long-lived process cannot pin files without bound.
/// (A kubelet or `ps` reads thousands of `/proc` files the collector sends only once.)
pub const MAX_OWNED_FILES: usize = 4_096;

/// Nanoseconds per second (stream time is in ns, as SysFlow timestamps).
const NS_PER_SEC: i64 = 1_000_000_000;

/// The reader's cache bounds (pipeline keys of the `sysflowreader` block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Stream time (ns) an exited process stays after its exit event (`cache.exitgrace`).
    pub exit_grace_ns: i64,
    /// Stream time (ns) a file no live process owns stays after its last reference (`cache.filemaxage`).
    pub file_max_age_ns: i64,
    /// Most entities cached at once; beyond it the least recently used go (`cache.maxentities`).
    pub max_entities: usize,
}

impl Default for CacheLimits {
    fn default() -> CacheLimits {
        CacheLimits {
            exit_grace_ns: secs_to_ns(DEFAULT_EXIT_GRACE_SECS),
            file_max_age_ns: secs_to_ns(DEFAULT_FILE_MAX_AGE_SECS),
            max_entities: DEFAULT_MAX_ENTITIES,
        }
    }
}

fn secs_to_ns(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(NS_PER_SEC)
}

impl CacheLimits {
    /// Reads `cache.exitgrace`, `cache.filemaxage` (non-negative integer seconds) and
    /// `cache.maxentities` (a positive integer); errors name the key and the value.
    pub fn from_config(config: &PluginConfig) -> Result<CacheLimits, PluginError> {
        let grace: u64 = config.parse_or("cache.exitgrace", DEFAULT_EXIT_GRACE_SECS)?;
        let age: u64 = config.parse_or("cache.filemaxage", DEFAULT_FILE_MAX_AGE_SECS)?;
        let max: usize = config.parse_or("cache.maxentities", DEFAULT_MAX_ENTITIES)?;
        if max == 0 {
            return Err(PluginError::new(
                "key 'cache.maxentities': must be at least 1 (it caps the cached processes, files, containers and pods)",
            ));
        }
        Ok(CacheLimits {
            exit_grace_ns: secs_to_ns(grace),
            file_max_age_ns: secs_to_ns(age),
            max_entities: max,
        })
    }
}

/// Which kind of entity an id names (tombstone keys of different kinds never collide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntityKind {
    /// A process OID.
    Process,
    /// A file FOID.
    File,
    /// A container id.
    Container,
    /// A pod id.
    Pod,
}

/// Fingerprints of recently evicted entities, per kind, oldest forgotten first beyond
/// [`MAX_TOMBSTONES`] per kind (so thousands of exited processes cannot push out the few
/// evicted files).
#[derive(Default)]
pub struct Tombstones {
    kinds: [TombstoneRing; 4],
}

/// The remembered evictions of one kind.
#[derive(Default)]
struct TombstoneRing {
    set: FxHashSet<u64>,
    order: VecDeque<u64>,
}

impl Tombstones {
    /// Remembers that the entity `key` of `kind` was evicted.
    pub fn bury(&mut self, kind: EntityKind, key: u64) {
        let ring = &mut self.kinds[kind as usize];
        if !ring.set.insert(key) {
            return;
        }
        ring.order.push_back(key);
        if ring.order.len() > MAX_TOMBSTONES {
            if let Some(old) = ring.order.pop_front() {
                ring.set.remove(&old);
            }
        }
    }

    /// Whether the entity `key` of `kind` was evicted (and is still remembered).
    pub fn contains(&self, kind: EntityKind, key: u64) -> bool {
        self.kinds[kind as usize].set.contains(&key)
    }

    /// Forgets everything (a header starts a new segment).
    pub fn clear(&mut self) {
        for ring in &mut self.kinds {
            ring.set.clear();
            ring.order.clear();
        }
    }

    /// Number of remembered evictions.
    pub fn len(&self) -> usize {
        self.kinds.iter().map(|r| r.order.len()).sum()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Evictions so far, by cause.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictionStats {
    /// Processes evicted after their exit and the grace window, with no cached child left.
    pub exited_processes: u64,
    /// Files evicted with no owning process left and idle for `cache.filemaxage`.
    pub idle_files: u64,
    /// Entities (of any kind) evicted as least recently used at the `cache.maxentities` cap.
    pub over_cap: u64,
    /// Most entities cached at once.
    pub peak_entities: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_forget_the_oldest_beyond_the_limit() {
        let mut t = Tombstones::default();
        for k in 0..(MAX_TOMBSTONES as u64 + 10) {
            t.bury(EntityKind::Process, k);
        }
        assert_eq!(t.len(), MAX_TOMBSTONES);
        assert!(!t.contains(EntityKind::Process, 0));
        assert!(t.contains(EntityKind::Process, MAX_TOMBSTONES as u64 + 9));
        assert!(!t.contains(EntityKind::File, MAX_TOMBSTONES as u64 + 9));
    }

    #[test]
    fn limits_parse_and_name_bad_keys() {
        let cfg = |k: &str, v: &str| {
            let mut m = serde_json::Map::new();
            m.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            PluginConfig::from_map(m)
        };
        let l = CacheLimits::from_config(&cfg("cache.exitgrace", "5")).unwrap();
        assert_eq!(l.exit_grace_ns, 5_000_000_000);
        assert_eq!(l.max_entities, DEFAULT_MAX_ENTITIES);
        let e = CacheLimits::from_config(&cfg("cache.maxentities", "0")).unwrap_err();
        assert!(e.to_string().contains("cache.maxentities"), "{e}");
        let e = CacheLimits::from_config(&cfg("cache.filemaxage", "-1")).unwrap_err();
        assert!(e.to_string().contains("cache.filemaxage"), "{e}");
    }
}
