//! Conformance: python-openstackclient and the kit's openstacksdk conformance.py against an in-process simulator.
//!
//! The clients come from the venv in `NODEPOOL_TEST_VENV` (made by `testing/python-venv.sh`).
//! Unset: the tests are skipped with a loud message. Set but broken: the tests fail.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cloudsim::{SimConfig, Simulator};
use serde_json::Value;

fn venv_bin() -> Option<PathBuf> {
    let Ok(venv) = std::env::var("NODEPOOL_TEST_VENV") else {
        // Written to the real stderr (not eprintln!, which the test harness captures).
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: NODEPOOL_TEST_VENV is not set, so python-openstackclient/openstacksdk \
             conformance was NOT checked. Run testing/python-venv.sh and export NODEPOOL_TEST_VENV. ***\n"
        );
        return None;
    };
    let bin = PathBuf::from(venv).join("bin");
    for tool in ["openstack", "python"] {
        assert!(
            bin.join(tool).exists(),
            "NODEPOOL_TEST_VENV is set but {} is missing: run testing/python-venv.sh",
            bin.join(tool).display()
        );
    }
    Some(bin)
}

fn kit_dir() -> PathBuf {
    // cloudsim/ -> workspace root -> its parent holds shared/ (the CI clone layout) or /work/shared.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        root.join("shared/openstack-kit"),
        PathBuf::from("/work/shared/openstack-kit"),
    ];
    candidates
        .into_iter()
        .find(|p| p.join("conformance.py").exists())
        .expect("shared/openstack-kit/conformance.py not found next to the workspace")
}

fn fast_config() -> SimConfig {
    SimConfig {
        boot_delay_ms: 300,
        delete_delay_ms: 200,
        ..SimConfig::default()
    }
}

/// A minimal qcow2 (v2 header, 1 GiB virtual size) padded to 64 KiB.
fn write_qcow2(path: &Path) {
    let mut data = vec![0u8; 65_536];
    data[0..4].copy_from_slice(b"QFI\xfb");
    data[4..8].copy_from_slice(&2u32.to_be_bytes());
    data[20..24].copy_from_slice(&16u32.to_be_bytes());
    data[24..32].copy_from_slice(&(1u64 << 30).to_be_bytes());
    std::fs::write(path, data).expect("write qcow2");
}

struct Osc<'a> {
    bin: &'a Path,
    clouds: PathBuf,
    cloud: &'a str,
}

impl Osc<'_> {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(self.bin.join("openstack"))
            .args(args)
            .env("OS_CLIENT_CONFIG_FILE", &self.clouds)
            .env("OS_CLOUD", self.cloud)
            .env_remove("OS_AUTH_URL")
            .output()
            .expect("run openstack")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "openstack {} failed:\n{}\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let text = self.ok(&all);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("openstack {args:?}: bad JSON {e}: {text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_openstackclient_commands() {
    let Some(bin) = venv_bin() else { return };
    let sim = Simulator::start(fast_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(&clouds, sim.clouds_yaml("sim")).unwrap();
    let osc = Osc {
        bin: &bin,
        clouds,
        cloud: "sim",
    };

    let token = osc.json(&["token", "issue"]);
    assert_eq!(token["project_id"].as_str().map(str::len), Some(32));

    let catalog = osc.json(&["catalog", "list"]);
    let mut types: Vec<&str> = catalog
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["Type"].as_str())
        .collect();
    types.sort();
    assert_eq!(types, ["compute", "identity", "image", "network"]);

    let flavors = osc.json(&["flavor", "list"]);
    assert!(
        flavors
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["Name"] == "m1.small" && f["RAM"] == 2048)
    );

    let limits = osc.json(&["limits", "show", "--absolute"]);
    let get = |name: &str| {
        limits
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["Name"] == name)
            .map(|l| l["Value"].clone())
            .unwrap_or_else(|| panic!("no {name} in {limits}"))
    };
    assert_eq!(get("max_total_instances"), 100);
    assert_eq!(get("total_instances_used"), 0);

    let image_file = dir.path().join("disk.qcow2");
    write_qcow2(&image_file);
    let img_path = image_file.to_str().unwrap();
    let image = osc.json(&[
        "image",
        "create",
        "--file",
        img_path,
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--property",
        "nodepool_build_id=0042",
        "osc-img",
    ]);
    assert_eq!(image["status"], "active");
    assert_eq!(image["size"], 65_536);
    let images = osc.json(&["image", "list"]);
    assert!(
        images
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["Name"] == "osc-img")
    );

    let server = osc.json(&[
        "server",
        "create",
        "--image",
        "cirros",
        "--flavor",
        "m1.tiny",
        "--network",
        "private",
        "--property",
        "nodepool_node_id=0001",
        "--wait",
        "osc-srv",
    ]);
    assert_eq!(server["status"], "ACTIVE");
    let id = server["id"].as_str().unwrap().to_string();
    let servers = osc.json(&["server", "list"]);
    let row = servers
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ID"] == id.as_str())
        .expect("listed");
    assert_eq!(row["Status"], "ACTIVE");
    assert!(row["Networks"].to_string().contains("10.0."), "{row}");

    let fip = osc.json(&["floating", "ip", "create", "public"]);
    let fip_id = fip["id"].as_str().unwrap().to_string();
    assert_eq!(fip["status"], "DOWN");
    let fips = osc.json(&["floating", "ip", "list"]);
    assert!(
        fips.as_array()
            .unwrap()
            .iter()
            .any(|f| f["ID"] == fip_id.as_str())
    );
    osc.ok(&["floating", "ip", "delete", &fip_id]);
    assert_eq!(osc.json(&["floating", "ip", "list"]), Value::Array(vec![]));

    osc.ok(&["server", "delete", "--wait", &id]);
    assert!(
        !osc.ok(&["server", "list", "-f", "value", "-c", "ID"])
            .contains(&id)
    );
    osc.ok(&["image", "delete", "osc-img"]);
    assert!(
        !osc.ok(&["image", "list", "-f", "value", "-c", "Name"])
            .contains("osc-img")
    );

    // The calls really went over the wire, once per command or more.
    let counters = sim.counters();
    assert!(counters.count("POST", "/identity/v3/auth/tokens") >= 10);
    assert_eq!(
        counters.count_status("POST", "/compute/v2.1/servers", 202),
        1
    );
    assert_eq!(
        counters.count_status("DELETE", "/compute/v2.1/servers/{id}", 204),
        1
    );
    assert_eq!(
        counters.count_status("PUT", "/image/v2/images/{id}/file", 204),
        1
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstackclient_bad_password_is_an_auth_error() {
    let Some(bin) = venv_bin() else { return };
    let sim = Simulator::start(fast_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    let yaml = sim
        .clouds_yaml("sim")
        .replace("password: \"nodepool\"", "password: \"wrong-secret\"");
    std::fs::write(&clouds, yaml).unwrap();
    let osc = Osc {
        bin: &bin,
        clouds,
        cloud: "sim",
    };
    let out = osc.run(&["flavor", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("The request you have made requires authentication"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-secret"));
    assert_eq!(
        sim.counters()
            .count_status("POST", "/identity/v3/auth/tokens", 401),
        1
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openstacksdk_conformance_script_passes() {
    let Some(bin) = venv_bin() else { return };
    let sim = Simulator::start(fast_config()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clouds = dir.path().join("clouds.yaml");
    std::fs::write(&clouds, sim.clouds_yaml("conf")).unwrap();
    let image = dir.path().join("conformance.qcow2");
    write_qcow2(&image);
    let quota = SimConfig::default().quota.instances.to_string();
    let out = Command::new(bin.join("python"))
        .arg(kit_dir().join("conformance.py"))
        .args([
            "--cloud",
            "conf",
            "--network",
            "private",
            "--floating-network",
            "public",
        ])
        .args(["--flavor", "m1.small", "--nohost-flavor", "m1.nohost"])
        .args([
            "--quota-instances",
            &quota,
            "--image-file",
            image.to_str().unwrap(),
        ])
        .env("OS_CLIENT_CONFIG_FILE", &clouds)
        .output()
        .expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("0 step(s) failed"),
        "conformance.py failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Three launches, the over-quota refusal and the unschedulable one.
    let c = sim.counters();
    assert_eq!(c.count_status("POST", "/compute/v2.1/servers", 202), 4);
    assert_eq!(c.count_status("POST", "/compute/v2.1/servers", 403), 1);
    sim.shutdown().await;
}
