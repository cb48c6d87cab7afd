//! The retry policy: when the next attempt of a failed delivery is due, or that there is none.

use std::time::Duration;

use super::Mode;

/// Delays after each failed attempt; after the last one the delivery has failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    pub live: Vec<Duration>,
    pub test: Vec<Duration>,
}

const MIN: u64 = 60;
const HOUR: u64 = 3600;

impl Default for RetrySchedule {
    /// Live: exponential backoff for about three days; test: three retries over a few hours
    /// (reference §4.7).
    fn default() -> Self {
        let secs = |v: &[u64]| v.iter().map(|s| Duration::from_secs(*s)).collect();
        RetrySchedule {
            live: secs(&[
                MIN,
                5 * MIN,
                30 * MIN,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                12 * HOUR,
                12 * HOUR,
                12 * HOUR,
                12 * HOUR,
            ]),
            test: secs(&[10 * MIN, HOUR, 3 * HOUR]),
        }
    }
}

/// The longest `Retry-After` honoured; a larger one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * HOUR);

impl RetrySchedule {
    /// One schedule for both modes (e.g. a compressed `1s,2s,4s` for tests).
    pub fn uniform(delays: Vec<Duration>) -> Self {
        RetrySchedule {
            live: delays.clone(),
            test: delays,
        }
    }

    /// The delay before the next attempt after `failed_attempts` failures, `None` when done.
    /// `jitter` in [-1, 1] spreads retries by up to ±10%; `retry_after` (429/503) can only lengthen it.
    pub fn next_delay(
        &self,
        mode: Mode,
        failed_attempts: u32,
        jitter: f64,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let delays = match mode {
            Mode::Live => &self.live,
            Mode::Test => &self.test,
        };
        let base = *delays.get(failed_attempts.checked_sub(1)? as usize)?;
        let jittered = base.mul_f64(1.0 + 0.1 * jitter.clamp(-1.0, 1.0));
        Some(match retry_after {
            Some(ra) => jittered.max(ra.min(MAX_RETRY_AFTER)),
            None => jittered,
        })
    }
}

/// Parses `1s,2s,500ms,5m,1h`.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    s.split(',')
        .map(|part| match parse_duration(part.trim())? {
            d if d.is_zero() => Err(format!("'{part}': a retry delay must be longer than 0")),
            d => Ok(d),
        })
        .collect()
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{s}': add a unit (ms, s, m, h)"))?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| format!("'{s}' is not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * MIN)),
        "h" => Ok(Duration::from_secs(n * HOUR)),
        _ => Err(format!("'{s}': unknown unit (use ms, s, m, h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_ends_after_last_delay() {
        let s = RetrySchedule::uniform(parse_schedule("1s,2s,4s").unwrap());
        let d = |n| s.next_delay(Mode::Test, n, 0.0, None);
        assert_eq!(d(1), Some(Duration::from_secs(1)));
        assert_eq!(d(2), Some(Duration::from_secs(2)));
        assert_eq!(d(3), Some(Duration::from_secs(4)));
        assert_eq!(d(4), None);
    }

    #[test]
    fn jitter_and_retry_after_are_bounded() {
        let s = RetrySchedule::default();
        let d = s.next_delay(Mode::Live, 1, 1.0, None).unwrap();
        assert_eq!(d, Duration::from_secs(66));
        let d = s
            .next_delay(Mode::Live, 1, 0.0, Some(Duration::from_secs(600)))
            .unwrap();
        assert_eq!(d, Duration::from_secs(600));
        let d = s
            .next_delay(Mode::Live, 1, 0.0, Some(Duration::from_secs(999_999)))
            .unwrap();
        assert_eq!(d, MAX_RETRY_AFTER);
        // The live schedule spans about three days; the test one a few hours.
        let total: Duration = s.live.iter().sum();
        assert!(total > Duration::from_secs(60 * HOUR) && total <= Duration::from_secs(72 * HOUR));
        assert_eq!(s.test.len(), 3);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("x5s").is_err());
        assert!(parse_schedule("1s,0s").is_err());
        assert!(parse_schedule("0ms").is_err());
    }
}
