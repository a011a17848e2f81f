//! The `sysflowreader` processor: SysFlow records in, resolved flat records out.
//!
//! Entity records feed the [`EntityCache`]; every PE, NF, FF, FE, NE and KE record becomes
//! one [`FlatRecord`] carrying shared references to the header current before it, its
//! process ancestry, container, pod and file(s). Records whose entities are missing are
//! still forwarded with what resolved (upstream does the same), and each miss is counted:
//! as `missing_*` when the entity was never seen in the segment, as `evicted_*` when the
//! bounded cache had let it go (see [`crate::eviction`] for the `cache.*` keys).

use abi_stable::std_types::{RArc, ROption, RVec};
use rustc_hash::FxHashSet;
use sysflow_plugin_api::{
    ffi::ConfigKey, flat::foid_hex, opflags::OP_EXIT, Batch, Counter, Event, FlatRecord, Foid, Header, Host, Oid,
    PluginConfig, PluginError, PolicyContext, Processor, SysFlowRecord,
};

use crate::{
    entity_cache::{hash_str, key_of_foid, key_of_oid, Ancestry, EntityCache},
    eviction::CacheLimits,
};

/// Keys of the reader's pipeline block. The host hands `handler`/`handlerlibpath` to
/// the handler it chains after the reader, and the `filter.*` keys to that handler.
pub const CONFIG_KEYS: &[ConfigKey] = &[
    ConfigKey::new(
        "handler",
        "handler receiving the resolved records (built in: flattener)",
    ),
    ConfigKey::new(
        "handlerlibpath",
        "directory holding <handler>.so for a non-built-in handler",
    ),
    ConfigKey::new("filter.enabled", "flattener rate limiter: on / off (default off)"),
    ConfigKey::new("filter.maxage", "flattener rate limiter TTL in seconds (default 86400)"),
    ConfigKey::new(
        "cache.exitgrace",
        "seconds of stream time an exited process stays resolvable (default 60)",
    ),
    ConfigKey::new(
        "cache.filemaxage",
        "seconds of stream time a file no live process owns stays after its last use (default 3600)",
    ),
    ConfigKey::new(
        "cache.maxentities",
        "most cached processes, files, containers and pods; least recently used go first (default 262144)",
    ),
];

/// How many distinct missing ids of one kind are logged before further ones are only counted.
const MAX_MISSING_LOGS: u64 = 100;

/// Which entity kind was missing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MissingKind {
    Process,
    File,
    Container,
    Pod,
    EvictedProcess,
    EvictedFile,
    EvictedContainer,
    EvictedPod,
}

impl MissingKind {
    fn index(self) -> usize {
        self as usize
    }
}

/// Logs each distinct missing id once per header segment, up to [`MAX_MISSING_LOGS`]
/// messages per kind for the life of the reader, so a broken stream cannot flood the log.
#[derive(Default)]
struct MissingLog {
    seen: [FxHashSet<u64>; 8],
    logged: [u64; 8],
}

impl MissingLog {
    fn reset_segment(&mut self) {
        for s in &mut self.seen {
            s.clear();
        }
    }

    /// Logs `message()` if `key` was not reported in this segment and the cap allows.
    fn report(&mut self, host: &Host, kind: MissingKind, key: u64, message: impl FnOnce() -> String) {
        let i = kind.index();
        if self.logged[i] > MAX_MISSING_LOGS {
            return;
        }
        if !self.seen[i].insert(key) {
            return;
        }
        self.logged[i] += 1;
        if self.logged[i] > MAX_MISSING_LOGS {
            host.warn(&format!(
                "more than {MAX_MISSING_LOGS} distinct missing {kind:?} entities; further ones are only counted"
            ));
        } else {
            host.warn(&message());
        }
    }
}

/// Counters the reader reports.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderCounters {
    /// SysFlow records received.
    pub records_in: u64,
    /// Flat records produced.
    pub flat_records_out: u64,
    /// Header records (each resets the cache).
    pub headers: u64,
    /// Entity records cached (containers, pods, processes, files).
    pub entities: u64,
    /// Events and flows whose process was not cached.
    pub missing_process: u64,
    /// File flows and events whose file (or FE new file) was not cached.
    pub missing_file: u64,
    /// Records whose process names a container that is not cached.
    pub missing_container: u64,
    /// Records whose container names a pod that is not cached.
    pub missing_pod: u64,
    /// Events and flows whose process (or an ancestor that ended its ancestry) was evicted.
    pub evicted_process: u64,
    /// File flows and events whose file (or FE new file) was evicted.
    pub evicted_file: u64,
    /// Records whose process names a container that was evicted.
    pub evicted_container: u64,
    /// Records whose container names a pod that was evicted.
    pub evicted_pod: u64,
    /// Process flows, ignored as upstream does.
    pub ignored_process_flows: u64,
    /// Network events, flattened (upstream ignores them).
    pub network_events: u64,
    /// Events and flows seen before any header (given an empty header).
    pub records_before_header: u64,
}

/// The `sysflowreader` processor.
pub struct SysFlowReader {
    host: Host,
    cache: EntityCache,
    header: RArc<Header>,
    seen_header: bool,
    empty_ancestry: Ancestry,
    counters: ReaderCounters,
    missing: MissingLog,
}

impl SysFlowReader {
    /// A reader with an empty cache and the default cache limits.
    pub fn with_host(host: Host) -> SysFlowReader {
        SysFlowReader::with_limits(host, CacheLimits::default())
    }

    /// A reader with an empty cache bounded by `limits`.
    pub fn with_limits(host: Host, limits: CacheLimits) -> SysFlowReader {
        SysFlowReader {
            host,
            cache: EntityCache::with_limits(limits),
            header: RArc::new(Header::default()),
            seen_header: false,
            empty_ancestry: RArc::new(RVec::new()),
            counters: ReaderCounters::default(),
            missing: MissingLog::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ReaderCounters {
        self.counters
    }

    /// The entity cache (for inspection).
    pub fn cache(&self) -> &EntityCache {
        &self.cache
    }

    /// Resolves a slice of records, appending the flat records to `out`. Owned records are
    /// moved into the cache and into flat records; nothing is copied but `RArc` handles.
    pub fn read_records(&mut self, records: impl IntoIterator<Item = SysFlowRecord>, out: &mut RVec<FlatRecord>) {
        for rec in records {
            self.read_record(rec, out);
        }
    }

    /// Resolves one record.
    pub fn read_record(&mut self, rec: SysFlowRecord, out: &mut RVec<FlatRecord>) {
        self.counters.records_in += 1;
        match rec {
            SysFlowRecord::Header(h) => {
                self.cache.reset();
                self.missing.reset_segment();
                self.header = RArc::new(h);
                self.seen_header = true;
                self.counters.headers += 1;
            }
            SysFlowRecord::Container(c) => {
                self.counters.entities += 1;
                self.cache.insert_container(c);
            }
            SysFlowRecord::Pod(p) => {
                self.counters.entities += 1;
                self.cache.insert_pod(p);
            }
            SysFlowRecord::Process(p) => {
                self.counters.entities += 1;
                self.cache.insert_process(p);
            }
            SysFlowRecord::File(f) => {
                self.counters.entities += 1;
                self.cache.insert_file(f);
            }
            SysFlowRecord::Event(e) => {
                self.cache.advance_clock(e.ts());
                // Only the main thread's exit ends the process (thread exits carry their tid).
                let exited = match &e {
                    Event::Process(pe) if pe.op_flags & OP_EXIT != 0 && pe.tid == pe.proc_oid.hpid => {
                        Some(pe.proc_oid)
                    }
                    _ => None,
                };
                if let Some(flat) = self.flatten(e) {
                    out.push(flat);
                    self.counters.flat_records_out += 1;
                }
                if let Some(oid) = exited {
                    self.cache.note_exit(&oid);
                }
                self.cache.evict_due();
            }
        }
    }

    fn flatten(&mut self, event: Event) -> Option<FlatRecord> {
        let (proc_oid, file_oid, new_file_oid): (Option<Oid>, Option<Foid>, Option<Foid>) = match &event {
            Event::Process(e) => (Some(e.proc_oid), None, None),
            Event::NetworkFlow(e) => (Some(e.proc_oid), None, None),
            Event::Network(e) => {
                self.counters.network_events += 1;
                (Some(e.proc_oid), None, None)
            }
            Event::FileFlow(e) => (Some(e.proc_oid), Some(e.file_oid), None),
            Event::File(e) => (Some(e.proc_oid), Some(e.file_oid), e.new_file_oid.into_option()),
            Event::ProcessFlow(_) => {
                self.counters.ignored_process_flows += 1;
                return None;
            }
            Event::K8s(_) => (None, None, None),
        };
        if !self.seen_header {
            self.counters.records_before_header += 1;
        }

        let mut flat = FlatRecord {
            header: self.header.clone(),
            event,
            ancestry: self.empty_ancestry.clone(),
            container: ROption::RNone,
            pod: ROption::RNone,
            file: ROption::RNone,
            new_file: ROption::RNone,
            context: PolicyContext::default(),
        };

        if let Some(oid) = proc_oid {
            match self.cache.resolve(&oid) {
                Some(ctx) => {
                    flat.ancestry = ctx.ancestry;
                    flat.container = ctx.container;
                    flat.pod = ctx.pod;
                    if let Some(id) = &ctx.missing_container {
                        if self.cache.was_evicted_container(id) {
                            self.counters.evicted_container += 1;
                            self.missing
                                .report(&self.host, MissingKind::EvictedContainer, hash_str(id), || {
                                    format!("Container object for ID {id} was evicted from the entity cache (cache.maxentities too small?)")
                                });
                        } else {
                            self.counters.missing_container += 1;
                            self.missing
                                .report(&self.host, MissingKind::Container, hash_str(id), || {
                                    format!("No container object for ID: {id}")
                                });
                        }
                    }
                    if let Some(id) = &ctx.missing_pod {
                        if self.cache.was_evicted_pod(id) {
                            self.counters.evicted_pod += 1;
                            self.missing
                                .report(&self.host, MissingKind::EvictedPod, hash_str(id), || {
                                    format!("Pod object for ID {id} was evicted from the entity cache (cache.maxentities too small?)")
                                });
                        } else {
                            self.counters.missing_pod += 1;
                            self.missing.report(&self.host, MissingKind::Pod, hash_str(id), || {
                                format!("No pod object for ID: {id}")
                            });
                        }
                    }
                    if let Some(parent) = ctx.evicted_parent {
                        self.report_evicted_process(&parent);
                    }
                }
                None if self.cache.was_evicted_process(&oid) => self.report_evicted_process(&oid),
                None => {
                    self.counters.missing_process += 1;
                    self.missing
                        .report(&self.host, MissingKind::Process, key_of_oid(&oid), || {
                            format!("No process object for ID: {{{} {}}}", oid.create_ts, oid.hpid)
                        });
                }
            }
        }
        if let Some(foid) = file_oid {
            flat.file = self.lookup_file(&foid, proc_oid.as_ref());
        }
        if let Some(foid) = new_file_oid {
            flat.new_file = self.lookup_file(&foid, proc_oid.as_ref());
        }
        Some(flat)
    }

    fn report_evicted_process(&mut self, oid: &Oid) {
        self.counters.evicted_process += 1;
        self.missing
            .report(&self.host, MissingKind::EvictedProcess, key_of_oid(oid), || {
                format!(
                    "Process object for ID {{{} {}}} was evicted from the entity cache \
                     (referenced after cache.exitgrace, or cache.maxentities too small?)",
                    oid.create_ts, oid.hpid
                )
            });
    }

    fn lookup_file(&mut self, foid: &Foid, owner: Option<&Oid>) -> ROption<RArc<sysflow_plugin_api::File>> {
        match self.cache.reference_file(foid, owner) {
            Some(f) => ROption::RSome(f),
            None if self.cache.was_evicted_file(foid) => {
                self.counters.evicted_file += 1;
                self.missing
                    .report(&self.host, MissingKind::EvictedFile, key_of_foid(foid), || {
                        format!(
                            "File object for FOID {} was evicted from the entity cache \
                             (referenced after cache.filemaxage, or cache.maxentities too small?)",
                            foid_hex(foid)
                        )
                    });
                ROption::RNone
            }
            None => {
                self.counters.missing_file += 1;
                self.missing
                    .report(&self.host, MissingKind::File, key_of_foid(foid), || {
                        format!("No file object for FOID: {}", foid_hex(foid))
                    });
                ROption::RNone
            }
        }
    }
}

impl Processor for SysFlowReader {
    fn new(config: &PluginConfig, host: Host) -> Result<Self, PluginError> {
        let limits = CacheLimits::from_config(config)?;
        Ok(SysFlowReader::with_limits(host, limits))
    }

    fn process(&mut self, batch: Batch) -> Result<Option<Batch>, PluginError> {
        let records = match batch {
            Batch::SysFlow(records) => records,
            Batch::Flat(_) | Batch::Otel(_) => {
                return Err(PluginError::new(
                    "sysflowreader: input carries flat or OTel records (flattenerchan/eventchan/otelchan); \
                     the reader reads SysFlow records from a sysflowchan channel",
                ))
            }
        };
        let events = records.iter().filter(|r| matches!(r, SysFlowRecord::Event(_))).count();
        let mut out = RVec::with_capacity(events);
        match RArc::try_unwrap(records) {
            Ok(owned) => self.read_records(owned, &mut out),
            // Shared with another consumer (fan-out): clone each record once.
            Err(shared) => self.read_records(shared.iter().cloned(), &mut out),
        }
        if out.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch::Flat(RArc::new(out))))
    }

    fn counters(&self) -> Vec<Counter> {
        let c = self.counters;
        let a = self.cache.ancestry_stats();
        let e = self.cache.eviction_stats();
        let (processes, containers, pods, files) = self.cache.sizes();
        vec![
            Counter::new("records_in", c.records_in),
            Counter::new("flat_records_out", c.flat_records_out),
            Counter::new("headers", c.headers),
            Counter::new("entities", c.entities),
            Counter::new("missing_process", c.missing_process),
            Counter::new("missing_file", c.missing_file),
            Counter::new("missing_container", c.missing_container),
            Counter::new("missing_pod", c.missing_pod),
            Counter::new("evicted_process", c.evicted_process),
            Counter::new("evicted_file", c.evicted_file),
            Counter::new("evicted_container", c.evicted_container),
            Counter::new("evicted_pod", c.evicted_pod),
            Counter::new("ignored_process_flows", c.ignored_process_flows),
            Counter::new("network_events", c.network_events),
            Counter::new("records_before_header", c.records_before_header),
            Counter::new("ancestry_cycles", a.cycles),
            Counter::new("ancestry_depth_capped", a.depth_capped),
            Counter::new("cache_evictions_exited", e.exited_processes),
            Counter::new("cache_evictions_idle_files", e.idle_files),
            Counter::new("cache_evictions_over_cap", e.over_cap),
            Counter::new("cache_peak_entities", e.peak_entities),
            Counter::new("cache_entities", (processes + containers + pods + files) as u64),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::CONFIG_KEYS;
    use crate::eviction::{DEFAULT_EXIT_GRACE_SECS, DEFAULT_FILE_MAX_AGE_SECS, DEFAULT_MAX_ENTITIES};

    #[test]
    fn declared_keys_state_the_defaults_in_force() {
        let described = |key: &str| {
            CONFIG_KEYS
                .iter()
                .find(|k| k.name.as_str() == key)
                .map(|k| k.help.to_string())
                .unwrap_or_default()
        };
        assert!(described("cache.exitgrace").contains(&format!("default {DEFAULT_EXIT_GRACE_SECS})")));
        assert!(described("cache.filemaxage").contains(&format!("default {DEFAULT_FILE_MAX_AGE_SECS})")));
        assert!(described("cache.maxentities").contains(&format!("default {DEFAULT_MAX_ENTITIES})")));
    }
}
