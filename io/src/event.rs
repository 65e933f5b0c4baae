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
    wakers: Vec<Waker>,
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
            std::mem::take(&mut st.wakers)
        };
        for w in wakers {
            w.wake();
        }
    }

    /// Resolves once [`Event::notify`] was called after `generation` was read.
    pub fn changed_since(&self, generation: u64) -> impl Future<Output = ()> + '_ {
        Wait { event: self, generation }
    }
}

struct Wait<'a> {
    event: &'a Event,
    generation: u64,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.event.state.borrow_mut();
        if st.generation != self.generation {
            return Poll::Ready(());
        }
        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            st.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}
