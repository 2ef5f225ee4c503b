//! Apply, following launched and deleted servers: one server list per poll; a launched
//! server becomes ready once ACTIVE, with its floating IP and SSH host keys when its pool wants
//! them; a failed boot is retried within `launch-retries`.

use super::*;

/// A node launched (or relaunched) in this apply, waited for until ready or failed.
pub(super) struct Launching {
    pub(super) node_id: String,
    pub(super) address: String,
    pub(super) server_id: String,
    /// How to boot again after a failed boot (`None`: no retry within this apply).
    pub(super) boot: Option<Boot>,
    pub(super) journal: i64,
    pub(super) since: Instant,
    /// The host-key scan of its ACTIVE server (`host-key-checking`), once started.
    pub(super) scan: Option<Scan>,
    /// Once settled: the floating IP given to its ACTIVE server (`Some(None)`: none needed).
    pub(super) floating_ip: Option<Option<String>>,
}

impl Launching {
    /// A server just created (or one an earlier apply created, waited for since `since`).
    pub(super) fn new(
        node_id: String,
        address: String,
        server_id: String,
        boot: Option<Boot>,
        journal: i64,
        since: Instant,
    ) -> Launching {
        Launching {
            node_id,
            address,
            server_id,
            boot,
            journal,
            since,
            scan: None,
            floating_ip: None,
        }
    }
}

/// A host-key scan running beside the wait loop; aborted if the launch is given up.
pub(super) struct Scan {
    pub(super) task: tokio::task::JoinHandle<Result<Vec<String>, crate::keyscan::KeyscanError>>,
}

impl Drop for Scan {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lines of a failed server's console logged with `console-log`.
const CONSOLE_LINES: u32 = 50;

/// A server deleted in this apply, waited for until it is gone (then the row goes too).
pub(super) struct Deleting {
    pub(super) node_id: String,
    pub(super) address: String,
    pub(super) server_id: String,
    pub(super) journal: i64,
}

impl Applier {
    /// A followed action ends failed: its journal row, the report and the event.
    fn end_failed(&self, journal: i64, address: String, error: String, report: &mut ApplyReport) {
        self.finish(journal, &Err(error.clone()));
        report.failed.push((address.clone(), error.clone()));
        self.report(ApplyEvent::Failed { address, error });
    }

    /// Poll the provider's server list until every launched node is ready (or failed) and
    /// every deleted server is gone, retrying failed boots within `launch-retries`.
    pub(super) async fn wait(
        &self,
        provider: &str,
        client: &OpenStackClient,
        networks: &BTreeMap<String, String>,
        mut launching: Vec<Launching>,
        mut deleting: Vec<Deleting>,
        report: &mut ApplyReport,
    ) {
        let Some(p) = self.config.provider(provider) else {
            return;
        };
        let launch_timeout = Duration::from_secs(p.launch_timeout);
        let delete_deadline = Instant::now() + self.options.delete_wait;
        let hand_over_at = self.options.launch_wait.map(|w| Instant::now() + w);
        while !launching.is_empty() || !deleting.is_empty() {
            if hand_over_at.is_some_and(|t| Instant::now() >= t) && !launching.is_empty() {
                // The rest is the next plan's (AwaitServer): the creates are done; waiting
                // is not a mutation. Scans in progress stop (their deadline is recorded).
                for l in launching.drain(..) {
                    let detail = format!(
                        "server {} created; the next pass follows it to ready",
                        l.server_id
                    );
                    self.finish(l.journal, &Ok(detail.clone()));
                    report.done += 1;
                    self.report(ApplyEvent::Done {
                        address: l.address.clone(),
                        detail,
                    });
                }
                if deleting.is_empty() {
                    break;
                }
            }
            tokio::time::sleep(self.options.poll_interval).await;
            let servers = match client.list_servers(&ServerQuery::default()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(provider, error = %e, "server list failed while waiting; trying again");
                    continue;
                }
            };
            let by_id: BTreeMap<&str, &crate::cloud::Server> =
                servers.iter().map(|s| (s.id.as_str(), s)).collect();
            // Deletions: gone → the record goes too.
            let mut still = Vec::new();
            for d in deleting.drain(..) {
                if by_id.contains_key(d.server_id.as_str()) && Instant::now() < delete_deadline {
                    still.push(d);
                    continue;
                }
                if by_id.contains_key(d.server_id.as_str()) {
                    let msg = format!(
                        "server {} still exists after {:?}; the next run finishes the delete",
                        d.server_id, self.options.delete_wait
                    );
                    self.end_failed(d.journal, d.address, msg, report);
                    continue;
                }
                let r = self.write(|w| {
                    if w.read().node(&d.node_id)?.is_some() {
                        w.remove_node(&d.node_id)?;
                    }
                    w.journal_done(d.journal).map(|_| ())
                });
                match r {
                    Ok(()) => {
                        report.done += 1;
                        self.report(ApplyEvent::Done {
                            address: d.address,
                            detail: format!("server {} deleted", d.server_id),
                        });
                    }
                    Err(e) => report.failed.push((d.address, e.to_string())),
                }
            }
            deleting = still;
            // Launches: ACTIVE → ready; ERROR or too slow → retry or give up.
            let mut still = Vec::new();
            for mut l in launching.drain(..) {
                let server = by_id.get(l.server_id.as_str());
                let status = server.map(|s| s.status.as_str().to_owned());
                let failure = match (server, status.as_deref()) {
                    (Some(s), Some("ACTIVE")) => {
                        let mut addrs = Addresses {
                            public_ipv4: s.public_ipv4.map(|a| a.to_string()),
                            private_ipv4: s.private_ipv4.map(|a| a.to_string()),
                            public_ipv6: s.public_ipv6.map(|a| a.to_string()),
                            az: s.availability_zone.clone(),
                        };
                        if l.floating_ip.is_none() {
                            match self.floating_ip(client, &l, &addrs).await {
                                Ok(fip) => l.floating_ip = Some(fip),
                                Err(why) => {
                                    // Not this attempt's fault: the next poll tries again,
                                    // within launch-timeout.
                                    tracing::warn!(node = %l.node_id, error = %why, "cannot attach a floating IP yet");
                                    if l.since.elapsed() > launch_timeout {
                                        self.end_failed(
                                            l.journal,
                                            l.address,
                                            format!("launch failed: {why}"),
                                            report,
                                        );
                                    } else {
                                        still.push(l);
                                    }
                                    continue;
                                }
                            }
                        }
                        if let Some(Some(ip)) = &l.floating_ip {
                            addrs.public_ipv4 = Some(ip.clone());
                        }
                        let keys = match self.host_keys(&mut l, &addrs, p).await {
                            std::task::Poll::Pending => {
                                still.push(l);
                                continue;
                            }
                            std::task::Poll::Ready(r) => r,
                        };
                        match keys {
                            Ok(keys) => {
                                let r = self.write(|w| {
                                    let node =
                                        mark_ready(w, &l.node_id, &l.server_id, &addrs, &keys)?;
                                    w.journal_done(l.journal)?;
                                    Ok(node)
                                });
                                match r {
                                    Ok(node) => {
                                        report.done += 1;
                                        self.report(ApplyEvent::Done {
                                            address: l.address.clone(),
                                            detail: format!(
                                                "ready at {}{}",
                                                addrs
                                                    .interface_ip()
                                                    .unwrap_or_else(|| "no address".into()),
                                                if keys.is_empty() {
                                                    String::new()
                                                } else {
                                                    format!(" ({} SSH host keys)", keys.len())
                                                }
                                            ),
                                        });
                                        self.report(ApplyEvent::NodeReady {
                                            node: Box::new(node),
                                        });
                                    }
                                    Err(e) => {
                                        report.failed.push((l.address.clone(), e.to_string()))
                                    }
                                }
                                continue;
                            }
                            Err(why) => Some((why, false)),
                        }
                    }
                    (Some(s), Some("ERROR")) => Some((
                        format!(
                            "server went to ERROR{}",
                            s.fault
                                .as_ref()
                                .map(|f| format!(": {}", f.message))
                                .unwrap_or_default()
                        ),
                        s.fault.as_ref().is_some_and(|f| f.is_quota()),
                    )),
                    (None, _) => Some(("server vanished while building".to_owned(), false)),
                    _ if l.since.elapsed() > launch_timeout => Some((
                        format!("not ACTIVE after launch-timeout {} s", p.launch_timeout),
                        false,
                    )),
                    _ => None,
                };
                let Some((why, quota)) = failure else {
                    still.push(l);
                    continue;
                };
                l.scan = None;
                l.floating_ip = None;
                match self.retry_launch(client, networks, &l, &why, quota).await {
                    Ok(Some(new_server)) => {
                        l.server_id = new_server;
                        l.since = Instant::now();
                        still.push(l);
                    }
                    Ok(None) | Err(_) => {
                        self.end_failed(
                            l.journal,
                            l.address,
                            format!("launch failed: {why}"),
                            report,
                        );
                    }
                }
            }
            launching = still;
        }
    }

    /// `console-log`: the end of a failed server's console, logged before the server goes
    /// (best effort: a server that never ran has none).
    pub(super) async fn log_console(
        &self,
        client: &OpenStackClient,
        node: &crate::state::Node,
        server_id: &str,
        why: &str,
    ) {
        let wanted = self
            .place(&node.provider, &node.pool, &node.label)
            .is_some_and(|(_, _, label)| label.console_log);
        if !wanted {
            return;
        }
        match client.console_output(server_id, Some(CONSOLE_LINES)).await {
            Ok(console) => tracing::warn!(
                node = %node.id,
                server = server_id,
                reason = why,
                %console,
                "console log of a failed launch"
            ),
            Err(e) => tracing::info!(
                node = %node.id,
                server = server_id,
                error = %e,
                "no console log of the failed launch"
            ),
        }
    }

    /// When a launching node's server was first seen ACTIVE: recorded now (its addresses,
    /// and the state time restarted) unless an earlier pass did.
    pub(super) fn note_active(&self, node_id: &str, addrs: &Addresses) -> Result<i64, String> {
        self.write(|w| {
            let node = w
                .read()
                .node(node_id)?
                .ok_or_else(|| StateError::Invalid(format!("node {node_id} is gone")))?;
            if node.details.interface_ip.is_some() {
                return Ok(node.state_time);
            }
            w.update_node(node_id, |d| {
                d.public_ipv4 = addrs.public_ipv4.clone();
                d.private_ipv4 = addrs.private_ipv4.clone();
                d.public_ipv6 = addrs.public_ipv6.clone();
                d.interface_ip = addrs.interface_ip();
            })?;
            Ok(w.restart_attempt(node_id)?.state_time)
        })
        .map_err(|e| e.to_string())
    }

    /// A node's current record (`None` if it is gone or cannot be read).
    pub(super) fn node(&self, id: &str) -> Option<crate::state::Node> {
        self.store
            .lock()
            .expect("store")
            .read()
            .node(id)
            .ok()
            .flatten()
    }

    /// `auto-floating-ip` (upstream's default): an ACTIVE server with no public address gets a
    /// floating IP from the cloud's external network on its port. Returns the address, or
    /// `None` when the pool does not want one or the server has a public address.
    ///
    /// Idempotent, so an interrupted attempt never allocates two: an address already on the
    /// server's port is used. No journal entry of its own: the node's launch entry is still
    /// open, and the node's deletion deletes the floating IPs on its server.
    pub(super) async fn floating_ip(
        &self,
        client: &OpenStackClient,
        l: &Launching,
        addrs: &Addresses,
    ) -> Result<Option<String>, String> {
        let Some(node) = self.node(&l.node_id).filter(|n| self.wants_floating_ip(n)) else {
            return Ok(None);
        };
        if addrs.public_ipv4.is_some() || addrs.public_ipv6.is_some() {
            return Ok(None);
        }
        let Some(net) = self.external_network(client, &node.provider).await? else {
            // A cloud without floating IPs (as openstacksdk decides it): the server is
            // reached on the address it has.
            return Ok(None);
        };
        let ports = server_floating_ips(client, &l.server_id)
            .await
            .map_err(|e| format!("auto-floating-ip: {e}"))?;
        let Some((port, on_port)) = ports.first() else {
            return Err(format!(
                "auto-floating-ip: server {} has no port yet",
                l.server_id
            ));
        };
        if let Some(f) = on_port.first() {
            return Ok(Some(f.floating_ip_address.clone()));
        }
        let fip = client
            .create_floating_ip(&net.id, Some(port))
            .await
            .map_err(|e| format!("auto-floating-ip: on network {}: {e}", net.name))?;
        tracing::info!(node = %l.node_id, address = %fip.floating_ip_address, "floating IP attached");
        Ok(Some(fip.floating_ip_address))
    }

    /// Delete the floating IPs on the ports of a server about to be deleted for another
    /// attempt (`auto-floating-ip` gave it one): once the server is gone they would be attached
    /// to nothing, and nothing would say they were this node's. A node's own deletion plans
    /// them instead (`DeleteNode.floating_ips`).
    pub(super) async fn release_floating_ips(
        &self,
        client: &OpenStackClient,
        node: &crate::state::Node,
        server_id: &str,
    ) -> Result<(), String> {
        if !self.wants_floating_ip(node) {
            return Ok(());
        }
        for (_, fips) in server_floating_ips(client, server_id).await? {
            for f in fips {
                match client.delete_floating_ip(&f.id).await {
                    Ok(()) => {}
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(format!("floating IP {}: {e}", f.floating_ip_address)),
                }
            }
        }
        Ok(())
    }

    /// Whether the node's pool gives its servers floating IPs (`auto-floating-ip`).
    fn wants_floating_ip(&self, node: &crate::state::Node) -> bool {
        self.place(&node.provider, &node.pool, &node.label)
            .is_some_and(|(_, pool, _)| pool.auto_floating_ip)
    }

    /// The external network of `provider`'s cloud (the first the project sees), looked up
    /// once per apply.
    async fn external_network(
        &self,
        client: &OpenStackClient,
        provider: &str,
    ) -> Result<Option<crate::cloud::Network>, String> {
        if let Some(known) = self
            .external_networks
            .lock()
            .expect("external networks lock")
            .get(provider)
        {
            return Ok(known.clone());
        }
        let found = client
            .list_networks(None, true)
            .await
            .map_err(|e| format!("auto-floating-ip: external networks: {e}"))?
            .into_iter()
            .next();
        if found.is_none() {
            tracing::debug!(provider, "no external network: servers get no floating IP");
        }
        self.external_networks
            .lock()
            .expect("external networks lock")
            .insert(provider.to_owned(), found.clone());
        Ok(found)
    }

    /// The SSH host keys of a launching node's ACTIVE server: `Ready(Ok([]))` when its pool
    /// does not check them; otherwise a scan is started (bounded by `boot-timeout`) and polled.
    pub(super) async fn host_keys(
        &self,
        l: &mut Launching,
        addrs: &Addresses,
        provider: &crate::config::model::OpenStackProvider,
    ) -> std::task::Poll<Result<Vec<String>, String>> {
        use std::task::Poll;
        if l.scan.is_none() {
            let port = self.node(&l.node_id).and_then(|n| {
                let (_, pool, _) = self.place(&n.provider, &n.pool, &n.label)?;
                launch::keyscan_port(pool, &n.details)
            });
            let Some(port) = port else {
                return Poll::Ready(Ok(Vec::new()));
            };
            let Some(ip) = addrs
                .interface_ip()
                .and_then(|ip| ip.parse::<std::net::IpAddr>().ok())
            else {
                return Poll::Ready(Err(
                    "server is ACTIVE without an address to scan its SSH host keys on".into(),
                ));
            };
            let target = std::net::SocketAddr::new(ip, port);
            // boot-timeout counts from when the server was first seen ACTIVE (recorded, so a
            // scan handed over to a later pass keeps its deadline).
            let active_at = match self.note_active(&l.node_id, addrs) {
                Ok(t) => t,
                Err(e) => return Poll::Ready(Err(e)),
            };
            let left = active_at
                .saturating_add(i64::try_from(provider.boot_timeout).unwrap_or(i64::MAX))
                .saturating_sub(crate::state::now_unix());
            let within = Duration::from_secs(u64::try_from(left).unwrap_or(0));
            let interval = self
                .options
                .poll_interval
                .clamp(Duration::from_millis(200), Duration::from_secs(2));
            tracing::debug!(node = %l.node_id, %target, "scanning SSH host keys");
            l.scan = Some(Scan {
                task: tokio::spawn(crate::keyscan::wait_for_host_keys(target, within, interval)),
            });
        }
        let scan = l.scan.as_mut().expect("scan started above");
        if !scan.task.is_finished() {
            return Poll::Pending;
        }
        let out = match (&mut scan.task).await {
            Ok(Ok(keys)) => Ok(keys),
            Ok(Err(crate::keyscan::KeyscanError::TimedOut { addr, last, .. })) => Err(format!(
                "no SSH host keys from {addr} within boot-timeout {} s of ACTIVE ({last})",
                provider.boot_timeout
            )),
            Ok(Err(e)) => Err(format!("{e} (boot-timeout {} s)", provider.boot_timeout)),
            Err(e) => Err(format!("host-key scan stopped: {e}")),
        };
        l.scan = None;
        Poll::Ready(out)
    }

    /// Another attempt for a failed boot, or `None` when the attempts are used up (the node
    /// then goes to `failed` with its server being deleted; the next plan finishes the delete).
    pub(super) async fn retry_launch(
        &self,
        client: &OpenStackClient,
        networks: &BTreeMap<String, String>,
        l: &Launching,
        why: &str,
        quota: bool,
    ) -> Result<Option<String>, String> {
        let Some(node) = self.node(&l.node_id) else {
            return Ok(None);
        };
        let Some(provider) = self.config.provider(&node.provider) else {
            return Ok(None);
        };
        let Some(boot) = &l.boot else { return Ok(None) };
        self.log_console(client, &node, &l.server_id, why).await;
        if let Err(e) = self.release_floating_ips(client, &node, &l.server_id).await {
            tracing::warn!(node = %node.id, error = %e, "floating IP of a failed server left behind");
        }
        let _ = delete_server(client, &l.server_id).await;
        if !quota && node.details.launch_attempts >= provider.launch_retries.max(1) {
            let _ = self.write(|w| {
                w.update_node(&l.node_id, |d| d.last_error = Some(why.to_owned()))?;
                w.set_node_state(&l.node_id, NodeState::Failed)?;
                Ok(())
            });
            return Ok(None);
        }
        tracing::info!(node = %node.id, reason = why, "launching again");
        self.boot_node(client, networks, &node, boot, !quota)
            .await
            .map(Some)
    }
}

/// The ports of a server (by id), each with the floating IPs attached to it.
async fn server_floating_ips(
    client: &OpenStackClient,
    server_id: &str,
) -> Result<Vec<(String, Vec<crate::cloud::FloatingIp>)>, String> {
    let ports = client
        .list_ports(&crate::cloud::PortQuery {
            device_id: Some(server_id.to_owned()),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("ports of server {server_id}: {e}"))?;
    let mut out = Vec::with_capacity(ports.len());
    for port in ports {
        let fips = client
            .list_floating_ips(&crate::cloud::FloatingIpQuery {
                port_id: Some(port.id.clone()),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("floating IPs of port {}: {e}", port.id))?;
        out.push((port.id, fips));
    }
    Ok(out)
}
