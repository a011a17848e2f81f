//! SIGINT/SIGTERM: the first asks for an orderly drain, the second forces exit 1.
//! SIGHUP: reported to the service manager as a reload (see [`reload_on_hangup`]); it never
//! stops the process.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use signal_hook::{
    consts::{SIGHUP, SIGINT, SIGTERM},
    iterator::Signals,
};

use crate::service_notify;

/// Shared "stop requested" flag, set by the first signal (or by the host itself).
#[derive(Clone, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A flag that is not set.
    pub fn new() -> StopFlag {
        StopFlag::default()
    }

    /// Asks every driver to stop.
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Starts the signal thread. The first SIGINT/SIGTERM sets `stop`; the second exits the
/// process with status 1 without draining (upstream ignored further signals). SIGHUP
/// (upstream's default action: the process died) is handed to [`reload_on_hangup`].
pub fn install(stop: StopFlag) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    // Capacity 1: a SIGHUP arriving while one is pending adds nothing, so a burst coalesces.
    let (hup_tx, hup_rx) = bounded::<()>(1);
    std::thread::Builder::new().name("sighup".into()).spawn(move || reload_on_hangup(&hup_rx))?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut seen = 0u32;
        for sig in signals.forever() {
            if sig == SIGHUP {
                queue_hangup(&hup_tx);
                continue;
            }
            seen += 1;
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if seen == 1 {
                stop.request();
                // Logging and notifying may block (a full stdout pipe is exactly when an
                // operator resends the signal), so they happen on another thread: this one
                // must stay free to see the second signal.
                let _ = std::thread::Builder::new().name("signal-log".into()).spawn(move || {
                    service_notify::stopping();
                    tracing::info!(
                        "received {name}: stopping the drivers and draining the pipeline (send it again to exit at once)"
                    );
                });
            } else {
                eprintln!("[Error] received {name} again: exiting without draining the pipeline");
                std::process::exit(1);
            }
        }
    })?;
    Ok(())
}

/// Queues one reload unless one is already pending (never blocks the signal thread).
fn queue_hangup(tx: &Sender<()>) {
    match tx.try_send(()) {
        Ok(()) | Err(TrySendError::Full(())) => {}
        Err(TrySendError::Disconnected(())) => eprintln!("[Error] received SIGHUP, but its handler thread has ended"),
    }
}

/// Handles each (coalesced) SIGHUP: RELOADING=1 with MONOTONIC_USEC to the service manager,
/// then READY=1. Nothing is re-read yet: a full pipeline reload is not implemented, and the
/// parts that do reload (policy files of an engine with `monitor: local`, plugin libraries)
/// watch their files and reload on change without a signal.
fn reload_on_hangup(rx: &Receiver<()>) {
    for () in rx.iter() {
        service_notify::reloading();
        tracing::warn!(
            "received SIGHUP: a full pipeline reload is not implemented yet, nothing was re-read; \
             policy files (policy engines with 'monitor' set to local) and plugin libraries are reloaded \
             when their files change, without a signal"
        );
        service_notify::reloaded();
    }
}
