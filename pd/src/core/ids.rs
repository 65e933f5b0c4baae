//! Id allocation from persisted reservations.
//!
//! Regions, peers and stores share one id space, starting at 1 (0 means
//! "none"). The allocator hands out ids below a reserved `end`; before it
//! may go past `end` a new end must be persisted, so that a restarted (or
//! newly elected) meta service, which resumes at the persisted end, never
//! hands out an id twice. Ids between the last one handed out and the
//! persisted end are skipped after a restart; that gap is the price of not
//! persisting every allocation.

/// The allocator needs a new reservation: persist `new_end`, then call
/// [`IdAllocator::on_reserved`] and retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NeedReserve {
    /// The end to persist (exclusive).
    pub new_end: u64,
}

/// Hands out ids from a reserved range `[next, end)`.
///
/// Invariant: every id handed out is `< end`, and `end` was persisted
/// before the id left the meta service. `next` may pass `end` only through
/// [`IdAllocator::observe`], and then nothing is handed out until a new
/// reservation covers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdAllocator {
    next: u64,
    end: u64,
    batch: u64,
}

impl IdAllocator {
    /// A fresh allocator: nothing reserved, the first id will be 1.
    /// `batch` is the least a reservation adds (at least 1).
    pub fn new(batch: u64) -> Self {
        Self { next: 1, end: 1, batch: batch.max(1) }
    }

    /// Resumes after a restart from the last persisted `end`: every id
    /// below it may have been handed out, so the next id is `end`.
    pub fn resume(end: u64, batch: u64) -> Self {
        let end = end.max(1);
        Self { next: end, end, batch: batch.max(1) }
    }

    /// The next id that would be handed out.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// The reserved (and persisted) end, exclusive.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Hands out `count` consecutive ids and returns the first.
    ///
    /// # Errors
    /// [`NeedReserve`] when the reservation does not cover them; the
    /// allocator is unchanged. `new_end` covers `count` plus one batch, and
    /// saturates at `u64::MAX` (a reservation that still does not cover the
    /// ids means the id space is exhausted).
    pub fn alloc(&mut self, count: u64) -> Result<u64, NeedReserve> {
        match self.next.checked_add(count) {
            Some(after) if after <= self.end => {
                let first = self.next;
                self.next = after;
                Ok(first)
            }
            _ => Err(NeedReserve { new_end: self.next.saturating_add(count).saturating_add(self.batch) }),
        }
    }

    /// A reservation up to `new_end` was persisted. A smaller end than the
    /// current one (a late duplicate) changes nothing.
    pub fn on_reserved(&mut self, new_end: u64) {
        self.end = self.end.max(new_end);
    }

    /// An id was chosen elsewhere (a bootstrap request, a record): never
    /// hand it out. Returns the reservation to persist when `id` lies at or
    /// past the reserved end, since a restart resumes from the persisted end.
    pub fn observe(&mut self, id: u64) -> Option<NeedReserve> {
        if id >= self.next {
            self.next = id.saturating_add(1);
        }
        (id >= self.end).then(|| NeedReserve { new_end: id.saturating_add(1).saturating_add(self.batch) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_within_reservation_then_asks_for_more() {
        let mut ids = IdAllocator::new(10);
        assert_eq!(ids.alloc(1), Err(NeedReserve { new_end: 12 }));
        ids.on_reserved(12);
        assert_eq!(ids.alloc(1), Ok(1));
        assert_eq!(ids.alloc(10), Ok(2));
        assert_eq!(ids.alloc(1), Err(NeedReserve { new_end: 23 }));
        assert_eq!(ids.next(), 12);
        // A late, smaller reservation never shrinks the range.
        ids.on_reserved(5);
        assert_eq!(ids.end(), 12);
    }

    #[test]
    fn resume_continues_at_the_persisted_end() {
        let mut ids = IdAllocator::new(100);
        ids.on_reserved(101);
        assert_eq!(ids.alloc(3), Ok(1));
        let mut again = IdAllocator::resume(ids.end(), 100);
        assert_eq!(again.alloc(1), Err(NeedReserve { new_end: 202 }));
        again.on_reserved(202);
        assert_eq!(again.alloc(1), Ok(101));
    }

    #[test]
    fn observed_ids_are_skipped_and_reserved() {
        let mut ids = IdAllocator::new(10);
        ids.on_reserved(50);
        assert_eq!(ids.observe(7), None);
        assert_eq!(ids.alloc(1), Ok(8));
        assert_eq!(ids.observe(70), Some(NeedReserve { new_end: 81 }));
        assert!(ids.alloc(1).is_err());
        ids.on_reserved(81);
        assert_eq!(ids.alloc(1), Ok(71));
    }

    #[test]
    fn exhaustion_saturates_instead_of_wrapping() {
        let mut ids = IdAllocator::resume(u64::MAX - 1, 10);
        let NeedReserve { new_end } = ids.alloc(5).unwrap_err();
        assert_eq!(new_end, u64::MAX);
        ids.on_reserved(new_end);
        assert!(ids.alloc(5).is_err());
        assert_eq!(ids.alloc(1), Ok(u64::MAX - 1));
    }
}
