//! SIGINT/SIGTERM: the first asks for an orderly drain, the second forces exit 1.
//! SIGHUP: queued for the running pipeline, which reloads itself (`runtime::run_service`);
//! it never stops the process.

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

/// Set by the first SIGINT/SIGTERM: what plugins see as [`sysflow_plugin_api::Host::stop_requested`].
static STOP_SIGNALLED: AtomicBool = AtomicBool::new(false);

/// Whether the operator asked the process to stop (the plugins' stop signal).
pub extern "C" fn stop_signalled() -> bool {
    STOP_SIGNALLED.load(Ordering::SeqCst)
}

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
/// process with status 1 without draining (upstream ignored further signals). Each SIGHUP
/// (upstream's default action: the process died) is queued on the returned receiver, at
/// most one at a time, so a burst coalesces into one reload; the returned sender queues a
/// reload the same way (a changed action library does).
pub fn install(stop: StopFlag) -> std::io::Result<(Sender<()>, Receiver<()>)> {
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    // Capacity 1: a SIGHUP arriving while one is pending adds nothing, so a burst coalesces.
    let (hup_tx, hup_rx) = bounded::<()>(1);
    let trigger = hup_tx.clone();
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
                STOP_SIGNALLED.store(true, Ordering::SeqCst);
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
    Ok((trigger, hup_rx))
}

/// Queues one reload unless one is already pending (never blocks the signal thread).
fn queue_hangup(tx: &Sender<()>) {
    match tx.try_send(()) {
        Ok(()) | Err(TrySendError::Full(())) => {}
        // The pipeline ended (only the summary remains): nothing to reload.
        Err(TrySendError::Disconnected(())) => {}
    }
}
