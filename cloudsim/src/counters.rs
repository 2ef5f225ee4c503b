//! Counters of API calls per method, route template and status (for "calls per node lifecycle" figures).

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

/// One counter: how many calls of `method route` answered `status` (0 = no answer: dropped or hung).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallCount {
    pub method: String,
    pub route: String,
    pub status: u16,
    pub count: u64,
}

/// A point-in-time copy of all counters, sorted by route, method, status.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CounterSnapshot {
    pub total: u64,
    pub calls: Vec<CallCount>,
}

impl CounterSnapshot {
    /// Calls of `method` on `route` (a template such as `/compute/v2.1/servers/{id}`), any status.
    pub fn count(&self, method: &str, route: &str) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.method == method && c.route == route)
            .map(|c| c.count)
            .sum()
    }

    /// Calls of `method` on `route` that answered `status`.
    pub fn count_status(&self, method: &str, route: &str, status: u16) -> u64 {
        self.calls
            .iter()
            .filter(|c| c.method == method && c.route == route && c.status == status)
            .map(|c| c.count)
            .sum()
    }
}

/// Thread-safe call counters.
#[derive(Debug, Default)]
pub struct Counters {
    calls: Mutex<HashMap<(String, String, u16), u64>>,
}

impl Counters {
    pub fn record(&self, method: &str, route: &str, status: u16) {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        *calls
            .entry((method.to_string(), route.to_string(), status))
            .or_default() += 1;
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<CallCount> = calls
            .iter()
            .map(|((method, route, status), count)| CallCount {
                method: method.clone(),
                route: route.clone(),
                status: *status,
                count: *count,
            })
            .collect();
        out.sort_by(|a, b| (&a.route, &a.method, a.status).cmp(&(&b.route, &b.method, b.status)));
        CounterSnapshot {
            total: out.iter().map(|c| c.count).sum(),
            calls: out,
        }
    }

    pub fn reset(&self) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_sums() {
        let c = Counters::default();
        c.record("GET", "/compute/v2.1/servers/{id}", 200);
        c.record("GET", "/compute/v2.1/servers/{id}", 200);
        c.record("GET", "/compute/v2.1/servers/{id}", 404);
        c.record("POST", "/compute/v2.1/servers", 202);
        let s = c.snapshot();
        assert_eq!(s.total, 4);
        assert_eq!(s.count("GET", "/compute/v2.1/servers/{id}"), 3);
        assert_eq!(s.count_status("GET", "/compute/v2.1/servers/{id}", 404), 1);
        assert_eq!(s.calls[0].route, "/compute/v2.1/servers");
        c.reset();
        assert_eq!(c.snapshot().total, 0);
    }
}
