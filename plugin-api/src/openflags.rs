//! Open flags (`FileFlow.openFlags`, the capture library's portable encoding) and their names.

/// Open-flag masks and names in rendering order; a name applies when all its bits are set.
pub const MASKS: [(i32, &str); 14] = [
    (1, "RDONLY"),
    (2, "WRONLY"),
    (3, "RDWR"),
    (4, "CREAT"),
    (32, "EXCL"),
    (256, "TRUNC"),
    (8, "APPEND"),
    (64, "NONBLOCK"),
    (16, "DSYNC"),
    (512, "DIRECT"),
    (2048, "LARGEFILE"),
    (1024, "DIRECTORY"),
    (4096, "CLOEXEC"),
    (128, "SYNC"),
];

/// Calls `f` with each open-flag name of `flags`; `NONE` when `flags` is 0.
pub fn for_each_name(flags: i32, mut f: impl FnMut(&'static str)) {
    if flags == 0 {
        f("NONE");
        return;
    }
    for (mask, name) in MASKS {
        if flags & mask == mask {
            f(name);
        }
    }
}

/// The open-flag names of `flags` as a vector.
pub fn names(flags: i32) -> Vec<&'static str> {
    let mut v = Vec::with_capacity(3);
    for_each_name(flags, |n| v.push(n));
    v
}

/// `sf.file.is_open_read`.
pub fn is_open_read(flags: i32) -> bool {
    flags & 1 != 0
}

/// `sf.file.is_open_write`.
pub fn is_open_write(flags: i32) -> bool {
    flags & 2 != 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders() {
        assert_eq!(super::names(0), ["NONE"]);
        assert_eq!(super::names(3), ["RDONLY", "WRONLY", "RDWR"]);
        assert_eq!(super::names(4097), ["RDONLY", "CLOEXEC"]);
    }
}
