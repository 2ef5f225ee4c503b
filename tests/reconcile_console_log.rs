//! `console-log`: when a launch fails (here: SSH never answers, so the host-key scan runs out
//! of boot-timeout), the end of the server's console is logged before the server is deleted.

#[path = "common/sim.rs"]
mod sim;

use cloudsim::SimConfig;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_launch_logs_the_console_of_its_server() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .init();

    // SSH is scanned on a port where nothing listens: each attempt fails after boot-timeout.
    let config = sim::scanning(&sim::config(1, 4), sim::free_port())
        .replace("boot-timeout: 30", "boot-timeout: 1")
        .replace("launch-retries: 3", "launch-retries: 1")
        .replace(
            "{name: small, cloud-image: cirros, min-ram: 512}",
            "{name: small, cloud-image: cirros, min-ram: 512, console-log: true}",
        );
    assert!(config.contains("console-log: true"));
    let env = sim::start(
        SimConfig {
            boot_delay_ms: 50,
            delete_delay_ms: 50,
            ..SimConfig::default()
        },
        &config,
    )
    .await;
    let (_, report) = env.apply_once().await;
    assert_eq!(report.failed.len(), 1, "{report:?}");
    let server = env.nodes()[0].details.server_id.clone().unwrap();
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    // The event and the multi-line console that follows it.
    let at = text
        .find("console log of a failed launch")
        .unwrap_or_else(|| panic!("no console logged:\n{text}"));
    let line = &text[at..];
    assert!(line.contains(&server), "{line}");
    assert!(line.contains("no SSH host key"), "the reason: {line}");
    assert!(
        line.contains(&format!("cloud-init: instance {server}")),
        "the console itself: {line}"
    );
}
