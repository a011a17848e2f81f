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

use abi_stable::std_types::{RArc, ROption, RString, RVec};
use sysflow_plugin_api::{Container, File, Foid, ObjectState, Oid, Pod, Process};

use std::hash::BuildHasher;

use rustc_hash::{FxBuildHasher, FxHashMap, FxHashSet};

/// Fingerprint of a container or pod id, used to track which memos depend on it.
pub(crate) fn hash_str(s: &str) -> u64 {
    FxBuildHasher.hash_one(s)
}

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

/// The entity tables.
#[derive(Default)]
pub struct EntityCache {
    containers: FxHashMap<RString, RArc<Container>>,
    pods: FxHashMap<RString, RArc<Pod>>,
    processes: FxHashMap<Oid, ProcessSlots>,
    files: FxHashMap<Foid, RArc<File>>,
    memo: FxHashMap<Oid, ProcessContext>,
    dependents: FxHashMap<Dependency, FxHashSet<Oid>>,
    stats: AncestryStats,
}

/// Replaces `s` by its whitespace-trimmed form, allocating only if it changes.
fn trim_in_place(s: &mut RString) {
    let trimmed = s.trim();
    if trimmed.len() != s.len() {
        *s = RString::from(trimmed);
    }
}

impl EntityCache {
    /// An empty cache.
    pub fn new() -> EntityCache {
        EntityCache::default()
    }

    /// Empties every table (a header arrived). Capacity is kept for the next segment.
    pub fn reset(&mut self) {
        self.containers.clear();
        self.pods.clear();
        self.processes.clear();
        self.files.clear();
        self.memo.clear();
        self.dependents.clear();
    }

    /// Stores a container (last record wins). Name and image are trimmed as upstream's
    /// flattener does when it copies them.
    pub fn insert_container(&mut self, mut c: Container) {
        trim_in_place(&mut c.name);
        trim_in_place(&mut c.image);
        self.invalidate(Dependency::Container(hash_str(&c.id)));
        self.containers.insert(c.id.clone(), RArc::new(c));
    }

    /// Stores a pod (last record wins). Name, node name and namespace are trimmed as
    /// upstream's flattener does.
    pub fn insert_pod(&mut self, mut p: Pod) {
        trim_in_place(&mut p.name);
        trim_in_place(&mut p.node_name);
        trim_in_place(&mut p.namespace);
        self.invalidate(Dependency::Pod(hash_str(&p.id)));
        self.pods.insert(p.id.clone(), RArc::new(p));
    }

    /// Stores a process in the slot of its state; `exe` and `exe_args` are trimmed.
    pub fn insert_process(&mut self, mut p: Process) {
        trim_in_place(&mut p.exe);
        trim_in_place(&mut p.exe_args);
        let slot = p.state as usize;
        let oid = p.oid;
        let slots = self.processes.entry(oid).or_default();
        slots.slots[slot] = Some(RArc::new(p));
        // A lower-priority state (e.g. REUP after CREATED) changes nothing a lookup sees.
        let changed = match (slots.best(), &slots.slots[slot]) {
            (Some(best), Some(new)) => std::ptr::eq(&**best, &**new),
            _ => true,
        };
        if changed {
            self.invalidate(Dependency::Process(oid));
        }
    }

    /// Stores a file (last record wins); the path is trimmed as upstream's flattener does.
    pub fn insert_file(&mut self, mut f: File) {
        trim_in_place(&mut f.path);
        self.files.insert(f.oid, RArc::new(f));
    }

    fn invalidate(&mut self, dependency: Dependency) {
        if let Some(oids) = self.dependents.remove(&dependency) {
            for oid in oids {
                self.memo.remove(&oid);
            }
        }
    }

    /// The cached process for `oid` (MODIFIED > CREATED > REUP).
    pub fn process(&self, oid: &Oid) -> Option<&RArc<Process>> {
        self.processes.get(oid).and_then(ProcessSlots::best)
    }

    /// The cached file for `oid`.
    pub fn file(&self, oid: &Foid) -> Option<&RArc<File>> {
        self.files.get(oid)
    }

    /// The cached container with this id.
    pub fn container(&self, id: &str) -> Option<&RArc<Container>> {
        self.containers.get(id)
    }

    /// The cached pod with this id.
    pub fn pod(&self, id: &str) -> Option<&RArc<Pod>> {
        self.pods.get(id)
    }

    /// Ancestry-walk anomalies so far.
    pub fn ancestry_stats(&self) -> AncestryStats {
        self.stats
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

    /// The ancestry of `oid`, or `None` if the process is not cached.
    pub fn ancestry(&mut self, oid: &Oid) -> Option<Ancestry> {
        self.resolve(oid).map(|c| c.ancestry)
    }

    /// Resolves a process OID to its ancestry, container and pod (memoised until an
    /// entity it depends on changes). `None` when the process itself is not cached.
    /// The result holds `RArc` handles only (plus ids when something is missing).
    pub fn resolve(&mut self, oid: &Oid) -> Option<ProcessContext> {
        if let Some(context) = self.memo.get(oid) {
            return Some(context.clone());
        }
        let context = self.build_context(oid)?;
        self.memo.insert(*oid, context.clone());
        Some(context)
    }

    fn depend(&mut self, dependency: Dependency, oid: Oid) {
        self.dependents.entry(dependency).or_default().insert(oid);
    }

    fn build_context(&mut self, oid: &Oid) -> Option<ProcessContext> {
        let first = self.processes.get(oid).and_then(ProcessSlots::best)?.clone();
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
            match self.processes.get(&poid).and_then(ProcessSlots::best) {
                Some(parent) => current = parent.clone(),
                None => {
                    missing_parent = Some(poid);
                    break;
                }
            }
        }

        let mut context = ProcessContext {
            ancestry: RArc::new(RVec::new()),
            container: ROption::RNone,
            pod: ROption::RNone,
            missing_container: None,
            missing_pod: None,
        };
        for p in ancestry.iter() {
            self.depend(Dependency::Process(p.oid), *oid);
        }
        if let Some(poid) = missing_parent {
            self.depend(Dependency::Process(poid), *oid);
        }
        context.ancestry = RArc::new(ancestry);

        if let ROption::RSome(cid) = &first.container_id {
            self.depend(Dependency::Container(hash_str(cid)), *oid);
            match self.containers.get(cid.as_str()).cloned() {
                Some(c) => {
                    if let ROption::RSome(pid) = &c.pod_id {
                        self.depend(Dependency::Pod(hash_str(pid)), *oid);
                        match self.pods.get(pid.as_str()) {
                            Some(p) => context.pod = ROption::RSome(p.clone()),
                            None => context.missing_pod = Some(pid.clone()),
                        }
                    }
                    context.container = ROption::RSome(c);
                }
                None => context.missing_container = Some(cid.clone()),
            }
        }
        Some(context)
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
}
