//! The `sfprocessor` binary.

/// Batches are allocated on one pipeline thread and freed on another, and a batch of
/// records is larger than glibc's mmap threshold; mimalloc serves both patterns without
/// fresh zeroed pages per batch (measured with bench/run.sh: see the README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_arena_eager_commit` in mimalloc.h (the Rust bindings do not name it; the
/// numbering is the same in mimalloc 2 and 3, and the crate versions are pinned).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
/// `mi_option_purge_delay` in mimalloc.h.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Return freed memory to the OS promptly and commit arena memory only as it is used:
    // peak RSS stays ~25 MB on bench/run.sh instead of ~65 MB, at the same speed.
    // SAFETY: plain option setters of the linked allocator, called before any thread starts.
    unsafe {
        // Transparent huge pages turn each re-commit of a purged arena range into a 2 MiB
        // page clear and double peak RSS (28 MB instead of 55 MB on the issue-4 benchmark,
        // same speed). A failure only means the kernel lacks the knob.
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0);
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0);
    }
    std::process::exit(sfprocessor::app::main_with_args(std::env::args_os()));
}
