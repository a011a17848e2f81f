//! The reader's entity cache: containers, pods, processes, files and memoised process context.
//!
//! Entities are stored as `RArc`s, so every flat record that refers to one shares it.
//! All tables are emptied at every header record (a header starts a self-contained
//! segment: the collector re-sends every live entity after it).
//!
//! Processes keep three slots, one per object state; a lookup prefers MODIFIED, then
//! CREATED, then REUP (upstream's policy: an exec'd or setuid'd version beats the
//! creation record, which beats a re-export).
//!
//! Process context (ancestry, container, pod) is memoised per OID. Upstream memoises the
//! ancestry until the next header, so a later MODIFIED record or a late parent leaves it
//! stale, and a `poid` cycle hangs it. Here each memo records what it was built from
//! (every process of its ancestry, the missing parent that ended it, its container id and
//! pod id); a process, container or pod record drops exactly the memos that depend on it,
//! so the next event rebuilds them. The ancestry walk stops at a cycle or at
//! [`MAX_ANCESTRY_DEPTH`].
//!
//! Between headers the cache is bounded (see [`crate::eviction`]), in stream time (the
//! largest event timestamp seen):
//! * a process is evicted once its main thread's EXIT event is older than the exit grace
//!   window and no cached process names it as parent (its children still need it for
//!   their ancestry; the last child's eviction lets it go);
//! * a file is owned by the processes that referenced it (up to [`MAX_OWNED_FILES`] per
//!   process); it is evicted once no cached process owns it and its last reference is
//!   older than the file max age;
//! * above the entity cap the least recently used entities of any kind go, in batches of
//!   an eighth of the cap (amortised O(1) per insert);
//! * an evicted entity leaves a tombstone, so a later reference to it is told apart from a
//!   reference to an entity never seen. Evicting a process drops its memo and its entries
//!   in the dependency index, and every memo that held it.

use std::collections::VecDeque;

use abi_stable::std_types::{RArc, ROption, RString, RVec};
use sysflow_plugin_api::{Container, File, Foid, ObjectState, Oid, Pod, Process};

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

use crate::eviction::{CacheLimits, EntityKind, EvictionStats, Tombstones, MAX_OWNED_FILES};

/// Fingerprint of a container or pod id, used to track which memos depend on it.
pub(crate) fn hash_str(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

/// Fingerprint of a process OID (tombstones, missing-entity log).
/// Keys of the entries last used at or before `threshold` (the cap's LRU cut), copied out so
/// the map can be changed while they are evicted.
fn used_at_or_before<K: Clone, V>(map: &FxHashMap<K, V>, threshold: u64, last_used: impl Fn(&V) -> u64) -> Vec<K> {
    map.iter().filter(|(_, e)| last_used(e) <= threshold).map(|(k, _)| k.clone()).collect()
}

pub(crate) fn key_of_oid(oid: &Oid) -> u64 {
    (oid.create_ts as u64).rotate_left(17) ^ (oid.hpid as u64)
}

/// Fingerprint of a file FOID (tombstones, missing-entity log).
pub(crate) fn key_of_foid(oid: &Foid) -> u64 {
    FxBuildHasher.hash_one(oid)
}

/// Insertion stamp of an entity that arrived before the segment's first event (stream
/// time is unknown until then).
const UNSTAMPED: i64 = i64::MIN;

/// Longest ancestry list built; deeper chains are cut (and counted).
pub const MAX_ANCESTRY_DEPTH: usize = 256;

/// A process ancestry: the process itself first, then parent, grandparent, …
pub type Ancestry = RArc<RVec<RArc<Process>>>;

/// The three state slots of one process OID.
#[derive(Default, Clone)]
struct ProcessSlots {
    slots: [Option<RArc<Process>>; 3],
}

impl ProcessSlots {
    /// MODIFIED, else CREATED, else REUP.
    fn best(&self) -> Option<&RArc<Process>> {
        self.slots[ObjectState::Modified as usize]
            .as_ref()
            .or(self.slots[ObjectState::Created as usize].as_ref())
            .or(self.slots[ObjectState::Reup as usize].as_ref())
    }
}

/// Everything a process resolves to, as flat records carry it.
#[derive(Clone, Debug)]
pub struct ProcessContext {
    /// The process first, then its ancestors.
    pub ancestry: Ancestry,
    /// The process's container, if it names one that is cached.
    pub container: ROption<RArc<Container>>,
    /// The container's pod, if it names one that is cached.
    pub pod: ROption<RArc<Pod>>,
    /// Container id the process names but the cache lacks.
    pub missing_container: Option<RString>,
    /// Pod id the container names but the cache lacks.
    pub missing_pod: Option<RString>,
    /// Parent that ended the ancestry because it was evicted (not merely never seen).
    pub evicted_parent: Option<Oid>,
}

/// An entity a memoised context was built from. Container and pod ids are kept as
/// fingerprints: a collision only drops a memo that did not need dropping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Dependency {
    Process(Oid),
    Container(u64),
    Pod(u64),
}

/// Anomalies met while walking ancestries.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct AncestryStats {
    /// Walks cut short because a `poid` led back to a process already in the list.
    pub cycles: u64,
    /// Walks cut at [`MAX_ANCESTRY_DEPTH`].
    pub depth_capped: u64,
}

/// A memoised context and the entities it was built from (to unlink it when it goes).
struct Memo {
    context: ProcessContext,
    dependencies: Vec<Dependency>,
}

/// One cached process OID: its state slots and its lifecycle bookkeeping.
#[derive(Default)]
struct ProcessEntry {
    slots: ProcessSlots,
    memo: Option<Memo>,
    /// Use tick of the last record that named it (LRU order).
    last_used: u64,
    /// Stream time of its main thread's EXIT event.
    exited_at: Option<i64>,
    /// The parent this entry is counted under in `children`.
    counted_parent: Option<Oid>,
    /// Files it referenced (it owns them), at most [`MAX_OWNED_FILES`].
    files: Vec<Foid>,
}

/// One cached file and its owners.
struct FileEntry {
    file: RArc<File>,
    last_used: u64,
    /// Stream time of its insertion or last reference.
    last_ref: i64,
    /// Cached processes that own it.
    owners: u32,
    /// In `unowned_files` (at most once, so that queue never outgrows the table).
    queued: bool,
    /// The process of the last reference: a repeat by it needs no ownership bookkeeping.
    last_owner: Option<Oid>,
}

/// A cached container or pod.
struct Shared<T> {
    value: RArc<T>,
    last_used: u64,
}

/// The entity tables.
#[derive(Default)]
pub struct EntityCache {
    containers: FxHashMap<RString, Shared<Container>>,
    pods: FxHashMap<RString, Shared<Pod>>,
    processes: FxHashMap<Oid, ProcessEntry>,
    files: FxHashMap<Foid, FileEntry>,
    dependents: FxHashMap<Dependency, FxHashSet<Oid>>,
    /// Cached processes per parent OID (the parent need not be cached).
    children: FxHashMap<Oid, u32>,
    /// (process, file) ownership pairs, so each process counts once per file.
    owned: FxHashSet<(Oid, Foid)>,
    /// Exited processes in exit order, with their exit stream time.
    exits: VecDeque<(i64, Oid)>,
    /// Files that may have become unowned, with the stream time they did.
    unowned_files: VecDeque<(i64, Foid)>,
    tombstones: Tombstones,
    limits: CacheLimits,
    /// Stream time: the largest event timestamp seen (ns).
    now: i64,
    /// Whether an event has set `now` in this segment.
    clock_set: bool,
    /// Stream time moved since the last eviction sweep.
    sweep_pending: bool,
    /// Use counter for LRU order.
    tick: u64,
    stats: AncestryStats,
    evictions: EvictionStats,
}

/// Replaces `s` by its whitespace-trimmed form, allocating only if it changes.
fn trim_in_place(s: &mut RString) {
    let trimmed = s.trim();
    if trimmed.len() != s.len() {
        *s = RString::from(trimmed);
    }
}

impl EntityCache {
    /// An empty cache with the default limits.
    pub fn new() -> EntityCache {
        EntityCache::default()
    }

    /// An empty cache with the given limits.
    pub fn with_limits(limits: CacheLimits) -> EntityCache {
        EntityCache {
            limits,
            ..EntityCache::default()
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// Empties every table (a header arrived). Capacity is kept for the next segment.
    pub fn reset(&mut self) {
        self.containers.clear();
        self.pods.clear();
        self.processes.clear();
        self.files.clear();
        self.dependents.clear();
        self.children.clear();
        self.owned.clear();
        self.exits.clear();
        self.unowned_files.clear();
        self.tombstones.clear();
        // Each segment has its own clock: entities re-sent after a header are aged from
        // the segment's first event, not from the last event of the previous one.
        self.clock_set = false;
        self.sweep_pending = false;
    }

    /// When an entity arriving now was last seen: `now`, or [`UNSTAMPED`] before the
    /// segment's first event.
    fn stamp(&self) -> i64 {
        if self.clock_set {
            self.now
        } else {
            UNSTAMPED
        }
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// Number of cached entities of every kind.
    pub fn len(&self) -> usize {
        self.processes.len() + self.files.len() + self.containers.len() + self.pods.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stores a container (last record wins). Name and image are trimmed as upstream's
    /// flattener does when it copies them.
    pub fn insert_container(&mut self, mut c: Container) {
        trim_in_place(&mut c.name);
        trim_in_place(&mut c.image);
        self.invalidate(Dependency::Container(hash_str(&c.id)));
        let last_used = self.next_tick();
        self.containers.insert(
            c.id.clone(),
            Shared {
                value: RArc::new(c),
                last_used,
            },
        );
        self.enforce_cap();
    }

    /// Stores a pod (last record wins). Name, node name and namespace are trimmed as
    /// upstream's flattener does.
    pub fn insert_pod(&mut self, mut p: Pod) {
        trim_in_place(&mut p.name);
        trim_in_place(&mut p.node_name);
        trim_in_place(&mut p.namespace);
        self.invalidate(Dependency::Pod(hash_str(&p.id)));
        let last_used = self.next_tick();
        self.pods.insert(
            p.id.clone(),
            Shared {
                value: RArc::new(p),
                last_used,
            },
        );
        self.enforce_cap();
    }

    /// Stores a process in the slot of its state; `exe` and `exe_args` are trimmed.
    pub fn insert_process(&mut self, mut p: Process) {
        trim_in_place(&mut p.exe);
        trim_in_place(&mut p.exe_args);
        let slot = p.state as usize;
        let oid = p.oid;
        let tick = self.next_tick();
        let entry = self.processes.entry(oid).or_default();
        entry.last_used = tick;
        entry.slots.slots[slot] = Some(RArc::new(p));
        // A lower-priority state (e.g. REUP after CREATED) changes nothing a lookup sees.
        let (changed, parent) = match (entry.slots.best(), &entry.slots.slots[slot]) {
            (Some(best), Some(new)) => (std::ptr::eq(&**best, &**new), best.poid.into_option()),
            _ => (true, None),
        };
        // A process naming itself as parent must not keep itself alive.
        let parent = parent.filter(|p| *p != oid);
        let counted = entry.counted_parent;
        if parent != counted {
            entry.counted_parent = parent;
            if let Some(old) = counted {
                self.release_child(old);
            }
            if let Some(new) = parent {
                *self.children.entry(new).or_default() += 1;
            }
        }
        if changed {
            self.invalidate(Dependency::Process(oid));
        }
        self.enforce_cap();
    }

    /// Stores a file (last record wins; its owners are kept); the path is trimmed as
    /// upstream's flattener does.
    pub fn insert_file(&mut self, mut f: File) {
        trim_in_place(&mut f.path);
        let oid = f.oid;
        let last_used = self.next_tick();
        let now = self.stamp();
        match self.files.get_mut(&oid) {
            Some(entry) => {
                entry.file = RArc::new(f);
                entry.last_used = last_used;
                entry.last_ref = now;
            }
            None => {
                self.files.insert(
                    oid,
                    FileEntry {
                        file: RArc::new(f),
                        last_used,
                        last_ref: now,
                        owners: 0,
                        queued: true,
                        last_owner: None,
                    },
                );
                // Unowned until an event references it: age it from now.
                self.unowned_files.push_back((now, oid));
            }
        }
        self.enforce_cap();
    }

    /// Records that the main thread of `oid` exited (a PE with the EXIT flag whose `tid`
    /// is the process id); the process goes once the grace window has passed.
    pub fn note_exit(&mut self, oid: &Oid) {
        let now = self.now;
        if let Some(entry) = self.processes.get_mut(oid) {
            if entry.exited_at.is_none() {
                entry.exited_at = Some(now);
                self.exits.push_back((now, *oid));
            }
        }
    }

    /// Moves stream time to `ts` if later. Nothing is evicted until [`Self::evict_due`], so
    /// the event carrying `ts` still finds the entities sent just before it, however long
    /// the stream was idle.
    pub fn advance_clock(&mut self, ts: i64) {
        if ts > self.now || !self.clock_set {
            self.now = ts;
            self.clock_set = true;
            self.sweep_pending = true;
        }
    }

    /// Evicts the exited processes and idle files the current stream time makes due.
    pub fn evict_due(&mut self) {
        if std::mem::take(&mut self.sweep_pending) {
            self.evict_exited();
            self.evict_idle_files();
        }
    }

    /// Stream time (ns): the largest event timestamp seen in this segment.
    pub fn now(&self) -> i64 {
        self.now
    }

    fn exit_expired(&self, exited_at: i64) -> bool {
        exited_at.saturating_add(self.limits.exit_grace_ns) < self.now
    }

    fn evict_exited(&mut self) {
        while let Some(&(at, oid)) = self.exits.front() {
            if !self.exit_expired(at) {
                break;
            }
            self.exits.pop_front();
            self.evict_exited_if_done(oid);
        }
    }

    /// Evicts `oid` if it exited past the grace window and no cached process is its child;
    /// then its parent, if that was the parent's last child and the parent is due too.
    fn evict_exited_if_done(&mut self, oid: Oid) {
        let mut next = Some(oid);
        while let Some(oid) = next.take() {
            let Some(entry) = self.processes.get(&oid) else { break };
            let due = entry.exited_at.is_some_and(|at| self.exit_expired(at));
            if !due || self.children.contains_key(&oid) {
                break;
            }
            // The parent's exit entry may already have been popped while this child lived.
            next = self.evict_process(oid);
            self.evictions.exited_processes += 1;
        }
    }

    fn evict_idle_files(&mut self) {
        let now = self.now;
        while let Some(&(since, foid)) = self.unowned_files.front() {
            if since != UNSTAMPED && since.saturating_add(self.limits.file_max_age_ns) >= now {
                break;
            }
            self.unowned_files.pop_front();
            let Some(entry) = self.files.get_mut(&foid) else { continue };
            entry.queued = false;
            if entry.owners > 0 {
                continue; // it is queued again when its last owner goes
            }
            if entry.last_ref == UNSTAMPED {
                // Sent before the segment's first event: its age starts now.
                entry.last_ref = now;
            }
            if entry.last_ref.saturating_add(self.limits.file_max_age_ns) >= now {
                entry.queued = true;
                let last_ref = entry.last_ref;
                self.unowned_files.push_back((last_ref, foid));
                continue;
            }
            self.files.remove(&foid);
            self.tombstones.bury(EntityKind::File, key_of_foid(&foid));
            self.evictions.idle_files += 1;
        }
    }

    /// One cached process fewer names `parent` as parent.
    fn release_child(&mut self, parent: Oid) {
        if let Some(n) = self.children.get_mut(&parent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.children.remove(&parent);
            }
        }
    }

    /// Removes a process: its memo, the memos that hold it, its child count under its
    /// parent, its file ownerships; leaves a tombstone. Returns its parent (which may now
    /// be due for eviction).
    fn evict_process(&mut self, oid: Oid) -> Option<Oid> {
        let mut entry = self.processes.remove(&oid)?;
        if let Some(memo) = entry.memo.take() {
            self.unlink(oid, &memo.dependencies);
        }
        self.invalidate(Dependency::Process(oid));
        if let Some(parent) = entry.counted_parent {
            self.release_child(parent);
        }
        for foid in &entry.files {
            self.owned.remove(&(oid, *foid));
            if let Some(file) = self.files.get_mut(foid) {
                file.owners = file.owners.saturating_sub(1);
                if file.owners == 0 && !file.queued {
                    file.queued = true;
                    self.unowned_files.push_back((self.now, *foid));
                }
            }
        }
        self.tombstones.bury(EntityKind::Process, key_of_oid(&oid));
        entry.counted_parent
    }

    /// Evicts least recently used entities (of any kind) down to 7/8 of the cap.
    fn enforce_cap(&mut self) {
        let total = self.len();
        self.evictions.peak_entities = self.evictions.peak_entities.max(total as u64);
        let cap = self.limits.max_entities;
        if total <= cap {
            return;
        }
        let target = cap - cap / 8;
        let excess = total - target.max(1).min(total);
        if excess == 0 {
            return;
        }
        // A container or pod is as recently used as the latest process whose memo holds it.
        let mut held: FxHashMap<*const (), u64> = FxHashMap::default();
        for entry in self.processes.values() {
            if let Some(memo) = &entry.memo {
                if let ROption::RSome(c) = &memo.context.container {
                    let t = held.entry(&**c as *const Container as *const ()).or_default();
                    *t = (*t).max(entry.last_used);
                }
                if let ROption::RSome(p) = &memo.context.pod {
                    let t = held.entry(&**p as *const Pod as *const ()).or_default();
                    *t = (*t).max(entry.last_used);
                }
            }
        }
        for c in self.containers.values_mut() {
            if let Some(&t) = held.get(&(&*c.value as *const Container as *const ())) {
                c.last_used = c.last_used.max(t);
            }
        }
        for p in self.pods.values_mut() {
            if let Some(&t) = held.get(&(&*p.value as *const Pod as *const ())) {
                p.last_used = p.last_used.max(t);
            }
        }
        drop(held);
        let mut ticks: Vec<u64> = Vec::with_capacity(total);
        ticks.extend(self.processes.values().map(|e| e.last_used));
        ticks.extend(self.files.values().map(|e| e.last_used));
        ticks.extend(self.containers.values().map(|e| e.last_used));
        ticks.extend(self.pods.values().map(|e| e.last_used));
        let (_, &mut threshold, _) = ticks.select_nth_unstable(excess - 1);
        drop(ticks);

        let old_processes = used_at_or_before(&self.processes, threshold, |e| e.last_used);
        for oid in old_processes {
            if self.processes.contains_key(&oid) {
                let parent = self.evict_process(oid);
                self.evictions.over_cap += 1;
                if let Some(parent) = parent {
                    self.evict_exited_if_done(parent);
                }
            }
        }
        let old_files = used_at_or_before(&self.files, threshold, |e| e.last_used);
        for foid in old_files {
            self.files.remove(&foid);
            self.tombstones.bury(EntityKind::File, key_of_foid(&foid));
            self.evictions.over_cap += 1;
        }
        let old_containers = used_at_or_before(&self.containers, threshold, |e| e.last_used);
        for id in old_containers {
            self.containers.remove(&id);
            let key = hash_str(&id);
            self.invalidate(Dependency::Container(key));
            self.tombstones.bury(EntityKind::Container, key);
            self.evictions.over_cap += 1;
        }
        let old_pods = used_at_or_before(&self.pods, threshold, |e| e.last_used);
        for id in old_pods {
            self.pods.remove(&id);
            let key = hash_str(&id);
            self.invalidate(Dependency::Pod(key));
            self.tombstones.bury(EntityKind::Pod, key);
            self.evictions.over_cap += 1;
        }
    }

    /// Drops every memo built from `dependency`.
    fn invalidate(&mut self, dependency: Dependency) {
        if let Some(oids) = self.dependents.remove(&dependency) {
            for oid in oids {
                let memo = self.processes.get_mut(&oid).and_then(|e| e.memo.take());
                if let Some(memo) = memo {
                    self.unlink(oid, &memo.dependencies);
                }
            }
        }
    }

    /// Removes `oid` from the dependency index entries of a memo that is gone.
    fn unlink(&mut self, oid: Oid, dependencies: &[Dependency]) {
        for dependency in dependencies {
            if let Some(set) = self.dependents.get_mut(dependency) {
                set.remove(&oid);
                if set.is_empty() {
                    self.dependents.remove(dependency);
                }
            }
        }
    }

    /// The cached process for `oid` (MODIFIED > CREATED > REUP).
    pub fn process(&self, oid: &Oid) -> Option<&RArc<Process>> {
        self.processes.get(oid).and_then(|e| e.slots.best())
    }

    /// The cached file for `oid`.
    pub fn file(&self, oid: &Foid) -> Option<&RArc<File>> {
        self.files.get(oid).map(|e| &e.file)
    }

    /// The cached file for `foid` as an event of process `owner` references it: marks it
    /// used now and makes `owner` (if cached) one of its owners.
    pub fn reference_file(&mut self, foid: &Foid, owner: Option<&Oid>) -> Option<RArc<File>> {
        let tick = self.next_tick();
        let entry = self.files.get_mut(foid)?;
        entry.last_used = tick;
        entry.last_ref = self.now;
        // The common case, a process using its file again, costs no further lookup.
        if owner.is_some() && entry.last_owner.as_ref() != owner {
            entry.last_owner = owner.copied();
            if let Some((oid, process)) = owner.and_then(|o| self.processes.get_mut(o).map(|p| (o, p))) {
                if process.files.len() < MAX_OWNED_FILES && self.owned.insert((*oid, *foid)) {
                    process.files.push(*foid);
                    entry.owners += 1;
                }
            }
        }
        Some(entry.file.clone())
    }

    /// The cached container with this id.
    pub fn container(&self, id: &str) -> Option<&RArc<Container>> {
        self.containers.get(id).map(|e| &e.value)
    }

    /// The cached pod with this id.
    pub fn pod(&self, id: &str) -> Option<&RArc<Pod>> {
        self.pods.get(id).map(|e| &e.value)
    }

    /// Whether the process `oid` was evicted (rather than never seen) in this segment.
    pub fn was_evicted_process(&self, oid: &Oid) -> bool {
        self.tombstones.contains(EntityKind::Process, key_of_oid(oid))
    }

    /// Whether the file `foid` was evicted (rather than never seen) in this segment.
    pub fn was_evicted_file(&self, foid: &Foid) -> bool {
        self.tombstones.contains(EntityKind::File, key_of_foid(foid))
    }

    /// Whether the container `id` was evicted (rather than never seen) in this segment.
    pub fn was_evicted_container(&self, id: &str) -> bool {
        self.tombstones.contains(EntityKind::Container, hash_str(id))
    }

    /// Whether the pod `id` was evicted (rather than never seen) in this segment.
    pub fn was_evicted_pod(&self, id: &str) -> bool {
        self.tombstones.contains(EntityKind::Pod, hash_str(id))
    }

    /// Ancestry-walk anomalies so far.
    pub fn ancestry_stats(&self) -> AncestryStats {
        self.stats
    }

    /// Evictions so far.
    pub fn eviction_stats(&self) -> EvictionStats {
        self.evictions
    }

    /// Number of cached process OIDs, containers, pods and files.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        (
            self.processes.len(),
            self.containers.len(),
            self.pods.len(),
            self.files.len(),
        )
    }

    /// Number of memoised contexts and of dependency index entries (bookkeeping that must
    /// shrink with the tables).
    pub fn memo_sizes(&self) -> (usize, usize) {
        let memos = self.processes.values().filter(|e| e.memo.is_some()).count();
        let links = self.dependents.values().map(FxHashSet::len).sum();
        (memos, links)
    }

    /// The ancestry of `oid`, or `None` if the process is not cached.
    pub fn ancestry(&mut self, oid: &Oid) -> Option<Ancestry> {
        self.resolve(oid).map(|c| c.ancestry)
    }

    /// Resolves a process OID to its ancestry, container and pod (memoised until an
    /// entity it depends on changes), and marks it used. `None` when the process itself
    /// is not cached. The result holds `RArc` handles only (plus ids when something is
    /// missing).
    pub fn resolve(&mut self, oid: &Oid) -> Option<ProcessContext> {
        let tick = self.next_tick();
        let entry = self.processes.get_mut(oid)?;
        entry.last_used = tick;
        if let Some(memo) = &entry.memo {
            return Some(memo.context.clone());
        }
        let memo = self.build_context(oid)?;
        let context = memo.context.clone();
        for dependency in &memo.dependencies {
            self.dependents.entry(*dependency).or_default().insert(*oid);
        }
        if let Some(entry) = self.processes.get_mut(oid) {
            entry.memo = Some(memo);
        }
        Some(context)
    }

    fn build_context(&mut self, oid: &Oid) -> Option<Memo> {
        let first = self.process(oid)?.clone();
        let mut ancestry: RVec<RArc<Process>> = RVec::new();
        let mut current = first.clone();
        let mut missing_parent = None;
        loop {
            let next = current.poid.into_option();
            ancestry.push(current);
            let Some(poid) = next else { break };
            if ancestry.iter().any(|p| p.oid == poid) {
                self.stats.cycles += 1;
                break;
            }
            if ancestry.len() >= MAX_ANCESTRY_DEPTH {
                self.stats.depth_capped += 1;
                break;
            }
            match self.process(&poid) {
                Some(parent) => current = parent.clone(),
                None => {
                    missing_parent = Some(poid);
                    break;
                }
            }
        }

        let mut dependencies: Vec<Dependency> = ancestry.iter().map(|p| Dependency::Process(p.oid)).collect();
        let mut context = ProcessContext {
            ancestry: RArc::new(RVec::new()),
            container: ROption::RNone,
            pod: ROption::RNone,
            missing_container: None,
            missing_pod: None,
            evicted_parent: missing_parent.filter(|p| self.was_evicted_process(p)),
        };
        if let Some(poid) = missing_parent {
            dependencies.push(Dependency::Process(poid));
        }
        context.ancestry = RArc::new(ancestry);

        if let ROption::RSome(cid) = &first.container_id {
            dependencies.push(Dependency::Container(hash_str(cid)));
            match self.containers.get(cid.as_str()).map(|c| c.value.clone()) {
                Some(c) => {
                    if let ROption::RSome(pid) = &c.pod_id {
                        dependencies.push(Dependency::Pod(hash_str(pid)));
                        match self.pods.get(pid.as_str()) {
                            Some(p) => context.pod = ROption::RSome(p.value.clone()),
                            None => context.missing_pod = Some(pid.clone()),
                        }
                    }
                    context.container = ROption::RSome(c);
                }
                None => context.missing_container = Some(cid.clone()),
            }
        }
        Some(Memo { context, dependencies })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid(hpid: i64) -> Oid {
        Oid {
            create_ts: 1000 + hpid,
            hpid,
        }
    }

    fn proc_rec(hpid: i64, parent: Option<i64>, state: ObjectState, exe: &str) -> Process {
        Process {
            state,
            oid: oid(hpid),
            poid: parent.map(oid).into(),
            exe: exe.into(),
            ..Process::default()
        }
    }

    fn exes(a: &Ancestry) -> Vec<String> {
        a.iter().map(|p| p.exe.to_string()).collect()
    }

    #[test]
    fn slot_priority_is_modified_then_created_then_reup() {
        let mut c = EntityCache::new();
        c.insert_process(proc_rec(1, None, ObjectState::Reup, "reup"));
        assert_eq!(c.process(&oid(1)).unwrap().exe.as_str(), "reup");
        c.insert_process(proc_rec(1, None, ObjectState::Modified, "modified"));
        assert_eq!(c.process(&oid(1)).unwrap().exe.as_str(), "modified");
        // A later CREATED or REUP does not displace MODIFIED.
        c.insert_process(proc_rec(1, None, ObjectState::Created, "created"));
        c.insert_process(proc_rec(1, None, ObjectState::Reup, "reup2"));
        assert_eq!(c.process(&oid(1)).unwrap().exe.as_str(), "modified");

        let mut c = EntityCache::new();
        c.insert_process(proc_rec(2, None, ObjectState::Created, "created"));
        c.insert_process(proc_rec(2, None, ObjectState::Reup, "reup"));
        assert_eq!(c.process(&oid(2)).unwrap().exe.as_str(), "created");
    }

    #[test]
    fn exe_and_args_are_trimmed() {
        let mut c = EntityCache::new();
        let mut p = proc_rec(1, None, ObjectState::Created, "  /bin/ls\n");
        p.exe_args = " -l  ".into();
        c.insert_process(p);
        let p = c.process(&oid(1)).unwrap();
        assert_eq!(p.exe.as_str(), "/bin/ls");
        assert_eq!(p.exe_args.as_str(), "-l");
    }

    #[test]
    fn ancestry_is_self_first_and_refreshes_after_modified_parent() {
        let mut c = EntityCache::new();
        c.insert_process(proc_rec(1, None, ObjectState::Created, "init"));
        c.insert_process(proc_rec(2, Some(1), ObjectState::Created, "bash"));
        c.insert_process(proc_rec(3, Some(2), ObjectState::Created, "ls"));
        c.insert_process(proc_rec(4, Some(99), ObjectState::Created, "orphan"));
        assert_eq!(exes(&c.ancestry(&oid(3)).unwrap()), ["ls", "bash", "init"]);
        assert_eq!(exes(&c.ancestry(&oid(4)).unwrap()), ["orphan"]);
        assert!(c.ancestry(&oid(5)).is_none());

        // The parent execs: the memo must not keep the old parent (upstream's stale memo).
        c.insert_process(proc_rec(2, Some(1), ObjectState::Modified, "python"));
        assert_eq!(exes(&c.ancestry(&oid(3)).unwrap()), ["ls", "python", "init"]);

        // A late parent is picked up as well.
        c.insert_process(proc_rec(99, None, ObjectState::Reup, "late"));
        assert_eq!(exes(&c.ancestry(&oid(4)).unwrap()), ["orphan", "late"]);
    }

    #[test]
    fn memo_is_shared_between_lookups() {
        let mut c = EntityCache::new();
        c.insert_process(proc_rec(1, None, ObjectState::Created, "init"));
        let a = c.ancestry(&oid(1)).unwrap();
        let b = c.ancestry(&oid(1)).unwrap();
        assert!(std::ptr::eq(&*a, &*b), "a memo hit must share the ancestry list");
        c.insert_file(File::default());
        c.insert_process(proc_rec(5, Some(9), ObjectState::Created, "unrelated"));
        c.insert_process(proc_rec(1, None, ObjectState::Reup, "re-export"));
        let d = c.ancestry(&oid(1)).unwrap();
        assert!(
            std::ptr::eq(&*a, &*d),
            "unrelated or lower-priority records keep the memo"
        );
        c.insert_process(proc_rec(1, None, ObjectState::Modified, "exec"));
        assert_eq!(exes(&c.ancestry(&oid(1)).unwrap()), ["exec"]);
    }

    #[test]
    fn poid_cycles_and_depth_are_bounded() {
        let mut c = EntityCache::new();
        c.insert_process(proc_rec(1, Some(2), ObjectState::Created, "a"));
        c.insert_process(proc_rec(2, Some(1), ObjectState::Created, "b"));
        c.insert_process(proc_rec(7, Some(7), ObjectState::Created, "self"));
        assert_eq!(exes(&c.ancestry(&oid(1)).unwrap()), ["a", "b"]);
        assert_eq!(exes(&c.ancestry(&oid(7)).unwrap()), ["self"]);
        assert_eq!(c.ancestry_stats().cycles, 2);

        let mut c = EntityCache::new();
        for i in 1..=1000 {
            c.insert_process(proc_rec(i, Some(i + 1), ObjectState::Created, "x"));
        }
        assert_eq!(c.ancestry(&oid(1)).unwrap().len(), MAX_ANCESTRY_DEPTH);
        assert_eq!(c.ancestry_stats().depth_capped, 1);
    }

    #[test]
    fn reset_clears_everything() {
        let mut c = EntityCache::new();
        c.insert_process(proc_rec(1, None, ObjectState::Created, "init"));
        c.insert_container(Container {
            id: "c1".into(),
            ..Container::default()
        });
        c.insert_pod(Pod {
            id: "p1".into(),
            ..Pod::default()
        });
        c.insert_file(File {
            oid: [7; 20],
            ..File::default()
        });
        assert!(c.ancestry(&oid(1)).is_some());
        c.reset();
        assert!(c.process(&oid(1)).is_none());
        assert!(c.ancestry(&oid(1)).is_none());
        assert!(c.container("c1").is_none());
        assert!(c.pod("p1").is_none());
        assert!(c.file(&[7; 20]).is_none());
        assert_eq!(c.sizes(), (0, 0, 0, 0));
    }

    #[test]
    fn container_and_pod_resolve_through_the_process() {
        let mut c = EntityCache::new();
        let mut p = proc_rec(1, None, ObjectState::Created, "nginx");
        p.container_id = ROption::RSome("c1".into());
        c.insert_process(p);
        let ctx = c.resolve(&oid(1)).unwrap();
        assert_eq!(ctx.missing_container.as_deref(), Some("c1"));
        assert!(ctx.container.is_none());

        c.insert_container(Container {
            id: "c1".into(),
            name: " web ".into(),
            pod_id: ROption::RSome("p1".into()),
            ..Container::default()
        });
        let ctx = c.resolve(&oid(1)).unwrap();
        assert_eq!(
            ctx.container.as_ref().map(|c| c.name.as_str()).into_option(),
            Some("web")
        );
        assert_eq!(ctx.missing_pod.as_deref(), Some("p1"));

        c.insert_pod(Pod {
            id: "p1".into(),
            namespace: "ns ".into(),
            ..Pod::default()
        });
        let ctx = c.resolve(&oid(1)).unwrap();
        assert_eq!(ctx.pod.as_ref().map(|p| p.namespace.as_str()).into_option(), Some("ns"));
        assert!(ctx.missing_pod.is_none() && ctx.missing_container.is_none());
    }

    #[test]
    fn evicted_children_leave_no_memo_or_dependency_behind() {
        let mut c = EntityCache::with_limits(CacheLimits {
            exit_grace_ns: 10,
            ..CacheLimits::default()
        });
        c.insert_process(proc_rec(1, None, ObjectState::Created, "bash"));
        for i in 0..1000i64 {
            let hpid = 100 + i;
            let t = i * 100;
            c.advance_clock(t);
            c.insert_process(proc_rec(hpid, Some(1), ObjectState::Created, "tool"));
            assert_eq!(exes(&c.ancestry(&oid(hpid)).unwrap()), ["tool", "bash"]);
            c.note_exit(&oid(hpid));
            c.evict_due();
        }
        c.advance_clock(1_000_000);
        c.evict_due();
        assert_eq!(c.sizes().0, 1, "only the shell is left");
        let (memos, links) = c.memo_sizes();
        assert!(memos <= 1 && links <= 1, "{memos} memos, {links} dependency links left");
        assert!(c.children.is_empty(), "no child counts left: {:?}", c.children.len());
        assert_eq!(c.eviction_stats().exited_processes, 1000);
        assert!(c.was_evicted_process(&oid(100)));
        assert!(!c.was_evicted_process(&oid(1)));
    }

    #[test]
    fn cap_eviction_of_a_parent_refreshes_its_childrens_memos() {
        let mut c = EntityCache::with_limits(CacheLimits {
            max_entities: 4,
            ..CacheLimits::default()
        });
        c.insert_process(proc_rec(1, None, ObjectState::Created, "init"));
        c.insert_process(proc_rec(2, Some(1), ObjectState::Created, "bash"));
        let held = c.ancestry(&oid(2)).unwrap();
        assert_eq!(exes(&held), ["bash", "init"]);
        for i in 3..=5 {
            c.insert_process(proc_rec(i, None, ObjectState::Created, "x"));
        }
        // Process 1 was the least recently used: evicted; 2's memo no longer holds it.
        assert!(c.process(&oid(1)).is_none());
        let ctx = c.resolve(&oid(2)).unwrap();
        assert_eq!(exes(&ctx.ancestry), ["bash"]);
        assert_eq!(ctx.evicted_parent, Some(oid(1)));
        assert!(c.eviction_stats().over_cap >= 1);
        assert!(c.len() <= 4);
    }

    #[test]
    fn a_popular_file_is_queued_for_ageing_once() {
        let mut c = EntityCache::with_limits(CacheLimits {
            exit_grace_ns: 10,
            ..CacheLimits::default()
        });
        c.insert_file(File {
            oid: [7; 20],
            ..File::default()
        });
        // 10,000 short-lived processes each read the same file, then exit.
        for i in 0..10_000i64 {
            c.advance_clock(i * 100);
            c.insert_process(proc_rec(100 + i, None, ObjectState::Created, "cat"));
            assert!(c.reference_file(&[7; 20], Some(&oid(100 + i))).is_some());
            c.note_exit(&oid(100 + i));
            c.evict_due();
        }
        assert!(c.unowned_files.len() <= 1, "{} queue entries for one file", c.unowned_files.len());
        assert!(c.exits.len() <= 2);
        assert!(c.file(&[7; 20]).is_some(), "referenced a moment ago: still cached");
    }

    #[test]
    fn a_process_naming_itself_as_parent_is_still_evicted() {
        let mut c = EntityCache::with_limits(CacheLimits {
            exit_grace_ns: 10,
            ..CacheLimits::default()
        });
        c.advance_clock(1);
        c.insert_process(proc_rec(7, Some(7), ObjectState::Created, "self"));
        c.note_exit(&oid(7));
        c.advance_clock(100);
        c.evict_due();
        assert_eq!(c.sizes().0, 0);
    }
}
