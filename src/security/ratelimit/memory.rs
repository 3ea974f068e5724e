//! The in-process GCRA store: one TAT per `(policy, key)` in a bounded cache whose keys idle
//! out, used when there is no Redis or while Redis is down.

use super::gcra::{combine, gcra, Decision, Policy, Quota};
use moka::sync::Cache;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The in-process GCRA store: bounded, keys idle out.
#[derive(Clone)]
pub(super) struct Memory {
    cells: Cache<(Policy, String), Arc<Mutex<i64>>>,
}

impl Memory {
    pub(super) fn new(max_keys: u64, idle: Duration) -> Self {
        // An idle key whose TAT lies in the past is the same as no key at all.
        Self {
            cells: Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// Checks every key; admits only if all admit, and then stores each key's new TAT.
    pub(super) fn check(&self, checks: &[(Policy, Quota, &str)], now: i64) -> Decision {
        let mut cells: Vec<(Quota, Arc<Mutex<i64>>)> = checks
            .iter()
            .map(|(p, q, k)| {
                (
                    *q,
                    self.cells
                        .get_with((*p, (*k).to_owned()), || Arc::new(Mutex::new(i64::MIN))),
                )
            })
            .collect();
        // Lock in a fixed order so two requests sharing keys cannot deadlock.
        cells.sort_by_key(|(_, c)| Arc::as_ptr(c) as usize);
        let mut guards: Vec<_> = cells
            .iter()
            .map(|(q, c)| (*q, c.lock().unwrap_or_else(|e| e.into_inner())))
            .collect();
        let steps: Vec<(Decision, i64)> =
            guards.iter().map(|(q, tat)| gcra(*q, **tat, now)).collect();
        let verdict = combine(steps.iter().map(|s| s.0));
        if verdict.allowed {
            for ((_, tat), (_, new)) in guards.iter_mut().zip(steps) {
                **tat = new;
            }
        }
        verdict
    }

    /// Keys currently held.
    pub(super) fn stored_keys(&self) -> u64 {
        self.cells.run_pending_tasks();
        self.cells.entry_count()
    }
}
