//! SIGTERM and SIGINT. Before the process serves, a signal exits at once
//! (exit code 0): start-up blocks in calls that cannot be interrupted
//! (joining the cluster waits for the meta service), and nothing was
//! acknowledged yet; an exit there is a crash the storage recovers from.
//! Once serving, the first signal asks for a clean stop and a second one
//! exits at once (exit code 1).
//!
//! A server also stops when its store fails: a shard that stopped on a
//! storage error (fail-stop) wakes the waiter through a [`Notifier`], and
//! the process exits with the error (exit code 1) rather than go on
//! serving part of its regions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::CliError;

/// Why a server stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A signal asked for a clean stop.
    Signal(i32),
    /// A part of the server stopped on an error; the text says which and why.
    Failed(String),
}

/// Wakes [`Shutdown::wait`] with a failure, from any thread.
#[derive(Debug, Clone)]
pub struct Notifier(Sender<Wake>);

impl Notifier {
    /// Asks the server to stop because of `why`.
    pub fn failed(&self, why: &str) {
        let _ = self.0.send(Wake::Failed(why.to_owned()));
    }
}

/// Signals delivered to the process (and failures), in order.
#[derive(Debug)]
pub struct Shutdown {
    rx: Receiver<Wake>,
    tx: Sender<Wake>,
    serving: Arc<AtomicBool>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

/// The name of a signal we handle.
pub fn name(sig: i32) -> &'static str {
    match sig {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        _ => "signal",
    }
}

impl Shutdown {
    /// Takes over SIGTERM and SIGINT. Call it before starting anything, so
    /// that a signal during start-up also ends in a clean stop.
    ///
    /// # Errors
    /// The handlers cannot be installed.
    pub fn install() -> Result<Self, CliError> {
        let mut signals = Signals::new([SIGTERM, SIGINT])
            .map_err(|e| CliError::failed(format!("installing signal handlers: {e}")))?;
        let handle = signals.handle();
        let (tx, rx) = mpsc::channel();
        let signal_tx = tx.clone();
        let serving = Arc::new(AtomicBool::new(false));
        let graceful = serving.clone();
        let thread = std::thread::Builder::new()
            .name("ekv-signals".into())
            .spawn(move || {
                let mut seen = 0;
                for sig in signals.forever() {
                    seen += 1;
                    if !graceful.load(Ordering::SeqCst) {
                        eprintln!("ekv: {} during start-up: exiting before serving", name(sig));
                        std::process::exit(0);
                    }
                    if seen > 1 {
                        eprintln!("ekv: second {}: exiting without a clean stop", name(sig));
                        std::process::exit(1);
                    }
                    let _ = signal_tx.send(Wake::Signal(sig));
                }
            })
            .map_err(|e| CliError::failed(format!("starting the signal thread: {e}")))?;
        Ok(Self { rx, tx, serving, handle, thread: Some(thread) })
    }

    /// From now on a signal asks for a clean stop (see [`Shutdown::wait`]).
    pub fn serving(&self) {
        self.serving.store(true, Ordering::SeqCst);
    }

    /// A handle that wakes [`Shutdown::wait`] with a failure.
    pub fn notifier(&self) -> Notifier {
        Notifier(self.tx.clone())
    }

    /// Blocks until a signal or a failure arrives; returns it.
    pub fn wait(&self) -> Wake {
        self.rx.recv().unwrap_or(Wake::Signal(SIGTERM))
    }

    /// A signal (or failure) that arrived within `d`, if any.
    pub fn wait_timeout(&self, d: Duration) -> Option<Wake> {
        match self.rx.recv_timeout(d) {
            Ok(wake) => Some(wake),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Wake::Signal(SIGTERM)),
        }
    }

    /// A signal (or failure) that already arrived, if any.
    pub fn received(&self) -> Option<Wake> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Shutdown {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
