//! A trace read from a FIFO given as the file driver's path (`mkfifo` + a collector writing
//! into it). Reads from a FIFO block for as long as the writer is absent or idle, so they run
//! on a thread of their own and wait in slices of [`READ_SLICE`]: a stop request is seen
//! within one slice, whatever the writer does. After the stop, what is already in the pipe
//! is still read; then reading ends.

use std::{
    fs,
    io::{self, Read},
    os::{fd::AsRawFd, unix::fs::OpenOptionsExt},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::Duration,
};

use sysflow_plugin_api::{Host, PluginError, SysFlowRecord};

use crate::{
    error::DecodeError,
    ocf::{DecodeStats, TraceReader},
};

/// Longest one wait for FIFO data lasts before the stop flag is checked again.
pub const READ_SLICE: Duration = Duration::from_millis(100);
/// Records per batch handed from the reading thread to the driver.
const BATCH: usize = 1024;
/// Batches buffered between the reading thread and the driver (backpressure beyond that).
const QUEUED_BATCHES: usize = 4;

/// What the reading thread hands to the driver.
pub(crate) enum FifoItem {
    /// Decoded records, in stream order.
    Records(Vec<SysFlowRecord>),
    /// A problem in the stream (damaged block, bad datum); reading went on.
    Problem(DecodeError),
    /// The stream is not a readable trace (bad header, read error before the first block).
    Unreadable(DecodeError),
}

/// The outcome of one wait for the reading thread.
pub(crate) enum FifoPoll {
    /// Something arrived.
    Item(FifoItem),
    /// Nothing within the wait.
    Nothing,
    /// The stream ended (writer closed, or stopped) and everything read was handed over.
    Ended,
}

/// A FIFO being read on its own thread.
pub(crate) struct FifoInput {
    rx: Receiver<FifoItem>,
    stop: Arc<AtomicBool>,
    stats: Arc<Mutex<DecodeStats>>,
    thread: Option<JoinHandle<()>>,
}

/// Reads that wait at most [`READ_SLICE`] at a time and, once `stop` is set, no longer wait:
/// they return what the pipe already holds, then the end of the stream.
struct InterruptibleRead {
    file: fs::File,
    stop: Arc<AtomicBool>,
}

impl Read for InterruptibleRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let stopping = self.stop.load(Ordering::SeqCst);
            let wait_ms = if stopping { 0 } else { READ_SLICE.as_millis() as libc::c_int };
            let mut pfd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, count 1.
            let ready = unsafe { libc::poll(&mut pfd, 1, wait_ms) };
            if ready > 0 {
                // Readable or hung up: a read returns data, or 0 at the end of the stream.
                match self.file.read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    other => return other,
                }
            } else if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return Err(io::Error::last_os_error());
            }
            if stopping {
                // The pipe is empty: end the stream here. A block cut short by that is
                // reported and counted by the trace reader like any truncation.
                return Ok(0);
            }
        }
    }
}

impl FifoInput {
    /// Opens the FIFO (without waiting for a writer) and starts reading it.
    pub fn start(path: &Path, host: Host) -> Result<FifoInput, PluginError> {
        let name = path.display().to_string();
        // Non-blocking open: a blocking one would wait, unstoppable, for the first writer.
        let file = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| PluginError::new(format!("cannot open FIFO {name}: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(DecodeStats::default()));
        let (tx, rx) = sync_channel(QUEUED_BATCHES);
        let input = InterruptibleRead { file, stop: stop.clone() };
        let (thread_stop, thread_stats) = (stop.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("fifo-reader".into())
            .spawn(move || read_fifo(&name, input, &tx, &thread_stop, &thread_stats, host))
            .map_err(|e| PluginError::new(format!("cannot start the FIFO reading thread: {e}")))?;
        host.info(&format!("reading FIFO {} (waiting for a writer)", path.display()));
        Ok(FifoInput { rx, stop, stats, thread: Some(thread) })
    }

    /// Waits up to `wait` for the next item.
    pub fn poll(&mut self, wait: Duration) -> FifoPoll {
        match self.rx.recv_timeout(wait) {
            Ok(item) => FifoPoll::Item(item),
            Err(RecvTimeoutError::Timeout) => FifoPoll::Nothing,
            Err(RecvTimeoutError::Disconnected) => {
                if let Some(t) = self.thread.take() {
                    // The thread has dropped its sender: it is returning.
                    let _ = t.join();
                }
                FifoPoll::Ended
            }
        }
    }

    /// Asks the reading thread to finish with what the pipe already holds.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The reader's counters (complete once [`FifoPoll::Ended`] was returned).
    pub fn stats(&self) -> DecodeStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for FifoInput {
    fn drop(&mut self) {
        // Never joined here: the thread ends by itself once it sees the flag or its
        // receiver gone (at most one READ_SLICE later).
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The reading thread: decodes the stream and hands batches over until it ends, the
/// driver is gone, or a stop request found the pipe empty.
fn read_fifo(
    name: &str,
    input: InterruptibleRead,
    tx: &SyncSender<FifoItem>,
    stop: &AtomicBool,
    stats: &Mutex<DecodeStats>,
    host: Host,
) {
    let mut reader = match TraceReader::from_reader(name, input) {
        Ok(r) => r,
        Err(e) => {
            if !stop.load(Ordering::SeqCst) {
                let _ = tx.send(FifoItem::Unreadable(e));
            }
            return;
        }
    };
    for w in reader.schema_warnings() {
        host.warn(&format!("{name}: {w}"));
    }
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(item) = reader.next() {
        match item {
            Ok(rec) => {
                batch.push(rec);
                // At a block's end the next read may wait on the writer: hand over first.
                let hand_over = batch.len() >= BATCH || reader.records_buffered() == 0;
                if hand_over && tx.send(FifoItem::Records(std::mem::take(&mut batch))).is_err() {
                    break;
                }
            }
            Err(e) => {
                if !batch.is_empty() && tx.send(FifoItem::Records(std::mem::take(&mut batch))).is_err() {
                    break;
                }
                if tx.send(FifoItem::Problem(e)).is_err() {
                    break;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(FifoItem::Records(batch));
    }
    *stats.lock().unwrap_or_else(|e| e.into_inner()) = reader.stats().clone();
}
