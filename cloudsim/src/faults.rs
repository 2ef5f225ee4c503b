//! Fault injection: rules matching method + path regex, fired with a probability and a count.

use regex::Regex;
use serde::{Deserialize, Serialize};

/// A rule as written in the config file or posted to `POST /_sim/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// HTTP method to match (case-insensitive); any method when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Regex searched in the request path as received, e.g. `/compute/v2.1/servers$`.
    #[serde(default = "any_path")]
    pub path: String,
    /// Chance that a matching request triggers the fault (0.0..=1.0).
    #[serde(default = "always")]
    pub probability: f64,
    /// How many times the fault may fire; unlimited when absent.
    #[serde(default)]
    pub count: Option<u64>,
    pub action: FaultAction,
}

/// What happens when a rule fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Answer with this status and the service's own error body.
    Error {
        status: u16,
        #[serde(default)]
        message: Option<String>,
    },
    /// 429 with `Retry-After` and Nova's `overLimit` body (Neutron/Glance get their own body).
    RateLimit {
        #[serde(default = "two")]
        retry_after: u64,
    },
    /// Wait, then serve the request normally.
    Delay { ms: u64 },
    /// Never answer; the connection is closed after `max_ms` (default 10 minutes).
    Hang {
        #[serde(default)]
        max_ms: Option<u64>,
    },
    /// Close the connection without any response.
    Drop,
    /// Server create succeeds (202) but the server boots into ERROR with this fault message.
    BootError {
        #[serde(default)]
        message: Option<String>,
    },
    /// Server create fails with Nova's 403 quota body for this resource (instances, cores, ram).
    QuotaExceeded {
        #[serde(default = "instances")]
        resource: String,
    },
}

fn any_path() -> String {
    ".*".to_string()
}
fn always() -> f64 {
    1.0
}
fn two() -> u64 {
    2
}
fn instances() -> String {
    "instances".to_string()
}

/// Errors in a fault rule.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error("fault rule path {path:?} is not a valid regex: {source}")]
    BadRegex { path: String, source: regex::Error },
    #[error("fault rule probability {0} is not within 0..=1")]
    BadProbability(f64),
    #[error("fault rule status {0} is not an HTTP error status")]
    BadStatus(u16),
}

/// Where in request handling a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before routing to a handler: errors, 429, delays, hangs, drops.
    Http,
    /// Inside `POST /servers`: boot errors and quota refusals.
    ServerCreate,
}

impl FaultAction {
    fn phase(&self) -> Phase {
        match self {
            FaultAction::BootError { .. } | FaultAction::QuotaExceeded { .. } => {
                Phase::ServerCreate
            }
            _ => Phase::Http,
        }
    }
}

impl FaultRule {
    /// Validates the rule and compiles its regex.
    pub fn compile(&self) -> Result<Regex, FaultError> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err(FaultError::BadProbability(self.probability));
        }
        if let FaultAction::Error { status, .. } = self.action
            && !(400..=599).contains(&status)
        {
            return Err(FaultError::BadStatus(status));
        }
        Regex::new(&self.path).map_err(|source| FaultError::BadRegex {
            path: self.path.clone(),
            source,
        })
    }
}

/// An installed rule with its remaining budget and hit count.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveFault {
    pub id: u64,
    #[serde(flatten)]
    pub rule: FaultRule,
    pub remaining: Option<u64>,
    pub fired: u64,
    #[serde(skip)]
    regex: Option<Regex>,
}

/// The installed rules, first match wins.
#[derive(Debug, Default)]
pub struct FaultSet {
    rules: Vec<ActiveFault>,
    next_id: u64,
}

impl FaultSet {
    pub fn add(&mut self, rule: FaultRule) -> Result<u64, FaultError> {
        let regex = rule.compile()?;
        self.next_id += 1;
        self.rules.push(ActiveFault {
            id: self.next_id,
            remaining: rule.count,
            rule,
            fired: 0,
            regex: Some(regex),
        });
        Ok(self.next_id)
    }

    pub fn clear(&mut self) {
        self.rules.clear();
    }

    pub fn remove(&mut self, id: u64) -> bool {
        let before = self.rules.len();
        self.rules.retain(|r| r.id != id);
        before != self.rules.len()
    }

    pub fn list(&self) -> &[ActiveFault] {
        &self.rules
    }

    /// The action to take for this request in this phase, if a rule matches and fires.
    /// Each matching rule with budget left rolls its own probability, in order.
    pub fn pick(&mut self, phase: Phase, method: &str, path: &str) -> Option<FaultAction> {
        for r in &mut self.rules {
            if r.rule.action.phase() != phase || r.remaining == Some(0) {
                continue;
            }
            if let Some(m) = &r.rule.method
                && !m.eq_ignore_ascii_case(method)
            {
                continue;
            }
            if !r.regex.as_ref().is_some_and(|re| re.is_match(path)) {
                continue;
            }
            if r.rule.probability < 1.0 && fastrand::f64() >= r.rule.probability {
                continue;
            }
            if let Some(n) = r.remaining.as_mut() {
                *n -= 1;
            }
            r.fired += 1;
            return Some(r.rule.action.clone());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        method: Option<&str>,
        path: &str,
        count: Option<u64>,
        action: FaultAction,
    ) -> FaultRule {
        FaultRule {
            method: method.map(str::to_string),
            path: path.to_string(),
            probability: 1.0,
            count,
            action,
        }
    }

    #[test]
    fn count_limits_firing() {
        let mut f = FaultSet::default();
        f.add(rule(Some("get"), "/servers", Some(2), FaultAction::Drop))
            .unwrap();
        assert_eq!(
            f.pick(Phase::Http, "GET", "/compute/v2.1/servers"),
            Some(FaultAction::Drop)
        );
        assert_eq!(f.pick(Phase::Http, "POST", "/compute/v2.1/servers"), None);
        assert_eq!(
            f.pick(Phase::Http, "GET", "/compute/v2.1/servers/x"),
            Some(FaultAction::Drop)
        );
        assert_eq!(f.pick(Phase::Http, "GET", "/compute/v2.1/servers"), None);
        assert_eq!(f.list()[0].fired, 2);
    }

    #[test]
    fn phases_are_separate() {
        let mut f = FaultSet::default();
        f.add(rule(
            None,
            ".*",
            None,
            FaultAction::BootError { message: None },
        ))
        .unwrap();
        assert_eq!(f.pick(Phase::Http, "POST", "/compute/v2.1/servers"), None);
        assert!(
            f.pick(Phase::ServerCreate, "POST", "/compute/v2.1/servers")
                .is_some()
        );
    }

    #[test]
    fn zero_probability_never_fires() {
        let mut f = FaultSet::default();
        let mut r = rule(None, ".*", None, FaultAction::Drop);
        r.probability = 0.0;
        f.add(r).unwrap();
        assert!((0..1000).all(|_| f.pick(Phase::Http, "GET", "/").is_none()));
    }

    #[test]
    fn half_probability_fires_sometimes() {
        let mut f = FaultSet::default();
        let mut r = rule(None, ".*", None, FaultAction::Drop);
        r.probability = 0.5;
        f.add(r).unwrap();
        let fired = (0..2000)
            .filter(|_| f.pick(Phase::Http, "GET", "/").is_some())
            .count();
        assert!((700..1300).contains(&fired), "fired {fired} of 2000");
    }

    #[test]
    fn invalid_rules_are_rejected() {
        let mut f = FaultSet::default();
        assert!(f.add(rule(None, "(", None, FaultAction::Drop)).is_err());
        let bad_status = FaultAction::Error {
            status: 200,
            message: None,
        };
        assert!(f.add(rule(None, ".*", None, bad_status)).is_err());
    }

    #[test]
    fn parses_from_json() {
        let r: FaultRule = serde_json::from_str(
            r#"{"method":"GET","path":"/servers/detail","action":{"kind":"rate_limit","retry_after":3},"count":1}"#,
        )
        .unwrap();
        assert_eq!(r.action, FaultAction::RateLimit { retry_after: 3 });
        assert_eq!(r.probability, 1.0);
    }
}
