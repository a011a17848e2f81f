//! The `flattener` handler: forwards the reader's flat records, optionally rate-limited.
//!
//! Upstream's flattener copies each resolved record into fixed slot arrays; here the reader
//! already produces the final [`FlatRecord`] (shared entity references), so without the
//! filter this handler passes batches through untouched. With `filter.enabled = on` it
//! applies upstream's experimental time-decay filter: at most one record per *semantic
//! hash* is forwarded per TTL window measured from that hash's first sighting.

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

use abi_stable::std_types::RVec;
use sysflow_plugin_api::{ffi::ConfigKey, Counter, Event, FlatRecord, Handler, Host, PluginConfig, PluginError};
use xxhash_rust::xxh64::Xxh64;

use rustc_hash::FxHashMap;

/// Keys of the flattener (they live in the reader's pipeline block).
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new(
        "filter.enabled",
        "rate limiter: on enables it; anything else (default off) disables it",
    ),
    ConfigKey::new(
        "filter.maxage",
        "rate limiter TTL in seconds (default 86400; upstream docs wrongly say minutes)",
    ),
];

/// Default TTL of the rate limiter: 24 hours.
pub const DEFAULT_MAX_AGE_SECS: u64 = 86_400;

/// Upstream's semantic hash of a record: xxHash64 (seed 0) over exe, args, then 8-byte
/// little-endian uid, gid, opflags, tty; NF (and NE) add sip, dip, dport, proto; FF/FE add
/// the file path. Container, pid, source port and timestamps are deliberately left out,
/// so repeats of "the same activity" collapse.
pub fn semantic_hash(r: &FlatRecord) -> u64 {
    let mut h = Xxh64::new(0);
    let le = |v: i64| v.to_le_bytes();
    let (exe, args, uid, gid, tty) = match r.process() {
        Some(p) => (
            p.exe.as_bytes(),
            p.exe_args.as_bytes(),
            p.uid as i64,
            p.gid as i64,
            p.tty as i64,
        ),
        None => (&b""[..], &b""[..], 0, 0, 0),
    };
    h.update(exe);
    h.update(args);
    h.update(&le(uid));
    h.update(&le(gid));
    h.update(&le(r.event.op_flags() as i64));
    h.update(&le(tty));
    match &r.event {
        Event::NetworkFlow(e) => {
            for v in [e.sip, e.dip, e.dport, e.proto] {
                h.update(&le(v as i64));
            }
        }
        Event::Network(e) => {
            for v in [e.sip, e.dip, e.dport, e.proto] {
                h.update(&le(v as i64));
            }
        }
        Event::FileFlow(_) | Event::File(_) => {
            if let Some(f) = r.file() {
                h.update(f.path.as_bytes());
            }
        }
        _ => {}
    }
    h.digest()
}

/// The time-decay filter: a hash table of first sightings, evicted FIFO by first-seen time.
#[derive(Debug)]
pub struct RateLimiter {
    ttl: Duration,
    counts: FxHashMap<u64, u64>,
    order: VecDeque<(Instant, u64)>,
}

impl RateLimiter {
    /// A filter whose entries live `ttl` from their first sighting.
    pub fn new(ttl: Duration) -> RateLimiter {
        RateLimiter {
            ttl,
            counts: FxHashMap::default(),
            order: VecDeque::new(),
        }
    }

    /// Evicts expired entries, then returns true (forward) for a hash not seen within the
    /// TTL, false (drop) for a repeat.
    pub fn admit(&mut self, hash: u64, now: Instant) -> bool {
        while let Some(&(first_seen, old)) = self.order.front() {
            if now.saturating_duration_since(first_seen) < self.ttl {
                break;
            }
            self.order.pop_front();
            self.counts.remove(&old);
        }
        match self.counts.get_mut(&hash) {
            Some(count) => {
                *count += 1;
                false
            }
            None => {
                self.counts.insert(hash, 1);
                self.order.push_back((now, hash));
                true
            }
        }
    }

    /// Number of hashes currently remembered.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// The `flattener` handler.
pub struct Flattener {
    limiter: Option<RateLimiter>,
    records_in: u64,
    rate_limited: u64,
}

impl Flattener {
    /// A flattener with the rate limiter enabled for `ttl`, or disabled (`None`).
    pub fn with_filter(ttl: Option<Duration>) -> Flattener {
        Flattener {
            limiter: ttl.map(RateLimiter::new),
            records_in: 0,
            rate_limited: 0,
        }
    }

    /// Applies the filter (if enabled) as of `now`, keeping records in order.
    pub fn handle_at(&mut self, mut records: RVec<FlatRecord>, now: Instant) -> RVec<FlatRecord> {
        self.records_in += records.len() as u64;
        if let Some(limiter) = &mut self.limiter {
            let before = records.len();
            records.retain(|r| matches!(r.event, Event::K8s(_)) || limiter.admit(semantic_hash(r), now));
            self.rate_limited += (before - records.len()) as u64;
        }
        records
    }

    /// Records dropped by the rate limiter so far.
    pub fn rate_limited(&self) -> u64 {
        self.rate_limited
    }
}

impl Handler for Flattener {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let enabled = match config.str("filter.enabled")? {
            Some("on") => true,
            None | Some("off") => false,
            Some(other) => {
                host.warn(&format!(
                    "key 'filter.enabled': value '{other}' is neither on nor off; filter disabled"
                ));
                false
            }
        };
        let max_age: u64 = config.parse_or("filter.maxage", DEFAULT_MAX_AGE_SECS)?;
        Ok(Flattener::with_filter(enabled.then(|| Duration::from_secs(max_age))))
    }

    fn handle(&mut self, records: RVec<FlatRecord>) -> Result<Option<RVec<FlatRecord>>, PluginError> {
        if self.limiter.is_none() {
            self.records_in += records.len() as u64;
            return Ok(Some(records));
        }
        let out = self.handle_at(records, Instant::now());
        Ok(if out.is_empty() { None } else { Some(out) })
    }

    fn counters(&self) -> Vec<Counter> {
        vec![
            Counter::new("records_in", self.records_in),
            Counter::new("rate_limited", self.rate_limited),
            Counter::new("filter_entries", self.limiter.as_ref().map_or(0, |l| l.len() as u64)),
        ]
    }
}
