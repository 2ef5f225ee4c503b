//! Apply, the node actions sent to a cloud: launches, relaunches, deletions, leak cleanup.

use super::*;

impl Applier {
    /// Network names used by this provider's launches → ids (one list per name).
    pub(super) async fn network_ids(
        &self,
        provider: &str,
        client: &OpenStackClient,
        actions: &[(i64, &Action)],
    ) -> Result<BTreeMap<String, String>, CloudError> {
        let launches = actions.iter().any(|(_, a)| {
            matches!(
                a.kind,
                ActionKind::LaunchNode { .. } | ActionKind::RelaunchNode { .. }
            )
        });
        let mut names = BTreeSet::new();
        if let (true, Some(p)) = (launches, self.config.provider(provider)) {
            for pool in &p.pools {
                names.extend(pool.networks.iter().cloned());
                for l in &pool.labels {
                    names.extend(l.networks.iter().flatten().cloned());
                }
            }
        }
        let mut out = BTreeMap::new();
        for n in names {
            let net = client.find_network(&n).await?;
            out.insert(n, net.id);
        }
        Ok(out)
    }

    pub(super) async fn mutate(
        &self,
        client: &OpenStackClient,
        networks: &BTreeMap<String, String>,
        seq: i64,
        a: &Action,
    ) -> Step {
        let failed = |e: String| Step::Failed(a.address.clone(), e);
        match &a.kind {
            ActionKind::LaunchNode {
                provider,
                pool,
                label,
                boot,
                request,
            } => {
                let Some((p, pool_config, lb)) = self.place(provider, pool, label) else {
                    return failed(format!("{provider}.{pool}.{label} is no longer configured"));
                };
                let boot = match self.resolve_after(boot) {
                    Ok(b) => b,
                    Err(e) => return failed(e),
                };
                let boot = &boot;
                let (username, ctype, port, python, shell) =
                    launch::connection(&self.config, p, lb);
                let new = NewNode {
                    provider: provider.clone(),
                    pool: pool.clone(),
                    label: label.clone(),
                    hostname: None,
                    state: NodeState::Init,
                    details: NodeDetails {
                        cloud: p.cloud.clone(),
                        region: p.region_name.clone(),
                        allocated_request: request.clone(),
                        username: Some(username),
                        connection_type: Some(ctype),
                        connection_port: Some(port),
                        python_path: Some(python),
                        shell_type: shell,
                        image_name: Some(boot.image_name.clone()),
                        upload_id: boot.upload_id.clone(),
                        image_id: Some(boot.image_id.clone()),
                        flavor: Some(boot.flavor_name.clone()),
                        cores: u32::try_from(boot.vcpus).ok(),
                        ram: u32::try_from(boot.ram_mb).ok(),
                        instances: Some(1),
                        attributes: pool_config
                            .node_attributes
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        ..NodeDetails::default()
                    },
                };
                // The node row (the slot) and the journal entry exist before the create is sent.
                let prepared = self.write(|w| {
                    let node = w.insert_node_named(&new, |id| launch::hostname(p, label, id))?;
                    let j = self.journal(w, seq, "create-server", a)?;
                    w.journal_start(j)?;
                    if let Some(r) = request {
                        to_pending(w, r)?;
                    }
                    Ok((node, j))
                });
                let (node, j) = match prepared {
                    Ok(x) => x,
                    Err(e) => return failed(e.to_string()),
                };
                let address = format!("node.{provider}.{pool}.{label}[{}]", node.id);
                match self.boot_node(client, networks, &node, boot, true).await {
                    Ok(server_id) => Step::Launching(Box::new(Launching::new(
                        node.id.clone(),
                        address,
                        server_id,
                        Some(boot.clone()),
                        j,
                        Instant::now(),
                    ))),
                    Err(e) => {
                        let msg = e.to_string();
                        self.finish(j, &Err(msg.clone()));
                        Step::Failed(address, msg)
                    }
                }
            }
            ActionKind::RelaunchNode {
                node_id,
                server_id,
                boot,
                counts_as_attempt,
                ..
            } => {
                let node = match self.store.lock().expect("store").read().node(node_id) {
                    Ok(Some(n)) => n,
                    Ok(None) => return failed(format!("node {node_id} no longer exists")),
                    Err(e) => return failed(e.to_string()),
                };
                if self
                    .place(&node.provider, &node.pool, &node.label)
                    .is_none()
                {
                    return failed("the node's pool label is no longer configured".into());
                }
                let boot = match self.resolve_after(boot) {
                    Ok(b) => b,
                    Err(e) => return failed(e),
                };
                let boot = &boot;
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, "relaunch-server", a)?;
                    w.journal_start(j)?;
                    w.update_node(node_id, |d| {
                        d.image_id = Some(boot.image_id.clone());
                        d.upload_id = boot.upload_id.clone();
                        d.flavor = Some(boot.flavor_name.clone());
                    })?;
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                if let Some(old) = server_id {
                    self.log_console(client, &node, old, &a.reason).await;
                    if let Err(e) = self.release_floating_ips(client, &node, old).await {
                        self.finish(j, &Err(e.clone()));
                        return failed(e);
                    }
                }
                if let Some(old) = server_id
                    && let Err(e) = delete_server(client, old).await
                {
                    let msg = e.to_string();
                    self.finish(j, &Err(msg.clone()));
                    return failed(msg);
                }
                match self
                    .boot_node(client, networks, &node, boot, *counts_as_attempt)
                    .await
                {
                    Ok(sid) => Step::Launching(Box::new(Launching::new(
                        node_id.clone(),
                        a.address.clone(),
                        sid,
                        Some(boot.clone()),
                        j,
                        Instant::now(),
                    ))),
                    Err(e) => {
                        let msg = e.to_string();
                        self.finish(j, &Err(msg.clone()));
                        failed(msg)
                    }
                }
            }
            ActionKind::DeleteNode {
                node_id,
                server_id,
                floating_ips,
                ..
            } => {
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, "delete-server", a)?;
                    w.journal_start(j)?;
                    if let Some(n) = w.read().node(node_id)?
                        && n.state != NodeState::Deleting
                    {
                        w.set_node_state(node_id, NodeState::Deleting)?;
                    }
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                // Its floating IPs first: once the server is gone they would be attached to
                // nothing, and nothing would say they were this node's.
                for fip in floating_ips {
                    match client.delete_floating_ip(fip).await {
                        Ok(()) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => {
                            let msg = format!("floating IP {fip}: {e}");
                            self.finish(j, &Err(msg.clone()));
                            return failed(msg);
                        }
                    }
                }
                match server_id {
                    Some(sid) => match delete_server(client, sid).await {
                        Ok(()) => Step::Deleting(Deleting {
                            node_id: node_id.clone(),
                            address: a.address.clone(),
                            server_id: sid.clone(),
                            journal: j,
                        }),
                        Err(e) => {
                            let msg = e.to_string();
                            self.finish(j, &Err(msg.clone()));
                            failed(msg)
                        }
                    },
                    None => {
                        let r = self.write(|w| {
                            w.remove_node(node_id)?;
                            w.journal_done(j).map(|_| ())
                        });
                        match r {
                            Ok(()) => {
                                Step::Done(a.address.clone(), "record removed (no server)".into())
                            }
                            Err(e) => failed(e.to_string()),
                        }
                    }
                }
            }
            ActionKind::AwaitServer {
                node_id,
                server_id,
                boot,
                ..
            } => {
                let node = match self.store.lock().expect("store").read().node(node_id) {
                    Ok(Some(n)) => n,
                    Ok(None) => return failed(format!("node {node_id} no longer exists")),
                    Err(e) => return failed(e.to_string()),
                };
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, "await-server", a)?;
                    w.journal_start(j)?;
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                // The launch-timeout counts from when this attempt started.
                let elapsed = Duration::from_secs(
                    u64::try_from(crate::state::now_unix() - node.state_time).unwrap_or(0),
                );
                Step::Launching(Box::new(Launching::new(
                    node_id.clone(),
                    a.address.clone(),
                    server_id.clone(),
                    boot.clone(),
                    j,
                    Instant::now()
                        .checked_sub(elapsed)
                        .unwrap_or_else(Instant::now),
                )))
            }
            ActionKind::DeleteLeak {
                kind, external_id, ..
            } => {
                let j = match self.write(|w| {
                    let j = self.journal(w, seq, &format!("delete-{}", kind.as_str()), a)?;
                    w.journal_start(j)?;
                    Ok(j)
                }) {
                    Ok(j) => j,
                    Err(e) => return failed(e.to_string()),
                };
                let r = match kind {
                    LeakKind::Server => client.delete_server(external_id).await,
                    LeakKind::FloatingIp => client.delete_floating_ip(external_id).await,
                    LeakKind::Port => client.delete_port(external_id).await,
                    LeakKind::Image => client.delete_image(external_id).await,
                };
                let r = match r {
                    Err(e) if e.is_not_found() => Ok(()),
                    other => other,
                };
                let result = r.map(|()| "deleted".to_owned()).map_err(|e| e.to_string());
                self.finish(j, &result);
                match result {
                    Ok(d) => Step::Done(a.address.clone(), d),
                    Err(e) => failed(e),
                }
            }
            other => unreachable!("{other:?} is database-only"),
        }
    }

    /// A boot that waits for an upload of this apply gets that upload's image id.
    pub(super) fn resolve_after(&self, boot: &Boot) -> Result<Boot, String> {
        let Some(after) = &boot.after else {
            return Ok(boot.clone());
        };
        let uploaded = self.uploaded.lock().expect("uploaded lock");
        match uploaded.get(after) {
            Some((image_id, upload_id)) => {
                let mut b = boot.clone();
                b.image_id = image_id.clone();
                b.upload_id = Some(upload_id.clone());
                b.after = None;
                Ok(b)
            }
            None => Err(format!(
                "{after} did not complete, so there is no image to boot"
            )),
        }
    }

    pub(super) fn place(
        &self,
        provider: &str,
        pool: &str,
        label: &str,
    ) -> Option<(
        &crate::config::model::OpenStackProvider,
        &crate::config::model::Pool,
        &crate::config::model::PoolLabel,
    )> {
        let p = self.config.provider(provider)?;
        let pl = p.pools.iter().find(|x| x.name == pool)?;
        let lb = pl.labels.iter().find(|x| x.name == label)?;
        Some((p, pl, lb))
    }

    /// Boot `node` (its row exists) with `boot`: the create request comes from the config of
    /// its pool label and the request it is allocated to.
    pub(super) async fn boot_node(
        &self,
        client: &OpenStackClient,
        networks: &BTreeMap<String, String>,
        node: &crate::state::Node,
        boot: &Boot,
        counts: bool,
    ) -> Result<String, String> {
        let (provider, pool, label) = self
            .place(&node.provider, &node.pool, &node.label)
            .ok_or_else(|| "the node's pool label is no longer configured".to_owned())?;
        let request = node
            .details
            .allocated_request
            .as_ref()
            .and_then(|r| self.store.lock().ok()?.read().request(r).ok().flatten());
        let spec = LaunchSpec {
            config: &self.config,
            provider,
            pool,
            label,
            node_id: &node.id,
            hostname: &node.hostname,
            boot,
            request: request.as_ref(),
            network_ids: networks,
        };
        self.create(client, &spec, &node.id, counts)
            .await
            .map_err(|e| e.to_string())
    }

    /// Send the create. On success the node is `building` with its server id; a quota refusal
    /// leaves it `init` without using an attempt (the next plan retries); an ambiguous failure
    /// (timeout, dropped connection) also leaves it `init`, so the next plan adopts the server
    /// if the create did happen (it carries the node id) or launches again if it did not.
    pub(super) async fn create(
        &self,
        client: &OpenStackClient,
        spec: &LaunchSpec<'_>,
        node_id: &str,
        counts: bool,
    ) -> Result<String, CloudError> {
        let req = launch::create_request(spec);
        match client.create_server(&req).await {
            Ok(server_id) => {
                let r = self.write(|w| {
                    w.update_node(node_id, |d| {
                        d.server_id = Some(server_id.clone());
                        d.az = spec.boot.az.clone();
                        // A new server: the addresses of an earlier attempt's are gone.
                        d.public_ipv4 = None;
                        d.private_ipv4 = None;
                        d.public_ipv6 = None;
                        d.interface_ip = None;
                        if counts {
                            d.launch_attempts += 1;
                        }
                    })?;
                    match w.read().node(node_id)? {
                        Some(n) if n.state == NodeState::Building => {
                            w.restart_attempt(node_id)?;
                        }
                        Some(_) => {
                            w.set_node_state(node_id, NodeState::Building)?;
                        }
                        None => {}
                    }
                    Ok(())
                });
                if let Err(e) = r {
                    tracing::error!(node = node_id, error = %e, "server created but not recorded; the next plan adopts it");
                }
                Ok(server_id)
            }
            Err(e) => {
                let definite = !(e.is_quota()
                    || matches!(
                        e,
                        CloudError::Timeout { .. } | CloudError::Transport { connect: false, .. }
                    ));
                let msg = e.to_string();
                let _ = self.write(|w| {
                    w.update_node(node_id, |d| d.last_error = Some(msg.clone()))?;
                    if definite {
                        let n = w.read().node(node_id)?;
                        if n.is_some_and(|n| n.state.can_transition_to(NodeState::Failed)) {
                            w.set_node_state(node_id, NodeState::Failed)?;
                        }
                    }
                    Ok(())
                });
                Err(e)
            }
        }
    }
}
