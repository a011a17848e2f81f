//! What Falco names mean: upstream's meanings (`sysflow`, the default) or Falco's own
//! (`falco`), chosen with the policy engine's `dialect` key.
//!
//! Upstream gave some Falco names other meanings (`fd.name` is the base name, `evt.type`
//! holds SysFlow operation names). Its policy files rely on them, so they stay the
//! default; under `"dialect": "falco"` these names mean what Falco's documentation says.

use crate::{
    attributes::{self, Attr},
    error::closest,
};

/// The meaning of Falco names in conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// Upstream's meanings (default).
    #[default]
    Sysflow,
    /// Falco's meanings.
    Falco,
}

impl Dialect {
    /// Parses the `dialect` key's value.
    pub fn from_key(value: Option<&str>) -> Result<Dialect, String> {
        match value {
            None | Some("sysflow") => Ok(Dialect::Sysflow),
            Some("falco") => Ok(Dialect::Falco),
            Some(other) => Err(format!("key 'dialect': invalid value '{other}' (expected sysflow or falco)")),
        }
    }

    /// The key's value.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sysflow => "sysflow",
            Dialect::Falco => "falco",
        }
    }
}

/// Falco fields whose Falco meaning differs from upstream's alias, or that upstream does
/// not alias, with the SysFlow attribute that fills them (docs/policies.md, "Dialects").
pub const FALCO_FIELDS: &[(&str, Attr)] = &[
    // Falco: the full path (upstream: the base name).
    ("fd.name", Attr::FilePath),
    ("user.uid", Attr::ProcUid),
    ("proc.exepath", Attr::ProcExe),
    ("proc.pexepath", Attr::PprocExe),
    ("k8s.ns.name", Attr::PodNamespace),
    ("k8s.pod.name", Attr::PodName),
    // The record's 1-based number in the policy engine's input (docs/policies.md).
    ("evt.num", Attr::EvtNum),
    ("proc.duration", Attr::ProcDuration),
    ("container.image.repository", Attr::ContImageRepository),
    ("fd.type", Attr::FdType),
    ("proc.cwd", Attr::ProcCwd),
    ("evt.arg.flags", Attr::EvtArgFlags),
];

/// The attribute a Falco field means under `"dialect": "falco"` when it differs from
/// upstream's meaning ([`FALCO_FIELDS`]).
pub fn falco_field(name: &str) -> Option<Attr> {
    FALCO_FIELDS.iter().find(|(n, _)| *n == name).map(|&(_, a)| a)
}

/// Falco `evt.type` values (system call names) and the SysFlow operation each is
/// recorded as. A system call SysFlow does not record matches nothing.
pub const SYSCALL_OPS: &[(&str, &str)] = &[
    ("execve", "EXEC"),
    ("execveat", "EXEC"),
    ("clone", "CLONE"),
    ("clone3", "CLONE"),
    ("fork", "CLONE"),
    ("vfork", "CLONE"),
    ("exit", "EXIT"),
    ("exit_group", "EXIT"),
    ("procexit", "EXIT"),
    ("setuid", "SETUID"),
    ("setresuid", "SETUID"),
    ("setreuid", "SETUID"),
    ("setns", "SETNS"),
    ("open", "OPEN"),
    ("openat", "OPEN"),
    ("openat2", "OPEN"),
    ("creat", "OPEN"),
    ("open_by_handle_at", "OPEN"),
    ("connect", "CONNECT"),
    ("accept", "ACCEPT"),
    ("accept4", "ACCEPT"),
    ("read", "READ"),
    ("pread", "READ"),
    ("readv", "READ"),
    ("preadv", "READ"),
    ("recvfrom", "RECV"),
    ("recvmsg", "RECV"),
    ("recvmmsg", "RECV"),
    ("write", "WRITE"),
    ("pwrite", "WRITE"),
    ("writev", "WRITE"),
    ("pwritev", "WRITE"),
    ("sendto", "SEND"),
    ("sendmsg", "SEND"),
    ("sendmmsg", "SEND"),
    ("close", "CLOSE"),
    ("shutdown", "SHUTDOWN"),
    ("truncate", "TRUNCATE"),
    ("ftruncate", "TRUNCATE"),
    ("mmap", "MMAP"),
    ("mkdir", "MKDIR"),
    ("mkdirat", "MKDIR"),
    ("rmdir", "RMDIR"),
    ("link", "LINK"),
    ("linkat", "LINK"),
    ("unlink", "UNLINK"),
    ("unlinkat", "UNLINK"),
    ("symlink", "SYMLINK"),
    ("symlinkat", "SYMLINK"),
    ("rename", "RENAME"),
    ("renameat", "RENAME"),
    ("renameat2", "RENAME"),
];

/// The SysFlow operation a Falco `evt.type` value is recorded as (`None`: not recorded).
pub fn syscall_op(name: &str) -> Option<&'static str> {
    SYSCALL_OPS.iter().find(|(s, _)| *s == name).map(|(_, op)| *op)
}

/// The attribute name closest to `name` (for "did you mean" hints) among the names that
/// resolve in `dialect`, if one is close: within [`crate::error::MAX_NAME_EDITS`] edits, or a known
/// name that `name` extends by a few characters (`sf.proc.username` → `sf.proc.user`).
pub fn suggest(name: &str, dialect: Dialect) -> Option<&'static str> {
    /// How many characters beyond a known name an unknown one may have to be told it.
    const MAX_EXTRA_CHARS: usize = 4;
    let base = name.split_once('[').map(|(b, _)| b).unwrap_or(name);
    let falco = FALCO_FIELDS.iter().map(|(n, _)| *n).filter(move |_| dialect == Dialect::Falco);
    let candidates = || attributes::names().chain(falco.clone());
    let extended = candidates()
        .filter(|n| base.starts_with(n) && base.len() - n.len() <= MAX_EXTRA_CHARS && base.len() > n.len())
        .max_by_key(|n| n.len());
    extended.or_else(|| closest(base, candidates()))
}

#[cfg(test)]
mod suggestion_tests {
    use super::*;

    #[test]
    fn suggestions_follow_the_dialect() {
        let sysflow = Dialect::Sysflow;
        assert_eq!(suggest("sf.proc.username", sysflow), Some("sf.proc.user"));
        assert_eq!(suggest("sf.prog.args", sysflow), Some("sf.proc.args"));
        assert_eq!(suggest("sf.poc.name", sysflow), Some("sf.proc.name"));
        assert_eq!(suggest("k8s.ns.name", sysflow), None);
        assert_eq!(suggest("sf.net.mask", sysflow), None);
        assert_eq!(suggest("sf.file.typechar", sysflow), Some("sf.file.type"));
        // Falco aliases are candidates too; Falco-only fields only under the falco dialect.
        assert_eq!(suggest("proc.nmae", sysflow), Some("proc.name"));
        assert_eq!(suggest("fd.tpye", sysflow), None);
        assert_eq!(suggest("fd.tpye", Dialect::Falco), Some("fd.type"));
        assert_eq!(suggest("k8s.pod.nam", Dialect::Falco), Some("k8s.pod.name"));
    }
}
