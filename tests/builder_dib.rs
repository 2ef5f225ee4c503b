//! The build runner (`nodepool::builder::dib`) driving the real tools/nodepool-dib and small shell stand-ins, in temp dirs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indexmap::IndexMap;
use md5::Digest as _;
use nodepool::builder::dib::{BuildDirs, BuildError, BuildRequest, build};
use nodepool::secret::Secret;

fn nodepool_dib() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/nodepool-dib")
}

/// A request with everything under `root`, building `formats` of image `name`.
fn request(
    root: &Path,
    name: &str,
    build_id: &str,
    dib_cmd: &str,
    formats: &[&str],
) -> BuildRequest {
    BuildRequest {
        image_name: name.into(),
        build_id: build_id.into(),
        dib_cmd: dib_cmd.into(),
        elements: vec!["vm".into(), "hello".into()],
        release: Some("jammy".into()),
        env_vars: IndexMap::new(),
        secure_env_vars: IndexMap::new(),
        formats: formats.iter().map(|f| f.to_string()).collect(),
        timeout: Some(Duration::from_secs(120)),
        dirs: BuildDirs {
            images_dir: root.join("images"),
            log_dir: root.join("logs"),
            elements_path: vec![root.join("elements")],
            log_retention: -1,
        },
    }
}

/// An element `hello` (depending on `hello-dep`) with a static file and a root.d hook.
fn write_elements(root: &Path) {
    let el = root.join("elements");
    std::fs::create_dir_all(el.join("hello/static/etc/hello")).unwrap();
    std::fs::create_dir_all(el.join("hello/root.d")).unwrap();
    std::fs::create_dir_all(el.join("hello-dep/files/opt")).unwrap();
    std::fs::write(
        el.join("hello/static/etc/hello/greeting"),
        "hello from an element\n",
    )
    .unwrap();
    std::fs::write(el.join("hello/element-deps"), "# deps\nhello-dep\n").unwrap();
    std::fs::write(el.join("hello-dep/files/opt/dep.txt"), "dep\n").unwrap();
    write_script(
        &el.join("hello/root.d/50-stamp"),
        "#!/bin/sh\necho \"$IMAGE_NAME\" > \"$TARGET_ROOT/etc/hello/stamp\"\n",
    );
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A stand-in dib-cmd: parses `-t`/`-o`, prints its environment, then acts on `FAKE_MODE`
/// (`ok`: writes each format with checksums; `fail`: a partial file, exit 3; `hang`: a partial
/// file, a background sleeper whose pid goes to `$FAKE_PIDFILE`, then sleeps; `straggle`: like
/// `ok` but leaves a sleeper holding its stdout).
const FAKE_DIB: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    -t) fmts=$2; shift 2 ;;
    -o) base=$2; shift 2 ;;
    *) shift ;;
  esac
done
echo "fake dib: base=$base formats=$fmts"
env | sort
echo "password is $REG_PASSWORD"
case "$FAKE_MODE" in
  fail)
    echo partial > "$base.qcow2"
    mkdir -p "$base.work"
    echo "going down" >&2
    exit 3 ;;
  hang)
    echo partial > "$base.qcow2"
    sleep 300 >/dev/null 2>&1 &
    echo $! > "$FAKE_PIDFILE"
    sleep 300 ;;
  straggle)
    # Leaves a child holding our stdout after a successful exit.
    sh -c 'echo $$ > "$FAKE_PIDFILE"; exec sleep 300' &
    while [ ! -s "$FAKE_PIDFILE" ]; do sleep 0.1; done ;;
esac
for f in $(echo "$fmts" | tr , ' '); do
  echo "image $f" > "$base.$f"
  (cd "$(dirname "$base")" && md5sum "$(basename "$base.$f")" > "$base.$f.md5" && sha256sum "$(basename "$base.$f")" > "$base.$f.sha256")
done
"#;

fn fake_dib(root: &Path) -> String {
    let p = root.join("bin/fake-dib.sh");
    write_script(&p, FAKE_DIB);
    // Through `/bin/sh ARGS`: also checks that dib-cmd is split into program and arguments.
    format!("/bin/sh {}", p.display())
}

fn files_named(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn last_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'), "log ends with a newline");
    text.lines().last().unwrap().to_owned()
}

fn qemu_format(path: &Path) -> String {
    let out = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["format"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn real_build_qcow2_raw_tar_with_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_elements(root);
    let req = request(
        root,
        "np-test",
        "0000000001",
        nodepool_dib().to_str().unwrap(),
        &["qcow2", "raw", "tar"],
    );
    let out = build(&req).await.expect("build");

    assert_eq!(
        out.files
            .iter()
            .map(|f| f.format.as_str())
            .collect::<Vec<_>>(),
        ["qcow2", "raw", "tar"]
    );
    for f in &out.files {
        assert_eq!(
            f.path,
            root.join(format!("images/np-test-0000000001.{}", f.format))
        );
        let data = std::fs::read(&f.path).unwrap();
        assert_eq!(f.size, data.len() as u64);
        assert_eq!(
            f.md5,
            hex::encode(md5::Md5::digest(&data)),
            "{} md5",
            f.format
        );
        assert_eq!(
            f.sha256,
            hex::encode(sha2::Sha256::digest(&data)),
            "{} sha256",
            f.format
        );
        let line = std::fs::read_to_string(format!("{}.md5", f.path.display())).unwrap();
        assert_eq!(
            line,
            format!("{}  np-test-0000000001.{}\n", f.md5, f.format),
            "md5sum format"
        );
    }
    assert_eq!(
        out.total_size,
        out.files.iter().map(|f| f.size).sum::<u64>()
    );
    assert_eq!(qemu_format(&out.files[0].path), "qcow2");
    assert_eq!(qemu_format(&out.files[1].path), "raw");
    assert!(out.files[1].size >= 16 * 1024 * 1024, "min 16 MiB");
    assert!(
        out.files[0].size < 8 * 1024 * 1024,
        "qcow2 stays small: {}",
        out.files[0].size
    );
    assert_eq!(
        files_named(&root.join("images"), ""),
        [
            "np-test-0000000001.qcow2",
            "np-test-0000000001.qcow2.md5",
            "np-test-0000000001.qcow2.sha256",
            "np-test-0000000001.raw",
            "np-test-0000000001.raw.md5",
            "np-test-0000000001.raw.sha256",
            "np-test-0000000001.tar",
            "np-test-0000000001.tar.md5",
            "np-test-0000000001.tar.sha256",
        ],
        "no work files left"
    );

    // The ext4 filesystem holds the elements' files and the metadata.
    let cat = |p: &str| {
        let o = std::process::Command::new("debugfs")
            .args(["-R", &format!("cat {p}")])
            .arg(&out.files[1].path)
            .output()
            .expect("debugfs (e2fsprogs)");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(cat("/etc/nodepool/elements"), "vm\nhello-dep\nhello\n");
    assert_eq!(cat("/etc/hello/greeting"), "hello from an element\n");
    assert_eq!(
        cat("/etc/hello/stamp"),
        "np-test\n",
        "root.d hook ran with TARGET_ROOT"
    );
    assert_eq!(cat("/opt/dep.txt"), "dep\n");
    let os_release = cat("/etc/os-release");
    assert!(os_release.contains("VERSION_ID=\"jammy\""), "{os_release}");
    assert!(
        os_release.contains("IMAGE_NAME=\"np-test\""),
        "{os_release}"
    );

    // The tarball holds the same tree.
    let tar = std::process::Command::new("tar")
        .args(["-xOf"])
        .arg(&out.files[2].path)
        .arg("./etc/hello/greeting")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&tar.stdout),
        "hello from an element\n"
    );

    let log = std::fs::read_to_string(&out.log_path).unwrap();
    assert_eq!(out.log_path, root.join("logs/np-test-0000000001.log"));
    assert!(
        log.contains(&format!(
            "-x -t qcow2,raw,tar --checksum --no-tmpfs -o {}/images/np-test-0000000001 vm hello",
            root.display()
        )),
        "{log}"
    );
    assert!(
        log.contains("element 'vm' is a diskimage-builder element not available here"),
        "{log}"
    );
    assert!(log.contains("DIB_RELEASE=jammy"), "{log}");
    assert_eq!(last_line(&out.log_path), "Exit code: 0");
}

#[tokio::test]
async fn unknown_element_fails_like_diskimage_builder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_elements(root);
    let mut req = request(
        root,
        "np-unknown",
        "0000000001",
        nodepool_dib().to_str().unwrap(),
        &["qcow2"],
    );
    req.elements = vec!["vm".into(), "no-such-element".into()];
    let err = build(&req).await.unwrap_err();
    assert_eq!(err.exit_code(), Some(1), "{err}");
    let log = std::fs::read_to_string(req.log_path()).unwrap();
    assert!(
        log.contains("ERROR: Element 'no-such-element' not found"),
        "{log}"
    );
    assert_eq!(last_line(&req.log_path()), "Exit code: 1");
    assert!(files_named(&root.join("images"), "np-unknown").is_empty());
}

#[tokio::test]
async fn failed_build_reports_exit_code_and_removes_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut req = request(root, "np-fail", "0000000002", &fake_dib(root), &["qcow2"]);
    req.env_vars.insert("FAKE_MODE".into(), "fail".into());
    let err = build(&req).await.unwrap_err();
    match &err {
        BuildError::Failed {
            exit_code,
            image,
            build_id,
            ..
        } => {
            assert_eq!(
                (*exit_code, image.as_str(), build_id.as_str()),
                (Some(3), "np-fail", "0000000002")
            );
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert!(err.to_string().contains("exit code 3"), "{err}");
    assert!(
        files_named(&root.join("images"), "np-fail").is_empty(),
        "partial file and work dir removed"
    );
    let log = std::fs::read_to_string(req.log_path()).unwrap();
    assert!(log.contains("going down\n"), "stderr is logged: {log}");
    assert_eq!(last_line(&req.log_path()), "Exit code: 3");
}

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pidfile = root.join("sleeper.pid");
    let mut req = request(root, "np-hang", "0000000003", &fake_dib(root), &["qcow2"]);
    req.env_vars.insert("FAKE_MODE".into(), "hang".into());
    req.env_vars
        .insert("FAKE_PIDFILE".into(), pidfile.display().to_string());
    req.timeout = Some(Duration::from_secs(2));
    let started = Instant::now();
    let err = build(&req).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(err, BuildError::Timeout { after, .. } if after == Duration::from_secs(2)),
        "{err:?}"
    );
    assert!(err.to_string().contains("timed out after 2 s"), "{err}");
    let sleeper: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_dead(sleeper).await;
    assert!(files_named(&root.join("images"), "np-hang").is_empty());
    let log = std::fs::read_to_string(req.log_path()).unwrap();
    assert!(
        log.contains("build-timeout of 2 s reached: killing process group"),
        "{log}"
    );
    assert_eq!(
        last_line(&req.log_path()),
        "Exit code: -9 (killed by signal 9)"
    );
}

#[tokio::test]
async fn cancelling_the_build_kills_the_group_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pidfile = root.join("sleeper.pid");
    let mut req = request(root, "np-cancel", "0000000004", &fake_dib(root), &["qcow2"]);
    req.env_vars.insert("FAKE_MODE".into(), "hang".into());
    req.env_vars
        .insert("FAKE_PIDFILE".into(), pidfile.display().to_string());
    // Drop the build future once the stand-in is running.
    let cancelled = tokio::time::timeout(Duration::from_secs(60), async {
        let b = build(&req);
        tokio::pin!(b);
        loop {
            tokio::select! {
                r = &mut b => panic!("the build ended by itself: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(100)) => {
                    if pidfile.exists() && std::fs::read_to_string(&pidfile).unwrap().ends_with('\n') {
                        return;
                    }
                }
            }
        }
    })
    .await;
    assert!(cancelled.is_ok(), "the stand-in never started");
    let sleeper: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_dead(sleeper).await;
    assert!(files_named(&root.join("images"), "np-cancel").is_empty());
    assert!(last_line(&req.log_path()).contains("build cancelled"));
}

/// The process is gone (or a zombie waiting for a reaper that is not us) within 10 s.
async fn assert_dead(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit(')')
                    .next()
                    .and_then(|r| r.split_whitespace().next())
                    .map(str::to_owned)
            });
        match state.as_deref() {
            None | Some("Z") | Some("X") => return,
            Some(s) => assert!(
                Instant::now() < deadline,
                "process {pid} still alive (state {s})"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn leftover_processes_holding_the_output_are_killed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let pidfile = root.join("straggler.pid");
    let mut req = request(
        root,
        "np-straggle",
        "0000000007",
        &fake_dib(root),
        &["qcow2"],
    );
    req.env_vars.insert("FAKE_MODE".into(), "straggle".into());
    req.env_vars
        .insert("FAKE_PIDFILE".into(), pidfile.display().to_string());
    let started = Instant::now();
    let out = build(&req).await.expect("the build itself succeeded");
    assert!(started.elapsed() < Duration::from_secs(60));
    let straggler: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_dead(straggler).await;
    let log = std::fs::read_to_string(&out.log_path).unwrap();
    assert!(
        log.contains("left processes writing output: killing them"),
        "{log}"
    );
    assert_eq!(last_line(&out.log_path), "Exit code: 0");
}

#[tokio::test]
async fn missing_command_names_image_and_command() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let req = request(
        root,
        "np-missing",
        "0000000005",
        "nodepool-test-no-such-disk-image-create -v",
        &["qcow2"],
    );
    let err = build(&req).await.unwrap_err();
    assert!(
        matches!(&err, BuildError::CommandNotFound { command, .. } if command == "nodepool-test-no-such-disk-image-create"),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("image np-missing"), "{msg}");
    assert!(
        msg.contains("\"nodepool-test-no-such-disk-image-create\" not found"),
        "{msg}"
    );
    assert_eq!(
        last_line(&req.log_path()),
        "Exit code: none (the command did not start)"
    );
}

#[tokio::test]
async fn log_retention_keeps_the_newest_per_image() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let cmd = fake_dib(root);
    // Another image whose name extends this one's: its logs are not this image's.
    let other = request(root, "np-keep-other", "0000000001", &cmd, &["qcow2"]);
    build(&other).await.unwrap();
    for id in 1..=4 {
        let mut req = request(
            root,
            "np-keep",
            &format!("{id:010}"),
            &cmd,
            &["qcow2", "raw"],
        );
        req.dirs.log_retention = 2;
        let out = build(&req).await.unwrap();
        assert_eq!(out.files.len(), 2);
    }
    assert_eq!(
        files_named(&root.join("logs"), ""),
        [
            "np-keep-0000000003.log",
            "np-keep-0000000004.log",
            "np-keep-other-0000000001.log"
        ]
    );
    // -1 keeps everything.
    for id in 5..=6 {
        let req = request(root, "np-keep", &format!("{id:010}"), &cmd, &["qcow2"]);
        build(&req).await.unwrap();
    }
    assert_eq!(files_named(&root.join("logs"), "np-keep-00").len(), 4);
}

#[tokio::test]
async fn secure_env_values_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut req = request(root, "np-secret", "0000000006", &fake_dib(root), &["qcow2"]);
    req.env_vars
        .insert("PUBLIC_THING".into(), "visible-value".into());
    req.secure_env_vars
        .insert("REG_PASSWORD".into(), Secret::new("Sup3r-S3cret-V4lue"));
    let out = build(&req).await.unwrap();
    let log = std::fs::read_to_string(&out.log_path).unwrap();
    assert!(!log.contains("Sup3r-S3cret-V4lue"), "{log}");
    assert!(
        log.contains("REG_PASSWORD=<redacted>"),
        "header and `env` output: {log}"
    );
    assert!(
        log.contains("password is <redacted>\n"),
        "the child got it and printed it: {log}"
    );
    assert!(log.contains("PUBLIC_THING=visible-value"), "{log}");
    assert!(
        log.contains("DIB_CHECKSUM=1") && log.contains("DIB_IMAGE_NAME=np-secret"),
        "{log}"
    );
    assert!(
        log.contains(&format!("ELEMENTS_PATH={}/elements", root.display())),
        "{log}"
    );
    assert!(
        log.contains("PATH="),
        "the parent environment is inherited: {log}"
    );
}
