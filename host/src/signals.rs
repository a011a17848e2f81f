//! SIGINT/SIGTERM: the first asks for an orderly drain, the second forces exit 1.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use signal_hook::{
    consts::{SIGINT, SIGTERM},
    iterator::Signals,
};

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
/// process with status 1 without draining (upstream ignored further signals).
pub fn install(stop: StopFlag) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut seen = 0u32;
        for sig in signals.forever() {
            seen += 1;
            let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
            if seen == 1 {
                stop.request();
                // Logging may block (a full stdout pipe is exactly when an operator resends
                // the signal), so it happens on another thread: this one must stay free to
                // see the second signal.
                let _ = std::thread::Builder::new().name("signal-log".into()).spawn(move || {
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
