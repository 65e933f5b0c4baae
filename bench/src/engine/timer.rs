//! Deadlines for calls made from plain threads.
//!
//! The engine suite's clients are plain threads running futures with
//! `futures::executor::block_on` (no glommio, no tokio: the way a thin
//! client would call a store), and every call they make must be bounded so
//! that the benchmark never hangs on a command the engine does not answer.
//! [`Timer`] is the smallest thing that gives such futures a deadline: one
//! thread that wakes every [`GRANULARITY`] and wakes the tasks whose
//! deadline has passed. Arming a deadline takes an uncontended lock and a
//! map insert; nothing signals the timer thread, so the call path pays no
//! extra wake-up.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::future::Either;

/// How late a deadline may fire at most (plus scheduling).
pub const GRANULARITY: Duration = Duration::from_millis(20);

#[derive(Default)]
struct State {
    next_key: u64,
    waiting: BTreeMap<(Instant, u64), Waker>,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    stop: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The timer thread; stopped (and joined) on drop.
#[derive(Debug)]
pub struct Timer {
    handle: TimerHandle,
    thread: Option<JoinHandle<()>>,
}

/// A cloneable, `Send` way to arm deadlines on a [`Timer`].
#[derive(Clone)]
pub struct TimerHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimerHandle").finish_non_exhaustive()
    }
}

impl Timer {
    /// Starts the timer thread.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn start() -> std::io::Result<Self> {
        let mut t = Self { handle: TimerHandle { shared: Arc::new(Shared::default()) }, thread: None };
        t.resume()?;
        Ok(t)
    }

    /// Stops the timer thread (so that it does not count in a measurement
    /// of idle CPU). Deadlines armed meanwhile fire once it resumes.
    pub fn pause(&mut self) {
        self.handle.shared.lock().stop = true;
        self.handle.shared.stop.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Starts the timer thread again after [`Timer::pause`]; nothing when
    /// it runs.
    ///
    /// # Errors
    /// The thread cannot be spawned.
    pub fn resume(&mut self) -> std::io::Result<()> {
        if self.thread.is_some() {
            return Ok(());
        }
        self.handle.shared.lock().stop = false;
        let s = self.handle.shared.clone();
        let thread = std::thread::Builder::new().name("ekv-bench-timer".into()).spawn(move || {
            let mut st = s.lock();
            loop {
                if st.stop {
                    return;
                }
                let now = Instant::now();
                let mut due = Vec::new();
                while let Some(e) = st.waiting.first_entry() {
                    if e.key().0 > now {
                        break;
                    }
                    due.push(e.remove());
                }
                drop(st);
                due.into_iter().for_each(Waker::wake);
                st = s.lock();
                if !st.stop {
                    st = s.stop.wait_timeout(st, GRANULARITY).unwrap_or_else(PoisonError::into_inner).0;
                }
            }
        })?;
        self.thread = Some(thread);
        Ok(())
    }

    /// A handle for other threads.
    pub fn handle(&self) -> TimerHandle {
        self.handle.clone()
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.pause();
    }
}

impl TimerHandle {
    /// A future that is ready at `at` (at most [`GRANULARITY`] late while
    /// the timer runs; not while it is paused).
    pub fn sleep_until(&self, at: Instant) -> Sleep {
        Sleep { shared: self.shared.clone(), at, key: None }
    }

    /// `f`'s output, or `None` when it is not ready within `limit`
    /// (`f` is then dropped).
    pub async fn timeout<F: Future>(&self, limit: Duration, f: F) -> Option<F::Output> {
        let sleep = self.sleep_until(Instant::now() + limit);
        match futures::future::select(pin!(f), sleep).await {
            Either::Left((out, _)) => Some(out),
            Either::Right(_) => None,
        }
    }

    /// Blocks the calling thread on `f` for at most `limit`.
    pub fn block_on<F: Future>(&self, limit: Duration, f: F) -> Option<F::Output> {
        futures::executor::block_on(self.timeout(limit, f))
    }
}

/// See [`TimerHandle::sleep_until`].
pub struct Sleep {
    shared: Arc<Shared>,
    at: Instant,
    key: Option<u64>,
}

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep").field("at", &self.at).finish_non_exhaustive()
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        let at = self.at;
        let key = {
            let mut st = self.shared.lock();
            let key = self.key.unwrap_or_else(|| {
                st.next_key += 1;
                st.next_key
            });
            match st.waiting.get_mut(&(at, key)) {
                Some(w) if w.will_wake(cx.waker()) => {}
                Some(w) => w.clone_from(cx.waker()),
                None => {
                    st.waiting.insert((at, key), cx.waker().clone());
                }
            }
            key
        };
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.shared.lock().waiting.remove(&(self.at, key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_fires_and_ready_futures_win() {
        let timer = Timer::start().unwrap();
        let h = timer.handle();
        let t = Instant::now();
        assert_eq!(h.block_on(Duration::from_millis(50), futures::future::pending::<()>()), None);
        let waited = t.elapsed();
        assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2), "{waited:?}");
        assert_eq!(h.block_on(Duration::from_secs(5), async { 7 }), Some(7));
        assert!(h.shared.lock().waiting.is_empty(), "a finished deadline stays armed");

        let mut timer = timer;
        timer.pause();
        timer.resume().unwrap();
        assert_eq!(h.block_on(Duration::from_millis(30), futures::future::pending::<()>()), None);
    }
}
