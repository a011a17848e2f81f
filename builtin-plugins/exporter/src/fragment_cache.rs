//! A small set-associative cache of encoded JSON fragments, keyed by shared entity.
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

/// Two-way set-associative fragment cache with `2^bits` slots.
pub(crate) struct FragmentCache<T> {
    slots: Vec<Slot<T>>,
    /// Per set: which of its two slots was used last.
    recent: Vec<u8>,
    shift: u32,
    hits: u64,
    misses: u64,
}

impl<T> FragmentCache<T> {
    /// A cache with `2^bits` slots (`bits` in 1..=16).
    pub(crate) fn new(bits: u32) -> FragmentCache<T> {
        let bits = bits.clamp(1, 16);
        let slots = (0..1usize << bits).map(|_| Slot { key: None, bytes: Vec::new(), mark: 0 }).collect();
        FragmentCache { slots, recent: vec![0; 1 << (bits - 1)], shift: 64 - (bits - 1), hits: 0, misses: 0 }
    }

    /// The fragment of `key`, building it with `build` on a miss. `build` writes the
    /// fragment and returns a split position the caller needs (e.g. where a per-record
    /// value goes).
    #[inline]
    pub(crate) fn get(&mut self, key: &RArc<T>, build: impl FnOnce(&T, &mut Vec<u8>) -> usize) -> (&[u8], usize) {
        let set = if self.recent.len() == 1 { 0 } else { (mix(&**key as *const T as usize as u64) >> self.shift) as usize };
        let is_key = |slot: &Slot<T>| slot.key.as_ref().is_some_and(|k| std::ptr::eq(&**k, &**key));
        let way = if is_key(&self.slots[2 * set]) {
            Some(0)
        } else if is_key(&self.slots[2 * set + 1]) {
            Some(1)
        } else {
            None
        };
        let way = match way {
            Some(way) => {
                self.hits += 1;
                way
            }
            None => {
                self.misses += 1;
                // Replace the way not used last.
                let way = 1 - self.recent[set] as usize;
                let slot = &mut self.slots[2 * set + way];
                slot.bytes.clear();
                slot.mark = build(key, &mut slot.bytes);
                slot.key = Some(key.clone());
                // A pathological entity must not pin a huge buffer for the rest of the run.
                if slot.bytes.capacity() > 64 * 1024 && slot.bytes.len() < 16 * 1024 {
                    slot.bytes.shrink_to(16 * 1024);
                }
                way
            }
        };
        self.recent[set] = way as u8;
        let slot = &self.slots[2 * set + way];
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

/// Spreads an address over 64 bits (murmur3's finaliser: non-linear, so addresses in
/// arithmetic progressions do not map to colliding sets).
#[inline(always)]
fn mix(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
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

    #[test]
    fn a_working_set_smaller_than_the_cache_stays_cached() {
        let mut cache = FragmentCache::<Vec<u64>>::new(10);
        // Interleave allocations so addresses form several arithmetic progressions.
        let mut keys = Vec::new();
        let mut spacers = Vec::new();
        for i in 0..200u64 {
            keys.push(RArc::new(vec![i]));
            spacers.push(vec![0u8; 100 + (i as usize % 3) * 1000]);
        }
        for _ in 0..10 {
            for k in &keys {
                cache.get(k, |_, o| {
                    o.push(1);
                    0
                });
            }
        }
        let (hits, misses) = cache.stats();
        assert_eq!(hits + misses, 2000);
        // 200 cold misses plus a few conflicts (random placement: typically < 150); the
        // linear address hash this replaced made nearly all 2000 accesses miss.
        assert!(misses < 1000, "too many conflict misses: {misses}");
    }
}
