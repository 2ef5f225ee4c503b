//! `nodepool doctor`: checks one provider end to end without changing anything.
//!
//! Authenticates, then makes each read the reconciler depends on, timing each, and sums up
//! quota, usage and leak candidates with a verdict and a plain explanation. It deliberately
//! never creates or deletes anything: a create+delete probe would prove the write permissions
//! too, but would boot servers and allocate addresses on a production cloud at every run.
//! Write permissions follow from the role; the report lists the token's roles so an operator
//! can see a missing `member`.

use std::time::Instant;

use serde::Serialize;

use super::client::{OpenStackClient, TokenInfo};
use super::compute::{Limits, ServerQuery, ServerStatus};
use super::error::CloudError;
use super::image::ImageQuery;
use super::network::{FloatingIpQuery, PortQuery};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check passed and there is capacity.
    Ok,
    /// Usable, but launches will wait (no quota left) or something needs attention.
    Degraded,
    /// The reconciler cannot work with this provider as configured.
    Failed,
}

/// One check: an API call the reconciler needs.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    pub name: &'static str,
    /// The call made, e.g. `GET /v2.0/ports`.
    pub call: &'static str,
    pub ok: bool,
    /// Wall time of the call, including waiting for the provider's rate limiter and retries.
    pub latency_ms: u64,
    /// What was found, or why it failed.
    pub detail: String,
}

/// What the checks counted.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Counts {
    pub servers: Option<usize>,
    /// Servers carrying nodepool's metadata (`nodepool_node_id`): the ones a nodepool made.
    pub nodepool_servers: Option<usize>,
    pub error_servers: Option<usize>,
    pub floating_ips: Option<usize>,
    /// Floating IPs attached to nothing: leak candidates.
    pub unattached_floating_ips: Option<usize>,
    /// DOWN ports: leak candidates.
    pub down_ports: Option<usize>,
    /// Images owned by the project.
    pub images: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DoctorReport {
    pub provider: String,
    pub auth_url: String,
    pub user: Option<String>,
    pub project: Option<String>,
    pub region: Option<String>,
    pub verdict: Verdict,
    /// One or two sentences an operator can act on.
    pub explanation: String,
    pub token: Option<TokenInfo>,
    pub checks: Vec<Check>,
    pub quota: Option<Limits>,
    pub counts: Counts,
    pub notes: Vec<String>,
}

/// Why a check failed, phrased for an operator.
fn explain(e: &CloudError) -> String {
    match e {
        CloudError::PermissionDenied { op, message } => format!(
            "permission denied on {op}: the account lacks a role that allows it (the reconciler needs the member role in its project); the service said: {message}"
        ),
        CloudError::NoEndpoint { .. } => {
            format!("{e}: check region_name and interface, or set an endpoint override")
        }
        CloudError::Timeout { op, after } => format!(
            "{op} did not answer within {}s: the service is overloaded or unreachable",
            after.as_secs_f64()
        ),
        CloudError::Transport { op, message, .. } => {
            format!("cannot reach the service for {op}: {message}")
        }
        other => other.to_string(),
    }
}

struct Run<'a> {
    checks: Vec<Check>,
    first_failure: Option<String>,
    client: &'a OpenStackClient,
}

impl Run<'_> {
    async fn check<T, F, Fut>(
        &mut self,
        name: &'static str,
        call: &'static str,
        f: F,
        describe: impl FnOnce(&T) -> String,
    ) -> Option<T>
    where
        F: FnOnce(OpenStackClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, CloudError>>,
    {
        let started = Instant::now();
        let result = f(self.client.clone()).await;
        let latency_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(v) => {
                self.checks.push(Check {
                    name,
                    call,
                    ok: true,
                    latency_ms,
                    detail: describe(&v),
                });
                Some(v)
            }
            Err(e) => {
                let why = explain(&e);
                self.first_failure.get_or_insert_with(|| why.clone());
                self.checks.push(Check {
                    name,
                    call,
                    ok: false,
                    latency_ms,
                    detail: why,
                });
                None
            }
        }
    }
}

/// Runs every check against `client`'s provider. Never fails: failures are in the report.
pub async fn doctor(client: &OpenStackClient) -> DoctorReport {
    let creds = client.credentials();
    let summary = creds.describe();
    let mut report = DoctorReport {
        provider: summary.source,
        auth_url: client.identity_url().to_owned(),
        user: summary.user,
        project: summary.project,
        region: summary.region_name,
        verdict: Verdict::Ok,
        explanation: String::new(),
        token: None,
        checks: Vec::new(),
        quota: None,
        counts: Counts::default(),
        notes: vec![
            "read-only: create/delete permissions are not exercised (that would boot servers); they follow from the member role".into(),
        ],
    };
    let mut run = Run {
        checks: Vec::new(),
        first_failure: None,
        client,
    };
    client.forget_token().await;
    let token = run
        .check(
            "authenticate",
            "POST /v3/auth/tokens",
            |c| async move { c.authenticate().await },
            |t: &TokenInfo| format!("roles: {}", t.roles.join(", ")),
        )
        .await;
    let Some(token) = token else {
        report.checks = run.checks;
        report.verdict = Verdict::Failed;
        report.explanation = run.first_failure.unwrap_or_default();
        return report;
    };
    if !token.roles.iter().any(|r| r == "member" || r == "admin") {
        report.notes.push(format!(
            "the token's roles ({}) include neither member nor admin: creating servers will likely be denied",
            token.roles.join(", ")
        ));
    }
    let project_id = token.project_id.clone();
    report.token = Some(token);

    let servers = run
        .check(
            "list servers",
            "GET /servers/detail",
            |c| async move { c.list_servers(&ServerQuery::default()).await },
            |v| format!("{} servers", v.len()),
        )
        .await;
    if let Some(servers) = &servers {
        report.counts.servers = Some(servers.len());
        report.counts.nodepool_servers = Some(
            servers
                .iter()
                .filter(|s| s.metadata.contains_key("nodepool_node_id"))
                .count(),
        );
        report.counts.error_servers = Some(
            servers
                .iter()
                .filter(|s| s.status == ServerStatus::Error)
                .count(),
        );
    }
    run.check(
        "list flavors",
        "GET /flavors/detail",
        |c| async move { c.list_flavors().await },
        |v| format!("{} flavors", v.len()),
    )
    .await;
    report.quota = run
        .check(
            "compute limits",
            "GET /limits",
            |c| async move { c.limits().await },
            |l: &Limits| {
                let q = |q: &super::compute::Quota| match q.limit {
                    Some(l) => format!("{} of {l}", q.used),
                    None => format!("{} (unlimited)", q.used),
                };
                format!(
                    "instances {}, cores {}, ram MB {}",
                    q(&l.instances),
                    q(&l.cores),
                    q(&l.ram_mb)
                )
            },
        )
        .await;
    run.check(
        "availability zones",
        "GET /os-availability-zone",
        |c| async move { c.availability_zones().await },
        |v| {
            v.iter()
                .map(|z| {
                    format!(
                        "{}{}",
                        z.name,
                        if z.available { "" } else { " (unavailable)" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        },
    )
    .await;
    let images = run
        .check(
            "list images",
            "GET /v2/images",
            |c| async move { c.list_images(&ImageQuery::default()).await },
            |v| format!("{} images visible", v.len()),
        )
        .await;
    if let Some(images) = &images {
        report.counts.images = Some(
            images
                .iter()
                .filter(|i| project_id.is_some() && i.owner == project_id)
                .count(),
        );
    }
    run.check(
        "list networks",
        "GET /v2.0/networks",
        |c| async move { c.list_networks(None, false).await },
        |v| format!("{} networks", v.len()),
    )
    .await;
    let fips = run
        .check(
            "list floating IPs",
            "GET /v2.0/floatingips",
            |c| async move { c.list_floating_ips(&FloatingIpQuery::default()).await },
            |v| format!("{} floating IPs", v.len()),
        )
        .await;
    if let Some(fips) = &fips {
        report.counts.floating_ips = Some(fips.len());
        report.counts.unattached_floating_ips =
            Some(fips.iter().filter(|f| f.port_id.is_none()).count());
    }
    let ports = run
        .check(
            "list DOWN ports",
            "GET /v2.0/ports?status=DOWN",
            |c| async move {
                c.list_ports(&PortQuery {
                    status: Some("DOWN".into()),
                    ..Default::default()
                })
                .await
            },
            |v| format!("{} DOWN ports", v.len()),
        )
        .await;
    report.counts.down_ports = ports.as_ref().map(Vec::len);

    report.checks = run.checks;
    let failed = report.checks.iter().filter(|c| !c.ok).count();
    if let Some(why) = run.first_failure {
        report.verdict = Verdict::Failed;
        report.explanation = if failed > 1 {
            format!("{why} (and {} more failed checks)", failed - 1)
        } else {
            why
        };
        return report;
    }
    let exhausted: Vec<String> = report
        .quota
        .iter()
        .flat_map(|l| {
            [
                ("instances", l.instances),
                ("cores", l.cores),
                ("ram MB", l.ram_mb),
            ]
        })
        .filter(|(_, q)| q.remaining() == Some(0))
        .map(|(n, q)| format!("{n} ({} of {})", q.used, q.limit.unwrap_or(0)))
        .collect();
    let who = format!(
        "authenticated as {} in project {}",
        report.user.as_deref().unwrap_or("?"),
        report.project.as_deref().unwrap_or("?")
    );
    if !exhausted.is_empty() {
        report.verdict = Verdict::Degraded;
        report.explanation = format!(
            "{who}, every check passed, but no quota is left for {}: launches will wait",
            exhausted.join(", ")
        );
    } else {
        let slowest = report.checks.iter().max_by_key(|c| c.latency_ms);
        report.explanation = format!(
            "{who}; all {} checks passed{}",
            report.checks.len(),
            slowest
                .map(|c| format!(" (slowest: {} {} ms)", c.call, c.latency_ms))
                .unwrap_or_default()
        );
    }
    let leaks =
        report.counts.unattached_floating_ips.unwrap_or(0) + report.counts.down_ports.unwrap_or(0);
    if leaks > 0 {
        report.notes.push(format!(
            "{} unattached floating IPs and {} DOWN ports: leak candidates the reconciler cleans up if they are its own",
            report.counts.unattached_floating_ips.unwrap_or(0),
            report.counts.down_ports.unwrap_or(0)
        ));
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::error::{Operation, Service};

    #[test]
    fn permission_denied_explanation_names_the_call_and_the_role() {
        let e = CloudError::PermissionDenied {
            op: Operation {
                service: Service::Network,
                method: "GET".into(),
                path: "/v2.0/ports".into(),
            },
            message: "rule:get_port is disallowed by policy".into(),
        };
        let text = explain(&e);
        assert!(text.starts_with("permission denied on GET /v2.0/ports: the account lacks a role"));
        assert!(text.contains("member role") && text.contains("disallowed by policy"));
    }
}
