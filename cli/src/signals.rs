//! SIGTERM and SIGINT. Before the process serves, a signal exits at once
//! (exit code 0): start-up blocks in calls that cannot be interrupted
//! (joining the cluster waits for the meta service), and nothing was
//! acknowledged yet; an exit there is a crash the storage recovers from.
//! Once serving, the first signal asks for a clean stop and a second one
//! exits at once (exit code 1).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::CliError;

/// Signals delivered to the process, in order.
#[derive(Debug)]
pub struct Shutdown {
    rx: Receiver<i32>,
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
                    let _ = tx.send(sig);
                }
            })
            .map_err(|e| CliError::failed(format!("starting the signal thread: {e}")))?;
        Ok(Self { rx, serving, handle, thread: Some(thread) })
    }

    /// From now on a signal asks for a clean stop (see [`Shutdown::wait`]).
    pub fn serving(&self) {
        self.serving.store(true, Ordering::SeqCst);
    }

    /// Blocks until a signal arrives; returns it.
    pub fn wait(&self) -> i32 {
        self.rx.recv().unwrap_or(SIGTERM)
    }

    /// A signal that arrived within `d`, if any.
    pub fn wait_timeout(&self, d: Duration) -> Option<i32> {
        match self.rx.recv_timeout(d) {
            Ok(sig) => Some(sig),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(SIGTERM),
        }
    }

    /// A signal that already arrived, if any.
    pub fn received(&self) -> Option<i32> {
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
