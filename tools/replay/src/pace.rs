//! When each record may be sent: unlimited, a fixed rate, or the trace's own timestamps.

use std::time::{Duration, Instant};

use sysflow_plugin_api::SysFlowRecord;

/// Longest single sleep under `--as-recorded`: a gap of hours in a trace (a collector idle
/// overnight) is replayed as this pause, so a replay never looks hung.
pub const MAX_RECORDED_GAP: Duration = Duration::from_secs(10);

/// The pacing policy and its clock.
#[derive(Debug)]
pub enum Pace {
    /// As fast as the socket takes them.
    Unlimited,
    /// Record `n` goes out at `start + n / rate`.
    Rate { start: Option<Instant>, interval_ns: f64, sent: u64 },
    /// An event goes out when the wall time since the first event reaches its timestamp's
    /// distance from the first event's (divided by `speed`); entities go out at once.
    AsRecorded { speed: f64, origin: Option<(Instant, i64)>, latest_ts: i64, max_gap: Duration },
}

impl Pace {
    /// No pacing.
    pub fn unlimited() -> Pace {
        Pace::Unlimited
    }

    /// At most `per_second` records per second (positive).
    pub fn rate(per_second: f64) -> Pace {
        Pace::Rate { start: None, interval_ns: 1e9 / per_second, sent: 0 }
    }

    /// By event timestamps, `speed` times faster than recorded (positive).
    pub fn as_recorded(speed: f64) -> Pace {
        Pace::AsRecorded { speed, origin: None, latest_ts: i64::MIN, max_gap: MAX_RECORDED_GAP }
    }

    /// Sleeps until `record` may be sent.
    pub fn wait_for(&mut self, record: &SysFlowRecord) {
        match self {
            Pace::Unlimited => {}
            Pace::Rate { start, interval_ns, sent } => {
                let start = *start.get_or_insert_with(Instant::now);
                let due = start + Duration::from_nanos((*sent as f64 * *interval_ns) as u64);
                *sent += 1;
                sleep_until(due);
            }
            Pace::AsRecorded { speed, origin, latest_ts, max_gap } => {
                let SysFlowRecord::Event(event) = record else { return };
                let ts = event.ts();
                // Flows carry their start time and are written when they close: a timestamp
                // behind the latest one seen goes out at once instead of rewinding the clock.
                if ts <= *latest_ts {
                    return;
                }
                let gap_ns = if *latest_ts == i64::MIN { 0 } else { ts.saturating_sub(*latest_ts) };
                *latest_ts = ts;
                let Some((wall, first_ts)) = *origin else {
                    *origin = Some((Instant::now(), ts));
                    return;
                };
                let gap = Duration::from_nanos((gap_ns as f64 / *speed) as u64);
                if gap > *max_gap {
                    // Shift the origin so the gap shrinks to the cap and later records keep their spacing.
                    let now = Instant::now();
                    *origin = Some((now + *max_gap, ts));
                    sleep_until(now + *max_gap);
                    return;
                }
                let since_first = Duration::from_nanos((ts.saturating_sub(first_ts) as f64 / *speed) as u64);
                sleep_until(wall + since_first);
            }
        }
    }
}

fn sleep_until(due: Instant) {
    let now = Instant::now();
    if due > now {
        std::thread::sleep(due - now);
    }
}

#[cfg(test)]
mod tests {
    use sysflow_plugin_api::records::{Event, Header, K8sEvent};

    use super::*;

    fn event(ts: i64) -> SysFlowRecord {
        SysFlowRecord::Event(Event::K8s(K8sEvent { ts, ..K8sEvent::default() }))
    }

    /// Replays `records` with `pace`, returning the wall time taken.
    fn replay(mut pace: Pace, records: &[SysFlowRecord]) -> Duration {
        let start = Instant::now();
        for r in records {
            pace.wait_for(r);
        }
        start.elapsed()
    }

    #[test]
    fn gaps_beyond_the_cap_are_shortened_and_later_spacing_kept() {
        const S: i64 = 1_000_000_000;
        let pace = Pace::AsRecorded { speed: 1.0, origin: None, latest_ts: i64::MIN, max_gap: Duration::from_millis(100) };
        // A 3 s gap (shortened to 0.1 s), then 0.2 s of events at their recorded spacing.
        let took = replay(pace, &[event(10 * S), event(13 * S), event(13 * S + S / 10), event(13 * S + S / 5)]);
        assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(1500), "took {took:?}");
    }

    #[test]
    fn entities_and_late_flows_do_not_wait() {
        let records = [
            event(1_000_000_000),
            SysFlowRecord::Header(Header::default()),
            event(1_200_000_000),
            // behind the latest timestamp: sent at once, the clock does not rewind
            event(1_000_000_000),
            event(1_200_000_000),
        ];
        let took = replay(Pace::as_recorded(1.0), &records);
        assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(1000), "took {took:?}");
    }

    #[test]
    fn rate_spaces_records_evenly() {
        let records: Vec<SysFlowRecord> = (0..11).map(event).collect();
        let took = replay(Pace::rate(50.0), &records);
        // 10 intervals of 20 ms
        assert!(took >= Duration::from_millis(200) && took < Duration::from_millis(1000), "took {took:?}");
    }
}
