//! The little the client needs from a runtime, without depending on one:
//! a timer, a deadline around a future, joining futures, and `block_on`
//! for the blocking API. Answers are woken by the connections' reader
//! threads and sleeps by one timer thread, so the client's futures run
//! under any executor (tokio, async-std, `futures`) or none.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// A boxed future, as returned through trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Default)]
struct TimerState {
    /// Deadlines by wake-up order; entries whose sleep is gone are skipped.
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    wakers: HashMap<u64, Waker>,
}

struct Timer {
    state: Mutex<TimerState>,
    changed: Condvar,
    next_id: AtomicU64,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let t: &'static Timer = Box::leak(Box::new(Timer {
            state: Mutex::new(TimerState::default()),
            changed: Condvar::new(),
            next_id: AtomicU64::new(1),
        }));
        std::thread::Builder::new()
            .name("ekv-client-timer".into())
            .spawn(move || t.run())
            .expect("spawning the client's timer thread");
        t
    })
}

impl Timer {
    fn run(&self) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            let now = Instant::now();
            let mut due = Vec::new();
            while let Some(Reverse((at, id))) = st.heap.peek().copied() {
                if at > now {
                    break;
                }
                st.heap.pop();
                if let Some(w) = st.wakers.remove(&id) {
                    due.push(w);
                }
            }
            if !due.is_empty() {
                // Wake outside the lock, then look again: a sleep may have
                // been registered meanwhile, and its notice went to no one.
                drop(st);
                due.into_iter().for_each(Waker::wake);
                st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // The wait is computed under the lock it is taken with, so no
            // registration can slip between the two.
            st = match st.heap.peek().map(|Reverse((at, _))| at.saturating_duration_since(now)) {
                Some(d) => self.changed.wait_timeout(st, d).unwrap_or_else(PoisonError::into_inner).0,
                None => self.changed.wait(st).unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    fn register(&self, at: Instant, id: u64, waker: &Waker) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let earliest = st.heap.peek().is_none_or(|Reverse((first, _))| at < *first);
        if st.wakers.insert(id, waker.clone()).is_none() {
            st.heap.push(Reverse((at, id)));
        }
        drop(st);
        // Only a new earliest deadline needs the thread's attention; in a
        // busy client most deadlines lie behind one already waited for.
        if earliest {
            self.changed.notify_one();
        }
    }

    fn cancel(&self, id: u64) {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).wakers.remove(&id);
    }
}

/// A future that completes at `at`.
#[derive(Debug)]
pub struct Sleep {
    at: Instant,
    id: u64,
    registered: bool,
}

/// Completes at `at`.
pub fn sleep_until(at: Instant) -> Sleep {
    Sleep { at, id: 0, registered: false }
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let t = timer();
        if self.id == 0 {
            self.id = t.next_id.fetch_add(1, Ordering::Relaxed);
        }
        t.register(self.at, self.id, cx.waker());
        self.registered = true;
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if self.registered {
            timer().cancel(self.id);
        }
    }
}

/// `fut`, or `None` if `deadline` comes first.
pub async fn with_deadline<F: Future>(fut: F, deadline: Instant) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut sleep = sleep_until(deadline);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        match Pin::new(&mut sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Runs all `futs` concurrently; their outputs in order.
pub async fn join_all<T>(futs: Vec<BoxFuture<'_, T>>) -> Vec<T> {
    let mut futs: Vec<Option<BoxFuture<'_, T>>> = futs.into_iter().map(Some).collect();
    let mut out: Vec<Option<T>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (slot, result) in futs.iter_mut().zip(out.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *result = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|v| v.expect("every joined future completed")).collect()
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `fut` to completion on this thread (the blocking API). Not for
/// use inside an async runtime's worker: it blocks the thread.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Sleeps for `d` (async).
pub fn sleep(d: Duration) -> Sleep {
    sleep_until(Instant::now() + d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeps_end_no_earlier_than_their_deadline_and_in_order() {
        let start = Instant::now();
        let order = Arc::new(Mutex::new(Vec::new()));
        let futs: Vec<BoxFuture<'_, ()>> = [30u64, 10, 20]
            .into_iter()
            .map(|ms| {
                let order = order.clone();
                Box::pin(async move {
                    sleep(Duration::from_millis(ms)).await;
                    order.lock().unwrap().push(ms);
                }) as BoxFuture<'_, ()>
            })
            .collect();
        block_on(join_all(futs));
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert_eq!(*order.lock().unwrap(), vec![10, 20, 30]);
    }

    #[test]
    fn a_deadline_cuts_a_future_that_never_completes() {
        let never = std::future::pending::<()>();
        let at = Instant::now() + Duration::from_millis(5);
        assert_eq!(block_on(with_deadline(never, at)), None);
        assert!(Instant::now() >= at);
        let ready = async { 7 };
        assert_eq!(block_on(with_deadline(ready, Instant::now() + Duration::from_secs(60))), Some(7));
    }
}
