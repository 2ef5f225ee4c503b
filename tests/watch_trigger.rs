//! Triggers against real repositories and the native file watcher, and webhook signatures with known vectors.

mod watch_support;

use std::path::Path;
use std::time::{Duration, Instant};

use nodepool::secret::Secret;
use nodepool::watch::trigger::{MAX_WEBHOOK_BODY_BYTES, accept_webhook, push_ref};
use nodepool::watch::{
    ConfigSource, Debounce, RefWatcher, SourceSpec, Trigger, WatchError, verify_signature,
};
use tokio::sync::mpsc;
use watch_support::{commit_file, empty_commit, git, init};

/// Generous bound for "a commit triggers within a second", to stay green on a loaded machine.
const WITHIN: Duration = Duration::from_secs(2);

fn watch(dir: &Path) -> (RefWatcher, mpsc::Receiver<Trigger>) {
    let (tx, rx) = mpsc::channel(16);
    let watcher = RefWatcher::start(
        dir,
        Some(Path::new("nodepool.yaml")),
        tx,
        Debounce::default(),
    )
    .unwrap();
    (watcher, rx)
}

/// Every trigger that arrives until `quiet` passes without one.
async fn drain(rx: &mut mpsc::Receiver<Trigger>, quiet: Duration) -> Vec<Trigger> {
    let mut got = Vec::new();
    while let Ok(Some(t)) = tokio::time::timeout(quiet, rx.recv()).await {
        got.push(t);
    }
    got
}

fn repo_with_config() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    commit_file(tmp.path(), "nodepool.yaml", "labels: []\n", "initial");
    tmp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_a_watched_repo_triggers_within_a_second_or_two() {
    let tmp = repo_with_config();
    let (_watcher, mut rx) = watch(tmp.path());
    let before = Instant::now();
    let sha = commit_file(
        tmp.path(),
        "nodepool.yaml",
        "labels: [{name: a}]\n",
        "change",
    );
    let committed = Instant::now();
    let trigger = tokio::time::timeout(WITHIN, rx.recv())
        .await
        .expect("a trigger within 2 s")
        .unwrap();
    eprintln!(
        "commit → trigger: {:?} from the start of `git add && git commit`, {:?} after it returned",
        before.elapsed(),
        committed.elapsed()
    );
    let Trigger::RepoChanged { paths, .. } = trigger else {
        panic!("{trigger:?}")
    };
    assert!(
        paths.iter().any(|p| p.ends_with("refs/heads/main")),
        "{paths:?}"
    );
    let source = ConfigSource::open(SourceSpec::local(tmp.path())).unwrap();
    assert_eq!(
        source.current().unwrap().commit.as_deref(),
        Some(sha.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ten_commits_is_at_most_two_triggers() {
    let tmp = repo_with_config();
    let (_watcher, mut rx) = watch(tmp.path());
    // One script of ten `git commit`s, as a hook or a rebase would make them.
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do git commit -q --allow-empty -m \"burst $i\" || exit 1; done";
    git(
        tmp.path(),
        &["-c", &format!("alias.burst=!{script}"), "burst"],
    );
    assert_eq!(git(tmp.path(), &["rev-list", "--count", "HEAD"]), "11");
    let got = drain(&mut rx, Duration::from_millis(1500)).await;
    assert!(
        (1..=2).contains(&got.len()),
        "{} triggers: {got:?}",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn editing_the_config_triggers_but_reading_the_repo_and_other_files_do_not() {
    let tmp = repo_with_config();
    let (_watcher, mut rx) = watch(tmp.path());
    let source = ConfigSource::open(SourceSpec::local(tmp.path())).unwrap();

    std::fs::write(tmp.path().join("nodepool.yaml"), "labels: [{name: b}]\n").unwrap();
    let trigger = tokio::time::timeout(WITHIN, rx.recv())
        .await
        .expect("an edit triggers")
        .unwrap();
    assert!(
        matches!(&trigger, Trigger::RepoChanged { paths, .. } if paths.iter().any(|p| p.ends_with("nodepool.yaml"))),
        "{trigger:?}"
    );
    assert!(source.current().unwrap().is_dirty());

    // Our own reads (what the daemon does on every trigger) must not trigger again, nor may
    // unrelated files, `git status` (which rewrites the index) or objects being written.
    for _ in 0..5 {
        let rev = source.current().unwrap();
        source.read_config(&rev).unwrap();
    }
    std::fs::write(tmp.path().join("README"), "unrelated\n").unwrap();
    git(tmp.path(), &["status", "--short"]);
    git(tmp.path(), &["hash-object", "-w", "README"]);
    let extra = drain(&mut rx, Duration::from_millis(800)).await;
    assert!(extra.is_empty(), "unexpected triggers: {extra:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_into_a_watched_bare_repo_triggers() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let bare = tmp.path().join("config.git");
    init(&work);
    commit_file(&work, "nodepool.yaml", "labels: []\n", "one");
    git(
        tmp.path(),
        &["init", "-q", "--bare", "-b", "main", "config.git"],
    );
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let (_watcher, mut rx) = watch(&bare);
    let sha = commit_file(&work, "nodepool.yaml", "labels: [{name: c}]\n", "two");
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    tokio::time::timeout(WITHIN, rx.recv())
        .await
        .expect("a push triggers")
        .unwrap();
    let source = ConfigSource::open(SourceSpec::local(&bare)).unwrap();
    assert_eq!(
        source.current().unwrap().commit.as_deref(),
        Some(sha.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_in_a_linked_worktree_triggers() {
    let tmp = tempfile::tempdir().unwrap();
    let main = tmp.path().join("main");
    let linked = tmp.path().join("linked");
    init(&main);
    commit_file(&main, "nodepool.yaml", "labels: []\n", "one");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "ops",
            linked.to_str().unwrap(),
        ],
    );
    let (_watcher, mut rx) = watch(&linked);
    let sha = empty_commit(&linked, "in the linked worktree");
    tokio::time::timeout(WITHIN, rx.recv())
        .await
        .expect("a commit triggers")
        .unwrap();
    let rev = ConfigSource::open(SourceSpec::local(&linked))
        .unwrap()
        .current()
        .unwrap();
    assert_eq!(rev.id, format!("ops@{}", &sha[..7]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_watcher_stops_it() {
    let tmp = repo_with_config();
    let (watcher, mut rx) = watch(tmp.path());
    drop(watcher);
    empty_commit(tmp.path(), "unwatched");
    let next = tokio::time::timeout(WITHIN, rx.recv())
        .await
        .expect("the channel closes");
    assert_eq!(next, None, "no trigger, and the sender is gone");
}

#[test]
fn watching_something_that_is_not_a_repository_fails_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let (tx, _rx) = mpsc::channel(1);
    let err = RefWatcher::start(tmp.path(), None, tx, Debounce::default())
        .err()
        .unwrap();
    assert!(matches!(err, WatchError::NotARepository { .. }), "{err}");
}

// Webhook signatures. The vectors were computed independently with
// `printf '%s' BODY | openssl dgst -sha256 -hmac SECRET`; the first is also the example in
// GitHub's webhook documentation.
const DOC_SECRET: &str = "It's a Secret to Everybody";
const DOC_BODY: &[u8] = b"Hello, World!";
const DOC_SIG: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
const PUSH_BODY: &[u8] = br#"{"ref":"refs/heads/main","after":"1a2b3c4d"}"#;
const PUSH_SIG: &str = "sha256=aaaeb72323d45b2b11a2ec97f45becd899a2f570f72a67094a09e67857e372bf";

#[test]
fn valid_signatures_are_accepted() {
    let secret = Secret::new(DOC_SECRET);
    verify_signature(&secret, DOC_BODY, DOC_SIG).unwrap();
    verify_signature(&secret, PUSH_BODY, PUSH_SIG).unwrap();
    verify_signature(
        &secret,
        PUSH_BODY,
        &format!(
            " {} ",
            PUSH_SIG.to_uppercase().replace("SHA256=", "sha256=")
        ),
    )
    .unwrap();
    assert_eq!(push_ref(PUSH_BODY).as_deref(), Some("refs/heads/main"));
    assert_eq!(
        accept_webhook(&secret, PUSH_BODY, Some(PUSH_SIG)).unwrap(),
        Trigger::Webhook {
            git_ref: Some("refs/heads/main".into())
        }
    );
    assert_eq!(
        accept_webhook(&secret, DOC_BODY, Some(DOC_SIG)).unwrap(),
        Trigger::Webhook { git_ref: None }
    );
}

#[test]
fn bad_signatures_are_refused() {
    let secret = Secret::new(DOC_SECRET);
    let mismatch = |r: Result<(), WatchError>| matches!(r, Err(WatchError::SignatureMismatch));
    let malformed = |r: Result<(), WatchError>| matches!(r, Err(WatchError::SignatureMalformed(_)));

    assert!(mismatch(verify_signature(
        &Secret::new("wrong secret"),
        DOC_BODY,
        DOC_SIG
    )));
    assert!(
        mismatch(verify_signature(&secret, b"Hello, World?", DOC_SIG)),
        "tampered body"
    );
    assert!(
        mismatch(verify_signature(&secret, PUSH_BODY, DOC_SIG)),
        "another body's signature"
    );
    let flipped = format!("{}0", &DOC_SIG[..DOC_SIG.len() - 1]);
    assert!(
        mismatch(verify_signature(&secret, DOC_BODY, &flipped)),
        "last digit changed"
    );

    assert!(
        malformed(verify_signature(
            &secret,
            DOC_BODY,
            &DOC_SIG["sha256=".len()..]
        )),
        "missing prefix"
    );
    assert!(
        malformed(verify_signature(
            &secret,
            DOC_BODY,
            &DOC_SIG.replace("sha256=", "sha1=")
        )),
        "other algorithm"
    );
    assert!(
        malformed(verify_signature(
            &secret,
            DOC_BODY,
            &DOC_SIG[..DOC_SIG.len() - 2]
        )),
        "too short"
    );
    assert!(
        malformed(verify_signature(&secret, DOC_BODY, &format!("{DOC_SIG}00"))),
        "too long"
    );
    assert!(
        malformed(verify_signature(
            &secret,
            DOC_BODY,
            &format!("sha256={}", "zz".repeat(32))
        )),
        "not hex"
    );
    assert!(
        malformed(verify_signature(&secret, DOC_BODY, "")),
        "empty header"
    );
    assert!(
        malformed(accept_webhook(&secret, DOC_BODY, None).map(drop)),
        "no header"
    );
    assert!(mismatch(
        accept_webhook(&secret, PUSH_BODY, Some(DOC_SIG)).map(drop)
    ));

    assert!(matches!(
        verify_signature(&Secret::new(""), DOC_BODY, DOC_SIG),
        Err(WatchError::WebhookNotConfigured)
    ));
    let big = vec![b' '; MAX_WEBHOOK_BODY_BYTES + 1];
    assert!(matches!(
        verify_signature(&secret, &big, DOC_SIG),
        Err(WatchError::WebhookBodyTooLarge { .. })
    ));
}

#[test]
fn signature_errors_never_reveal_the_secret_or_the_expected_digest() {
    let secret = Secret::new(DOC_SECRET);
    let wrong = format!("sha256={}", "0".repeat(64));
    let err = verify_signature(&secret, DOC_BODY, &wrong).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(DOC_SECRET) && !text.contains("757107ea"),
        "{text}"
    );
}
