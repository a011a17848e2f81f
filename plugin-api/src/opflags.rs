//! Operation flags (`opFlags`) and their names.

/// clone
pub const OP_CLONE: i32 = 1 << 0;
/// execve
pub const OP_EXEC: i32 = 1 << 1;
/// exit
pub const OP_EXIT: i32 = 1 << 2;
/// setuid
pub const OP_SETUID: i32 = 1 << 3;
/// setns
pub const OP_SETNS: i32 = 1 << 4;
/// accept
pub const OP_ACCEPT: i32 = 1 << 5;
/// connect
pub const OP_CONNECT: i32 = 1 << 6;
/// open
pub const OP_OPEN: i32 = 1 << 7;
/// read / recv
pub const OP_READ_RECV: i32 = 1 << 8;
/// write / send
pub const OP_WRITE_SEND: i32 = 1 << 9;
/// close
pub const OP_CLOSE: i32 = 1 << 10;
/// flow cut at shutdown
pub const OP_TRUNCATE: i32 = 1 << 11;
/// shutdown
pub const OP_SHUTDOWN: i32 = 1 << 12;
/// mmap
pub const OP_MMAP: i32 = 1 << 13;
/// periodic flow summary
pub const OP_DIGEST: i32 = 1 << 14;
/// mkdir
pub const OP_MKDIR: i32 = 1 << 15;
/// rmdir
pub const OP_RMDIR: i32 = 1 << 16;
/// link
pub const OP_LINK: i32 = 1 << 17;
/// unlink
pub const OP_UNLINK: i32 = 1 << 18;
/// symlink
pub const OP_SYMLINK: i32 = 1 << 19;
/// rename
pub const OP_RENAME: i32 = 1 << 20;

/// Rendering order of op names (upstream's: note CLOSE before WRITE/READ).
const ORDER: [(i32, &str, &str); 21] = [
    (OP_MKDIR, "MKDIR", "MKDIR"),
    (OP_RMDIR, "RMDIR", "RMDIR"),
    (OP_LINK, "LINK", "LINK"),
    (OP_SYMLINK, "SYMLINK", "SYMLINK"),
    (OP_UNLINK, "UNLINK", "UNLINK"),
    (OP_RENAME, "RENAME", "RENAME"),
    (OP_CLONE, "CLONE", "CLONE"),
    (OP_EXEC, "EXEC", "EXEC"),
    (OP_EXIT, "EXIT", "EXIT"),
    (OP_SETUID, "SETUID", "SETUID"),
    (OP_OPEN, "OPEN", "OPEN"),
    (OP_ACCEPT, "ACCEPT", "ACCEPT"),
    (OP_CONNECT, "CONNECT", "CONNECT"),
    (OP_CLOSE, "CLOSE", "CLOSE"),
    (OP_WRITE_SEND, "WRITE", "SEND"),
    (OP_READ_RECV, "READ", "RECV"),
    (OP_SETNS, "SETNS", "SETNS"),
    (OP_MMAP, "MMAP", "MMAP"),
    (OP_SHUTDOWN, "SHUTDOWN", "SHUTDOWN"),
    (OP_TRUNCATE, "TRUNCATE", "TRUNCATE"),
    (OP_DIGEST, "DIGEST", "DIGEST"),
];

/// Calls `f` with each op name set in `flags`, in upstream's order.
/// `network` selects `SEND`/`RECV` instead of `WRITE`/`READ` (computed per record type,
/// not memoised per value as upstream does).
pub fn for_each_name(flags: i32, network: bool, mut f: impl FnMut(&'static str)) {
    for (bit, name, net_name) in ORDER {
        if flags & bit != 0 {
            f(if network { net_name } else { name });
        }
    }
}

/// The op names of `flags` as a vector.
pub fn names(flags: i32, network: bool) -> Vec<&'static str> {
    let mut v = Vec::with_capacity(4);
    for_each_name(flags, network, |n| v.push(n));
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_in_upstream_order() {
        assert_eq!(super::names(1408, false), ["OPEN", "CLOSE", "READ"]);
        assert_eq!(super::names(1856, true), ["CONNECT", "CLOSE", "SEND", "RECV"]);
    }
}
