//! A small direct-mapped cache of encoded JSON fragments, keyed by shared entity.
//!
//! Most of a record's bytes describe entities that many records share (the header, the
//! container, the pod, the process and its ancestry). The reader hands those out as
//! `RArc`s, so the entity's address identifies it. A slot keeps a clone of the `RArc` it
//! was built from: the entity cannot be freed (and its address reused by another
//! entity) while its fragment is cached, and entities are immutable behind the `RArc`,
//! so a pointer match always means the fragment is current. Slots reuse their buffers,
//! so a warm cache allocates nothing.

use sysflow_plugin_api::abi_stable::std_types::RArc;

/// One cached fragment.
struct Slot<T> {
    key: Option<RArc<T>>,
    bytes: Vec<u8>,
    mark: usize,
}

/// Direct-mapped fragment cache with `2^bits` slots.
pub(crate) struct FragmentCache<T> {
    slots: Vec<Slot<T>>,
    shift: u32,
    hits: u64,
    misses: u64,
}

impl<T> FragmentCache<T> {
    /// A cache with `2^bits` slots (`bits` in 1..=16).
    pub(crate) fn new(bits: u32) -> FragmentCache<T> {
        let bits = bits.clamp(1, 16);
        let slots = (0..1usize << bits).map(|_| Slot { key: None, bytes: Vec::new(), mark: 0 }).collect();
        FragmentCache { slots, shift: 64 - bits, hits: 0, misses: 0 }
    }

    /// The fragment of `key`, building it with `build` on a miss. `build` writes the
    /// fragment and returns a split position the caller needs (e.g. where a per-record
    /// value goes).
    #[inline]
    pub(crate) fn get(&mut self, key: &RArc<T>, build: impl FnOnce(&T, &mut Vec<u8>) -> usize) -> (&[u8], usize) {
        let addr = &**key as *const T as usize as u64;
        // Fibonacci hashing spreads allocator-aligned addresses over the slots.
        let index = (addr.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize;
        let slot = &mut self.slots[index];
        let hit = slot.key.as_ref().is_some_and(|k| std::ptr::eq(&**k, &**key));
        if hit {
            self.hits += 1;
        } else {
            self.misses += 1;
            slot.bytes.clear();
            slot.mark = build(key, &mut slot.bytes);
            slot.key = Some(key.clone());
            // A pathological entity must not pin a huge buffer for the rest of the run.
            if slot.bytes.capacity() > 64 * 1024 && slot.bytes.len() < 16 * 1024 {
                slot.bytes.shrink_to(16 * 1024);
            }
        }
        (&slot.bytes, slot.mark)
    }

    /// `(hits, misses)` so far.
    pub(crate) fn stats(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Drops every cached fragment and the entities it pins.
    pub(crate) fn clear(&mut self) {
        for slot in &mut self.slots {
            slot.key = None;
            slot.bytes = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_by_identity_not_by_value() {
        let mut cache = FragmentCache::<String>::new(4);
        let a = RArc::new("a".to_string());
        let a_again = RArc::new("a".to_string());
        let build = |s: &String, out: &mut Vec<u8>| {
            out.extend_from_slice(s.as_bytes());
            s.len()
        };
        assert_eq!(cache.get(&a, build).0, b"a");
        assert_eq!(cache.get(&a.clone(), |_, _| unreachable!("must hit")).0, b"a");
        assert_eq!(cache.get(&a_again, build).0, b"a");
        let (hits, misses) = cache.stats();
        assert_eq!(hits, 1);
        assert!(misses >= 2);
    }
}
