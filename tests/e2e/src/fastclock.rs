//! A simulated clock that several processes agree on: it reads `start_ms` at the real instant
//! `anchor_ms` and runs `speed` times as fast as real time. Every replica of a test gets the
//! same three numbers (see [`SimClock::env`]), so all read the same simulated time from the
//! machine's one wall clock, and the test converts a real instant (a kill, a log line) into
//! simulated time with the same formula.

use std::time::{SystemTime, UNIX_EPOCH};

/// The variables `mpanel-controller-fastclock` reads its clock from.
pub const START_VAR: &str = "MPANEL_FASTCLOCK_START_MS";
pub const ANCHOR_VAR: &str = "MPANEL_FASTCLOCK_ANCHOR_MS";
pub const SPEED_VAR: &str = "MPANEL_FASTCLOCK_SPEED";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimClock {
    /// Simulated Unix ms at the anchor.
    pub start_ms: i64,
    /// Real Unix ms at which simulated time is `start_ms`.
    pub anchor_ms: i64,
    /// Simulated milliseconds per real millisecond.
    pub speed: u32,
}

impl SimClock {
    /// A clock at `start_ms` now, running `speed` times as fast as real time.
    pub fn starting_now(start_ms: i64, speed: u32) -> SimClock {
        SimClock {
            start_ms,
            anchor_ms: real_us(SystemTime::now()) / 1000,
            speed,
        }
    }

    /// Simulated Unix ms now.
    pub fn now(&self) -> i64 {
        self.at(SystemTime::now())
    }

    /// Simulated Unix ms at the real instant `t`.
    pub fn at(&self, t: SystemTime) -> i64 {
        self.at_real_us(real_us(t))
    }

    /// Simulated Unix ms at real Unix microsecond `us`.
    pub fn at_real_us(&self, us: i64) -> i64 {
        let elapsed_us = i128::from(us) - i128::from(self.anchor_ms) * 1000;
        let sim = i128::from(self.start_ms) + elapsed_us * i128::from(self.speed) / 1000;
        i64::try_from(sim).unwrap_or(i64::MAX)
    }

    /// How long `sim_ms` of simulated time takes in real time.
    pub fn real_duration(&self, sim_ms: i64) -> std::time::Duration {
        let us = u64::try_from(sim_ms.max(0)).unwrap_or(0) * 1000 / u64::from(self.speed.max(1));
        std::time::Duration::from_micros(us)
    }

    /// The environment that gives a process this clock.
    pub fn env(&self) -> [(&'static str, String); 3] {
        [
            (START_VAR, self.start_ms.to_string()),
            (ANCHOR_VAR, self.anchor_ms.to_string()),
            (SPEED_VAR, self.speed.to_string()),
        ]
    }

    /// The clock the environment describes, or what is wrong with it.
    pub fn from_env() -> Result<SimClock, String> {
        fn var<T: std::str::FromStr>(name: &str) -> Result<T, String> {
            let raw = std::env::vars()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .ok_or_else(|| format!("{name} is not set"))?;
            raw.trim()
                .parse()
                .map_err(|_| format!("{name}: '{raw}' is not a whole number"))
        }
        let clock = SimClock {
            start_ms: var(START_VAR)?,
            anchor_ms: var(ANCHOR_VAR)?,
            speed: var(SPEED_VAR)?,
        };
        if clock.speed == 0 {
            return Err(format!("{SPEED_VAR} must be at least 1"));
        }
        Ok(clock)
    }
}

/// Real Unix microseconds at `t`.
pub fn real_us(t: SystemTime) -> i64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
