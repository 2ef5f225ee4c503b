//! Upload throughput and memory: `nodepool::builder::upload` versus `openstack image create --file`, same file, same cloud, one run.
//!
//! ```sh
//! eval "$(testing/openstack/stack env)"        # OS_CLIENT_CONFIG_FILE, OS_CLOUD (or any cloud)
//! cargo bench --bench upload
//! ```
//!
//! Variables: `OS_CLIENT_CONFIG_FILE` + `OS_CLOUD` (the target; required), `OSC_BIN` (the
//! `openstack` CLI; default `$OSKIT_VENV_BIN/openstack`, then `openstack` on PATH),
//! `UPLOAD_BENCH_MB` (file size in MiB, default 1024), `UPLOAD_BENCH_FORMAT` (`raw`, default, or
//! `qcow2`, made with qemu-img), `UPLOAD_BENCH_DIR` (where the file is written, default the
//! system temp dir).
//!
//! Prints MB/s (10^6 bytes per second, create → `active`) of each, their ratio (target ≥ 1.0)
//! and this process's peak RSS during our upload (VmHWM after resetting it; target < 64 MB,
//! i.e. streamed, not buffered). Without a target it prints how to run it and exits 0.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use md5::Digest as _;
use nodepool::builder::dib::BuiltFile;
use nodepool::builder::upload::{UploadRequest, upload};
use nodepool::cloud::{ClientOptions, OpenStackClient};
use nodepool::config::clouds::{CloudsFile, credentials_for};

const MIB: u64 = 1024 * 1024;

fn main() {
    let (Some(clouds), Some(cloud)) = (
        std::env::var_os("OS_CLIENT_CONFIG_FILE"),
        std::env::var("OS_CLOUD").ok(),
    ) else {
        println!("upload bench: no target configured.");
        println!(
            "  Set OS_CLIENT_CONFIG_FILE (a clouds.yaml) and OS_CLOUD (a cloud in it), e.g. with the kit:"
        );
        println!("    testing/openstack/stack up && eval \"$(testing/openstack/stack env)\"");
        println!(
            "  then: cargo bench --bench upload   (UPLOAD_BENCH_MB, UPLOAD_BENCH_FORMAT, OSC_BIN optional)"
        );
        return;
    };
    let size_mib: u64 = std::env::var("UPLOAD_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let format = std::env::var("UPLOAD_BENCH_FORMAT").unwrap_or_else(|_| "raw".into());
    let dir = tempfile::Builder::new()
        .prefix("np-upload-bench")
        .tempdir_in(
            std::env::var_os("UPLOAD_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir),
        )
        .expect("temp dir");
    let osc = find_osc();

    let t = Instant::now();
    let path = make_image(dir.path(), size_mib, &format);
    let (md5, sha256, bytes) = checksums(&path);
    println!(
        "file: {} ({format}, {:.1} MiB, made and checksummed in {:.1} s)",
        path.display(),
        bytes as f64 / MIB as f64,
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = client(Path::new(&clouds), &cloud);
    let name = format!("np-bench-{}", uuid::Uuid::new_v4().simple());
    let req = UploadRequest {
        provider: "bench".into(),
        image_name: name.clone(),
        build_id: "0000000001".into(),
        upload_id: "0000000001".into(),
        name_format: "{image_name}".into(),
        timestamp: 0,
        file: BuiltFile {
            format: format.clone(),
            path: path.clone(),
            size: bytes,
            md5,
            sha256,
        },
        meta: Default::default(),
        timeout: Duration::from_secs(3600),
        post_upload_hook: None,
        progress: None,
    };

    let rss_before = vm_kb("VmRSS");
    reset_peak_rss();
    let t = Instant::now();
    let ours = rt.block_on(upload(&client, &req)).expect("nodepool upload");
    let ours_secs = t.elapsed().as_secs_f64();
    let peak_kb = vm_kb("VmHWM");
    rt.block_on(client.delete_image(&ours.external_id))
        .expect("delete our image");

    let osc_result = osc.as_ref().map(|osc| {
        let t = Instant::now();
        let out = Command::new(osc)
            .args([
                "image",
                "create",
                "--disk-format",
                &format,
                "--container-format",
                "bare",
                "--file",
            ])
            .arg(&path)
            .args(["-f", "value", "-c", "id", &format!("{name}-osc")])
            .env("OS_CLOUD", &cloud)
            .output()
            .expect("run the openstack CLI");
        let secs = t.elapsed().as_secs_f64();
        assert!(
            out.status.success(),
            "openstack image create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let status = rt
            .block_on(client.get_image(&id))
            .map(|i| i.status.as_str().to_owned());
        rt.block_on(client.delete_image(&id))
            .expect("delete the CLI's image");
        (secs, status)
    });

    let mb = bytes as f64 / 1e6;
    println!(
        "nodepool upload:        {:>8.1} MB/s  ({ours_secs:.2} s, create → active)",
        mb / ours_secs
    );
    match osc_result {
        Some((secs, status)) => {
            println!(
                "openstack image create: {:>8.1} MB/s  ({secs:.2} s, CLI start-up included; image status after: {})",
                mb / secs,
                status.unwrap_or_else(|e| e.to_string())
            );
            println!(
                "ratio (nodepool / CLI): {:>8.2}  (target >= 1.0)",
                secs / ours_secs
            );
            if let Some(startup) = osc.as_deref().and_then(cli_startup) {
                println!(
                    "  without the CLI's start-up (`openstack --version`: {startup:.2} s): {:.2}",
                    (secs - startup) / ours_secs
                );
            }
        }
        None => println!(
            "openstack CLI not found (set OSC_BIN or OSKIT_VENV_BIN, or put `openstack` on PATH): no comparison"
        ),
    }
    println!(
        "peak RSS during our upload: {:.1} MB (VmHWM; {:.1} MB before; target < 64 MB)",
        peak_kb as f64 * 1024.0 / 1e6,
        rss_before as f64 * 1024.0 / 1e6
    );
}

fn client(clouds: &Path, cloud: &str) -> OpenStackClient {
    let yaml = format!("labels: []\nproviders:\n  - name: bench\n    cloud: {cloud}\n");
    let (config, _) =
        nodepool::config::load_str(Path::new("bench.yaml"), &yaml, None, &Default::default())
            .unwrap_or_else(|e| panic!("bench config: {e:?}"));
    let file = CloudsFile::load(clouds).expect("clouds.yaml");
    let creds =
        credentials_for(config.provider("bench").unwrap(), Some(&file)).expect("credentials");
    let opts = ClientOptions {
        rate: Duration::ZERO,
        ..ClientOptions::default()
    };
    OpenStackClient::new(creds, opts).expect("client")
}

/// Seconds the CLI takes to start and exit doing nothing (Python imports), best of 3.
fn cli_startup(osc: &Path) -> Option<f64> {
    (0..3)
        .filter_map(|_| {
            let t = Instant::now();
            let ok = Command::new(osc)
                .arg("--version")
                .output()
                .ok()?
                .status
                .success();
            ok.then(|| t.elapsed().as_secs_f64())
        })
        .min_by(f64::total_cmp)
}

fn find_osc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("OSC_BIN") {
        return Some(PathBuf::from(p));
    }
    if let Some(venv) = std::env::var_os("OSKIT_VENV_BIN") {
        let p = Path::new(&venv).join("openstack");
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("openstack"))
            .find(|p| p.is_file())
    })
}

/// `size_mib` MiB of incompressible bytes, written in 1 MiB pieces (so making it does not
/// raise our peak RSS), as raw or converted to qcow2.
fn make_image(dir: &Path, size_mib: u64, format: &str) -> PathBuf {
    let raw = dir.join("bench.raw");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&raw).unwrap());
    let mut rng = fastrand::Rng::with_seed(42);
    let mut chunk = vec![0u8; MIB as usize];
    for _ in 0..size_mib {
        rng.fill(&mut chunk);
        f.write_all(&chunk).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    match format {
        "raw" => raw,
        "qcow2" => {
            let out = dir.join("bench.qcow2");
            let st = Command::new("qemu-img")
                .args(["convert", "-f", "raw", "-O", "qcow2"])
                .arg(&raw)
                .arg(&out)
                .status()
                .expect("qemu-img");
            assert!(st.success());
            std::fs::remove_file(&raw).unwrap();
            out
        }
        other => panic!("UPLOAD_BENCH_FORMAT {other}: use raw or qcow2"),
    }
}

fn checksums(path: &Path) -> (String, String, u64) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut md5 = md5::Md5::new();
    let mut sha = sha2::Sha256::new();
    let mut buf = vec![0u8; MIB as usize];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).unwrap();
        if r == 0 {
            break;
        }
        md5.update(&buf[..r]);
        sha.update(&buf[..r]);
        n += r as u64;
    }
    (hex::encode(md5.finalize()), hex::encode(sha.finalize()), n)
}

/// Resets VmHWM to the current RSS (Linux: `echo 5 > /proc/self/clear_refs`).
fn reset_peak_rss() {
    if let Err(e) = std::fs::write("/proc/self/clear_refs", "5") {
        println!("(could not reset the peak RSS: {e}; VmHWM covers the whole run)");
    }
}

/// A `kB` field of /proc/self/status.
fn vm_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
