//! A pass that follows its launches for a bounded time (the daemon's `launch_wait`) hands
//! slow boots and SSH waits to the next pass, and the timeouts keep counting across passes:
//! launch-timeout from the attempt's start, boot-timeout from when the server was first seen
//! ACTIVE (recorded in the database).

#[path = "common/sim.rs"]
mod sim;

use cloudsim::SimConfig;
use nodepool::reconcile::apply::ApplyOptions;
use nodepool::reconcile::plan::ActionKind;
use nodepool::state::NodeState;
use std::time::{Duration, Instant};

fn bounded(wait_ms: u64) -> ApplyOptions {
    ApplyOptions {
        poll_interval: Duration::from_millis(50),
        delete_wait: Duration::from_secs(20),
        launch_wait: Some(Duration::from_millis(wait_ms)),
        ..ApplyOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_boot_is_followed_by_the_next_passes() {
    let env = sim::start(
        SimConfig {
            boot_delay_ms: 1500,
            delete_delay_ms: 50,
            ..SimConfig::default()
        },
        &sim::config(1, 4),
    )
    .await;
    let (_, first, plan) = env.apply_once_with(bounded(200)).await;
    assert!(matches!(
        plan.actions[0].kind,
        ActionKind::LaunchNode { .. }
    ));
    assert!(first.failed.is_empty(), "{first:?}");
    assert_eq!(first.done, 1, "the create is done; the wait is handed over");
    let node = &env.nodes()[0];
    assert_eq!(node.state, NodeState::Building);
    let mut ws = env.workspace();
    assert!(
        ws.store.read().unfinished_journal().unwrap().is_empty(),
        "no journal entry is left open by the hand-over"
    );
    let next = nodepool::ops::plan::plan(&mut ws, nodepool::state::now_unix())
        .await
        .unwrap();
    assert!(
        matches!(&next.doc.plan.actions[..], [a] if matches!(a.kind, ActionKind::AwaitServer { .. })),
        "{:?}",
        next.doc.plan.actions
    );
    drop(ws);
    // Bounded passes until it is ready: no second server is ever created.
    let started = Instant::now();
    while env.nodes()[0].state != NodeState::Ready {
        assert!(started.elapsed() < Duration::from_secs(20), "never ready");
        env.apply_once_with(bounded(200)).await;
    }
    assert_eq!(env.servers().await.len(), 1);
    assert_eq!(env.nodes()[0].details.launch_attempts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_wait_keeps_its_boot_timeout_across_passes() {
    let cloud = sim::on_loopback(SimConfig {
        boot_delay_ms: 50,
        delete_delay_ms: 50,
        ..SimConfig::default()
    });
    // Nothing answers SSH on this port; boot-timeout 3 s; one attempt only.
    let config = sim::scanning(&sim::config(1, 4), sim::free_port())
        .replace("boot-timeout: 30", "boot-timeout: 3")
        .replace("launch-retries: 3", "launch-retries: 1");
    let env = sim::start(cloud, &config).await;
    // Passes of 300 ms each: the scan is handed over again and again, and still ends
    // boot-timeout after the server was first seen ACTIVE (in the apply that reaches the
    // deadline, or in the plan after it).
    let started = Instant::now();
    let mut given_up = None;
    while given_up.is_none() && started.elapsed() < Duration::from_secs(15) {
        let (_, report, plan) = env.apply_once_with(bounded(300)).await;
        let planned = plan
            .actions
            .iter()
            .find(|a| a.reason.contains("within boot-timeout 3 s of ACTIVE"))
            .map(|a| a.reason.clone());
        let applied = report
            .failed
            .iter()
            .find(|(_, e)| e.contains("within boot-timeout 3 s of ACTIVE"))
            .map(|(_, e)| e.clone());
        given_up = planned.or(applied).map(|why| (started.elapsed(), why));
    }
    let (after, why) = given_up.expect("the SSH wait ran out across passes");
    assert!(why.contains("no SSH host keys from 127.0.0."), "{why}");
    // Times are recorded in whole seconds: the deadline is boot-timeout less up to 1 s.
    assert!(
        after >= Duration::from_secs(2),
        "not before boot-timeout: {after:?}"
    );
    // The one attempt is used up: the node is failed or being deleted, never ready.
    env.apply_once().await;
    let node = &env.nodes()[0];
    assert!(node.details.host_keys.is_empty());
    assert_ne!(node.state, NodeState::Ready);
}
