//! systemd service notifications (`sd_notify`, for `Type=notify` units): READY=1 once the
//! pipeline runs, RELOADING=1/READY=1 around a SIGHUP, STOPPING=1 on stop, and watchdog
//! pings while the pipeline is healthy. Every call is a no-op when `NOTIFY_SOCKET` is unset.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    thread::JoinHandle,
    time::Duration,
};

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use sd_notify::NotifyState;

/// Whether READY=1 was sent: a SIGHUP before start-up completed must not report readiness early.
static READY_SENT: AtomicBool = AtomicBool::new(false);

/// Pings per watchdog period: systemd's own advice is to ping at half the period, so that one
/// late ping does not trip the watchdog.
pub const WATCHDOG_PINGS_PER_PERIOD: u32 = 2;

/// Sends `states`; a failure is logged once per call and never stops the pipeline (the
/// service manager then decides, e.g. by its start timeout).
fn send(states: &[NotifyState<'_>]) {
    // `false`: NOTIFY_SOCKET stays set, since later notifications use it too.
    if let Err(e) = sd_notify::notify(false, states) {
        let names: Vec<String> = states.iter().map(ToString::to_string).collect();
        tracing::warn!("cannot notify the service manager ({}): {e}", names.join(" "));
    }
}

/// Tells the service manager that start-up is complete (the drivers are reading).
pub fn ready() {
    READY_SENT.store(true, Ordering::SeqCst);
    send(&[NotifyState::Ready]);
}

/// Tells the service manager that the process is draining and will exit.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Tells the service manager that a reload started (with the monotonic timestamp systemd
/// 253+ requires to match the reload to its request).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(e) => {
            tracing::warn!("cannot read the monotonic clock for MONOTONIC_USEC: {e}");
            send(&[NotifyState::Reloading]);
        }
    }
}

/// Tells the service manager that a reload finished; nothing before start-up completed.
pub fn reloaded() {
    if READY_SENT.load(Ordering::SeqCst) {
        send(&[NotifyState::Ready]);
    }
}

/// The watchdog ping thread; dropping it stops the pings.
pub struct Watchdog {
    done: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts pinging WATCHDOG=1 every `WATCHDOG_USEC / WATCHDOG_PINGS_PER_PERIOD` while
/// `healthy()` holds; none when the service manager set no watchdog for this process.
/// Once `healthy()` is false the pings stop, so that systemd's watchdog restarts the service.
pub fn start_watchdog(healthy: impl Fn() -> bool + Send + 'static) -> Option<Watchdog> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let interval = Duration::from_micros(usec) / WATCHDOG_PINGS_PER_PERIOD;
    let (done_tx, done_rx) = bounded::<()>(0);
    let thread = std::thread::Builder::new().name("watchdog".into()).spawn(move || {
        let mut warned = false;
        loop {
            if healthy() {
                send(&[NotifyState::Watchdog]);
            } else if !warned {
                warned = true;
                tracing::error!("a pipeline branch failed: watchdog pings stopped, the service manager will restart the service");
            }
            match done_rx.recv_timeout(interval) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    });
    match thread {
        Ok(t) => Some(Watchdog { done: Some(done_tx), thread: Some(t) }),
        Err(e) => {
            tracing::error!("cannot start the watchdog thread: {e}: the service manager will see no pings");
            None
        }
    }
}
