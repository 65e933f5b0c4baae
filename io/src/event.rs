//! A shard-local broadcast: tasks wait for "something changed", the writer
//! announces it. No locks, no allocation per wait beyond the waker. Shared
//! by the WAL (group commit) and the LSM (flush, compaction and stall waits).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
struct State {
    generation: u64,
    /// Waiters of the current generation; `None` where a wait was dropped.
    wakers: Vec<Option<Waker>>,
    /// Slots of dropped waits, reused before the list grows.
    free: Vec<usize>,
}

/// See the module doc.
#[derive(Debug, Default, Clone)]
pub struct Event {
    state: Rc<RefCell<State>>,
}

impl Event {
    /// The current generation; pass it to [`Event::changed_since`].
    pub fn generation(&self) -> u64 {
        self.state.borrow().generation
    }

    /// Wakes every waiter.
    pub fn notify(&self) {
        let wakers = {
            let mut st = self.state.borrow_mut();
            st.generation += 1;
            st.free.clear();
            std::mem::take(&mut st.wakers)
        };
        for w in wakers.into_iter().flatten() {
            w.wake();
        }
    }

    /// Resolves once [`Event::notify`] was called after `generation` was read.
    pub fn changed_since(&self, generation: u64) -> impl Future<Output = ()> + '_ {
        Wait { event: self, generation, slot: None }
    }
}

struct Wait<'a> {
    event: &'a Event,
    generation: u64,
    /// Where this wait's waker sits in the list of its generation. A wait
    /// polled again (its task woke for another reason) replaces its own
    /// waker instead of adding one: `Waker::will_wake` cannot be relied on
    /// to spot duplicates (glommio's vtables compare unequal across codegen
    /// units), and every leaked clone holds a task reference (glommio's
    /// count is an i16).
    slot: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let event = self.event;
        let mut st = event.state.borrow_mut();
        if st.generation != self.generation {
            return Poll::Ready(());
        }
        match self.slot {
            Some(i) => st.wakers[i] = Some(cx.waker().clone()),
            None => {
                let waker = Some(cx.waker().clone());
                let i = match st.free.pop() {
                    Some(i) => {
                        st.wakers[i] = waker;
                        i
                    }
                    None => {
                        st.wakers.push(waker);
                        st.wakers.len() - 1
                    }
                };
                self.slot = Some(i);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    /// A wait dropped before its event fired (it lost a race in a select)
    /// gives its waker back: each held clone is a task reference.
    fn drop(&mut self) {
        let Some(i) = self.slot else { return };
        let mut st = self.event.state.borrow_mut();
        if st.generation == self.generation {
            st.wakers[i] = None;
            st.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_wait_polled_many_times_holds_one_waker() {
        let event = Event::default();
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let g = event.generation();
        let mut wait = Box::pin(event.changed_since(g));
        for _ in 0..1000 {
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(event.state.borrow().wakers.len(), 1);
        // Only the waker itself and the one in the list are alive.
        assert_eq!(Arc::strong_count(&counter), 3);
        event.notify();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(wait.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn waits_dropped_unfired_release_their_wakers_and_slots() {
        let event = Event::default();
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        for _ in 0..100_000 {
            let mut wait = Box::pin(event.changed_since(event.generation()));
            assert!(wait.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(Arc::strong_count(&counter), 2, "dropped waits kept their wakers");
        assert_eq!(event.state.borrow().wakers.len(), 1, "slots were not reused");
        event.notify();
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
    }
}
