//! Size and depth limits on policies, the same at start-up and on reload.
//!
//! Parsing, macro expansion, compilation, evaluation and dropping of a condition recurse
//! over its tree. These limits bound that recursion (so that it fits the stack of the
//! thread it runs on, see [`COMPILE_STACK_SIZE`]) and bound the memory and time a policy
//! file can make the engine spend. An item that exceeds one is refused with an error
//! naming it and its position, like any other compile error.

use crate::ir::Cond;

/// Deepest nesting of parentheses and `not` in one condition as written (Falco
/// conditions and Sigma `condition` expressions).
pub const MAX_CONDITION_NESTING: usize = 100;

/// Longest chain of macro references (a macro using a macro using …) and of macro
/// `append`s to one macro beyond this nesting; lists naming lists are expanded this deep.
pub const MAX_REFERENCE_DEPTH: usize = 32;

/// Deepest condition tree after macros and lists are expanded (each `and`, `or`, `not`
/// and comparison is one level).
pub const MAX_CONDITION_DEPTH: usize = 500;

/// Most tree nodes (`and`, `or`, `not`, comparisons) of one condition after macros and
/// exceptions are expanded (a node with its position costs ~200 bytes: ~100 MB here).
pub const MAX_EXPANDED_NODES: usize = 500_000;

/// Most list elements (right-hand values of `in`/`pmatch` and comparisons) of one
/// condition after lists are expanded: a 100,000-item list counts 100,000.
pub const MAX_EXPANDED_ELEMENTS: usize = 2_000_000;

/// Deepest nesting of YAML sequences and mappings in a rule file (Falco's own files nest
/// 4 levels: items, exceptions, values, tuples); deeper documents are refused before
/// anything recurses over them.
pub const MAX_YAML_NESTING: usize = 64;

/// Most items one list may have, after its `append`s.
pub const MAX_LIST_ITEMS: usize = 1_000_000;

/// Most errors listed per policy file: the rest are counted ("... and N more"), so that
/// a file of garbage gives a readable report (the set is refused either way).
pub const MAX_ERRORS_PER_FILE: usize = 20;

/// Stack of the threads that parse and compile policies (start-up compile, `-test`,
/// `-listrules` and the reload monitor): comfortably above what the limits above let a
/// condition need.
pub const COMPILE_STACK_SIZE: usize = 64 << 20;

/// The shape of a condition tree, as the limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Levels ([`MAX_CONDITION_DEPTH`]).
    pub depth: usize,
    /// Nodes ([`MAX_EXPANDED_NODES`]).
    pub nodes: usize,
    /// List elements ([`MAX_EXPANDED_ELEMENTS`]).
    pub elements: usize,
}

impl Shape {
    /// Measures a condition tree without recursion.
    pub fn of(c: &Cond) -> Shape {
        let mut shape = Shape::default();
        let mut stack = vec![(c, 1usize)];
        while let Some((c, d)) = stack.pop() {
            shape.depth = shape.depth.max(d);
            shape.nodes += 1;
            match c {
                Cond::And(v) | Cond::Or(v) => stack.extend(v.iter().map(|x| (x, d + 1))),
                Cond::Not(x) => stack.push((x, d + 1)),
                Cond::Cmp { rhs, .. } => shape.elements += rhs.len(),
                Cond::Const(_) | Cond::Exists(_) => {}
            }
        }
        shape
    }

    /// Why a condition of this shape is refused, if it is.
    pub fn exceeded(&self) -> Option<String> {
        let Shape { depth, nodes, elements } = *self;
        if depth > MAX_CONDITION_DEPTH {
            Some(format!("condition nests {depth} levels deep after macro expansion (limit {MAX_CONDITION_DEPTH})"))
        } else if nodes > MAX_EXPANDED_NODES {
            Some(format!("condition expands to {nodes} nodes (limit {MAX_EXPANDED_NODES})"))
        } else if elements > MAX_EXPANDED_ELEMENTS {
            Some(format!("condition expands to {elements} list elements (limit {MAX_EXPANDED_ELEMENTS})"))
        } else {
            None
        }
    }
}

/// Runs `f` on a thread with a [`COMPILE_STACK_SIZE`] stack and returns its result; if
/// no such thread can be started, runs it on the calling thread (the limits keep the
/// recursion of a policy small; the big stack is a margin). A panic in `f` is resumed here.
pub fn on_compile_thread<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let slot = parking_lot::Mutex::new(Some(f));
    let ran = std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("policy-compile".into())
            .stack_size(COMPILE_STACK_SIZE)
            .spawn_scoped(s, || slot.lock().take().map(|f| f()));
        // A thread that did not start dropped its closure unrun: `f` is still in the slot.
        let handle = spawned.ok()?;
        handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    });
    match (ran, slot.into_inner()) {
        (Some(v), _) => v,
        (None, Some(f)) => f(),
        (None, None) => unreachable!("the compile thread took the closure and returned its result"),
    }
}
