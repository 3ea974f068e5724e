//! Time as a parameter.
//!
//! Expiry, grace windows and TOTP steps all depend on "now". Reading the system clock directly
//! would make them testable only by sleeping, so every component takes a [`Clock`] instead and
//! tests drive a manual one.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time (Unix seconds, or milliseconds for rate limits). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Clock {
    /// `None` for the system clock; otherwise the manual instant in milliseconds, shared by all
    /// clones.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// The real wall clock.
    pub fn system() -> Self {
        Self { manual: None }
    }

    /// A clock frozen at `unix_secs` until [`Clock::advance`] moves it.
    pub fn manual(unix_secs: i64) -> Self {
        Self {
            manual: Some(Arc::new(AtomicI64::new(unix_secs * 1000))),
        }
    }

    /// A manual clock starting at the current system time.
    pub fn manual_now() -> Self {
        Self::manual(Self::system().now())
    }

    /// Moves a manual clock forward; a no-op for the system clock.
    pub fn advance(&self, secs: i64) {
        if let Some(m) = &self.manual {
            m.fetch_add(secs * 1000, Ordering::SeqCst);
        }
    }

    /// Now, in whole seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Now, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.manual {
            Some(m) => m.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let c = Clock::manual(1_000);
        let c2 = c.clone();
        assert_eq!(c.now(), 1_000);
        c2.advance(30);
        assert_eq!(c.now(), 1_030);
    }
}
