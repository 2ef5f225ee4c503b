//! ConfigSource against real git repositories: revisions, dirty detection, old commits, file:// remotes, errors.

mod watch_support;

use std::path::Path;

use nodepool::watch::source::{ConfigSource, FetchBackend, SourceSpec, describe_path};
use nodepool::watch::{Revision, WatchError};
use watch_support::{commit_file, git, init, sha256_prefix};

const V1: &str = "labels:\n  - name: small\n    min-ready: 1\n";
const V2: &str = "labels:\n  - name: small\n    min-ready: 2\n";

fn local(dir: &Path) -> ConfigSource {
    ConfigSource::open(SourceSpec::local(dir)).unwrap()
}

#[test]
fn a_committed_config_is_named_by_branch_and_short_sha() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let sha = commit_file(tmp.path(), "nodepool.yaml", V1, "one");
    let source = local(tmp.path());
    let rev = source.current().unwrap();
    assert_eq!(rev.id, format!("main@{}", &sha[..7]));
    assert_eq!(rev.commit.as_deref(), Some(sha.as_str()));
    assert_eq!(rev.branch.as_deref(), Some("main"));
    assert!(!rev.is_dirty());
    assert_eq!(rev.to_string(), rev.id);
    assert_eq!(source.read_config(&rev).unwrap(), V1);
    assert_eq!(
        source.fetch().unwrap(),
        rev,
        "a local source has nothing to fetch"
    );
}

#[test]
fn uncommitted_edits_make_a_dirty_revision_named_by_content() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let sha = commit_file(tmp.path(), "nodepool.yaml", V1, "one");
    let source = local(tmp.path());
    let file = tmp.path().join("nodepool.yaml");

    std::fs::write(&file, V2).unwrap();
    let dirty = source.current().unwrap();
    assert_eq!(
        dirty.id,
        format!("main@{}+dirty.{}", &sha[..7], sha256_prefix(V2.as_bytes()))
    );
    assert_eq!(dirty.commit.as_deref(), Some(sha.as_str()));
    assert_eq!(
        source.read_config(&dirty).unwrap(),
        V2,
        "read from the work tree"
    );

    // Staged but not committed still differs from HEAD.
    git(tmp.path(), &["add", "nodepool.yaml"]);
    assert_eq!(source.current().unwrap(), dirty);

    // Edited again: a new id, and the old revision can no longer be read as itself.
    std::fs::write(&file, "labels: []\n").unwrap();
    let dirtier = source.current().unwrap();
    assert_ne!(dirtier.id, dirty.id);
    assert!(matches!(
        source.read_config(&dirty),
        Err(WatchError::StaleRevision { .. })
    ));

    // Back to the committed text (even with a different version staged): clean again.
    std::fs::write(&file, V1).unwrap();
    let clean = source.current().unwrap();
    assert_eq!(clean.id, format!("main@{}", &sha[..7]));

    // Deleted from the work tree.
    std::fs::remove_file(&file).unwrap();
    let missing = source.current().unwrap();
    assert_eq!(missing.id, format!("main@{}+dirty.missing", &sha[..7]));
    let err = source.read_config(&missing).unwrap_err();
    assert!(matches!(err, WatchError::FileNotFound { .. }), "{err}");
    assert!(err.to_string().contains("nodepool.yaml"), "{err}");
}

#[test]
fn files_are_read_at_old_commits() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    let one = commit_file(tmp.path(), "nodepool.yaml", V1, "one");
    let two = commit_file(tmp.path(), "nodepool.yaml", V2, "two");
    commit_file(tmp.path(), "elements/custom/README", "x\n", "three");
    let source = local(tmp.path());
    let rel = Path::new("nodepool.yaml");
    assert_eq!(source.read_file_at(&one, rel).unwrap().as_deref(), Some(V1));
    assert_eq!(source.read_file_at(&two, rel).unwrap().as_deref(), Some(V2));
    assert_eq!(
        source.read_file_at(&one[..7], rel).unwrap().as_deref(),
        Some(V1),
        "abbreviated ids work"
    );
    assert_eq!(
        source
            .read_file_at(&one, Path::new("elements/custom/README"))
            .unwrap(),
        None
    );
    assert_eq!(
        source.read_file_at(&one, Path::new("elements")).unwrap(),
        None,
        "a directory is not a file"
    );
    let err = source
        .read_file_at("0123456789abcdef0123456789abcdef01234567", rel)
        .unwrap_err();
    assert!(matches!(err, WatchError::CommitNotFound { .. }), "{err}");
    assert!(matches!(
        source.read_file_at(&one, Path::new("../etc/passwd")),
        Err(WatchError::InvalidSpec(_))
    ));
}

#[test]
fn branches_detached_heads_and_unborn_repositories() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    std::fs::write(tmp.path().join("nodepool.yaml"), V1).unwrap();
    let source = local(tmp.path());
    let unborn = source.current().unwrap();
    assert_eq!(
        unborn.id,
        format!("main@unborn+dirty.{}", sha256_prefix(V1.as_bytes()))
    );
    assert_eq!(unborn.commit, None);
    assert_eq!(source.read_config(&unborn).unwrap(), V1);

    let sha = commit_file(tmp.path(), "nodepool.yaml", V1, "one");
    git(tmp.path(), &["checkout", "-q", "-b", "staging"]);
    assert_eq!(
        source.current().unwrap().id,
        format!("staging@{}", &sha[..7])
    );
    git(tmp.path(), &["checkout", "-q", "--detach"]);
    let detached = source.current().unwrap();
    assert_eq!(
        (detached.id.as_str(), detached.branch.as_deref()),
        (format!("detached@{}", &sha[..7]).as_str(), None)
    );
}

#[test]
fn a_config_file_in_a_subdirectory() {
    let tmp = tempfile::tempdir().unwrap();
    init(tmp.path());
    commit_file(tmp.path(), "etc/nodepool/nodepool.yaml", V1, "one");
    let source =
        ConfigSource::open(SourceSpec::local(tmp.path()).config_file("etc/nodepool/nodepool.yaml"))
            .unwrap();
    let rev = source.current().unwrap();
    assert_eq!(source.read_config(&rev).unwrap(), V1);
    let outside = SourceSpec::local(tmp.path()).config_file("../nodepool.yaml");
    assert!(matches!(
        ConfigSource::open(outside),
        Err(WatchError::InvalidSpec(_))
    ));
}

#[test]
fn not_a_repository_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = ConfigSource::open(SourceSpec::local(tmp.path())).unwrap_err();
    assert!(matches!(err, WatchError::NotARepository { .. }), "{err}");
    assert!(
        err.to_string().contains(&tmp.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn a_local_bare_repository_is_read_at_head() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let bare = tmp.path().join("config.git");
    init(&work);
    let sha = commit_file(&work, "nodepool.yaml", V1, "one");
    git(
        tmp.path(),
        &["init", "-q", "--bare", "-b", "main", "config.git"],
    );
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let source = local(&bare);
    let rev = source.current().unwrap();
    assert_eq!(rev.id, format!("main@{}", &sha[..7]));
    assert_eq!(source.read_config(&rev).unwrap(), V1);
}

#[test]
fn materialize_gives_the_work_tree_or_a_checkout_of_an_old_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let scratch = tmp.path().join("checkouts");
    init(&repo);
    commit_file(&repo, "nodepool.yaml", V1, "one");
    commit_file(&repo, "elements/custom/element-deps", "base\n", "element");
    let old = local(&repo).current().unwrap();
    commit_file(&repo, "nodepool.yaml", V2, "two");
    let source = local(&repo);
    let current = source.current().unwrap();

    let dir = source.materialize(&current, &scratch).unwrap();
    assert_eq!(
        dir.canonicalize().unwrap(),
        repo.canonicalize().unwrap(),
        "the current state is the work tree"
    );

    let dir = source.materialize(&old, &scratch).unwrap();
    assert_eq!(dir, scratch.join(old.commit.as_ref().unwrap()));
    assert_eq!(
        std::fs::read_to_string(dir.join("nodepool.yaml")).unwrap(),
        V1
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("elements/custom/element-deps")).unwrap(),
        "base\n"
    );
    assert!(!dir.join(".git").exists());
    // Reused, not checked out again; nothing else left behind.
    std::fs::write(dir.join("marker"), "").unwrap();
    assert_eq!(source.materialize(&old, &scratch).unwrap(), dir);
    assert!(dir.join("marker").exists());
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 1);

    // A dirty revision that is no longer current cannot be materialised.
    std::fs::write(repo.join("nodepool.yaml"), "labels: []\n").unwrap();
    let dirty = source.current().unwrap();
    std::fs::write(repo.join("nodepool.yaml"), "labels: [] # again\n").unwrap();
    assert!(matches!(
        source.materialize(&dirty, &scratch),
        Err(WatchError::StaleRevision { .. })
    ));

    assert_eq!(
        ConfigSource::prune_materialized(&scratch, &[&current]).unwrap(),
        1
    );
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

#[test]
fn a_file_remote_is_mirrored_and_fetched_after_new_commits() {
    for backend in [
        FetchBackend::Libgit2,
        FetchBackend::GitCli,
        FetchBackend::Auto,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let upstream = tmp.path().join("upstream");
        let data = tmp.path().join("data");
        init(&upstream);
        let one = commit_file(&upstream, "nodepool.yaml", V1, "one");

        let spec = SourceSpec::remote(file_url(&upstream), "main", &data).fetch_backend(backend);
        let source = ConfigSource::open(spec.clone()).unwrap();
        let err = source.current().unwrap_err();
        assert!(
            err.to_string().contains("not fetched yet"),
            "{backend:?}: {err}"
        );

        let first = source.fetch().unwrap();
        assert_eq!(first.id, format!("main@{}", &one[..7]), "{backend:?}");
        assert_eq!(source.read_config(&first).unwrap(), V1);
        assert!(data.join("config.git").is_dir());

        // A new commit upstream is seen only after a fetch.
        let two = commit_file(&upstream, "nodepool.yaml", V2, "two");
        assert_eq!(source.current().unwrap(), first);
        let second = source.fetch().unwrap();
        assert_eq!(second.commit.as_deref(), Some(two.as_str()), "{backend:?}");
        assert_eq!(source.read_config(&second).unwrap(), V2);
        assert_eq!(
            source
                .read_file_at(&one, Path::new("nodepool.yaml"))
                .unwrap()
                .as_deref(),
            Some(V1)
        );
        let dir = source
            .materialize(&first, &tmp.path().join("checkouts"))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("nodepool.yaml")).unwrap(),
            V1
        );

        // The mirror persists: a new ConfigSource (a restarted daemon) knows the last fetch.
        assert_eq!(ConfigSource::open(spec).unwrap().current().unwrap(), second);

        // A force-push upstream (history rewritten) is followed.
        git(&upstream, &["reset", "-q", "--hard", &one]);
        let three = commit_file(&upstream, "nodepool.yaml", "labels: []\n", "rewritten");
        assert_eq!(
            source.fetch().unwrap().commit.as_deref(),
            Some(three.as_str()),
            "{backend:?}"
        );
    }
}

#[test]
fn a_plain_path_remote_works_too() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = tmp.path().join("upstream");
    init(&upstream);
    let sha = commit_file(&upstream, "nodepool.yaml", V1, "one");
    let source = ConfigSource::open(SourceSpec::remote(
        upstream.to_str().unwrap(),
        "main",
        tmp.path().join("d"),
    ))
    .unwrap();
    assert_eq!(
        source.fetch().unwrap().commit.as_deref(),
        Some(sha.as_str())
    );
}

#[test]
fn bad_urls_and_branches_give_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-repo");
    for backend in [FetchBackend::Libgit2, FetchBackend::GitCli] {
        let spec = SourceSpec::remote(
            file_url(&missing),
            "main",
            tmp.path().join(format!("d-{backend:?}")),
        )
        .fetch_backend(backend);
        let err = ConfigSource::open(spec).unwrap().fetch().unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, WatchError::Fetch { .. }),
            "{backend:?}: {text}"
        );
        assert!(
            text.contains("no-such-repo") && text.contains("branch main"),
            "{backend:?}: {text}"
        );
    }

    // A branch the remote does not have.
    let upstream = tmp.path().join("upstream");
    init(&upstream);
    commit_file(&upstream, "nodepool.yaml", V1, "one");
    for backend in [FetchBackend::Libgit2, FetchBackend::GitCli] {
        let spec = SourceSpec::remote(
            file_url(&upstream),
            "nope",
            tmp.path().join(format!("b-{backend:?}")),
        )
        .fetch_backend(backend);
        let err = ConfigSource::open(spec).unwrap().fetch().unwrap_err();
        assert!(
            matches!(err, WatchError::BranchNotFound { .. }),
            "{backend:?}: {err}"
        );
        assert!(
            err.to_string().contains("\"nope\" not found on the remote"),
            "{backend:?}: {err}"
        );
    }

    // Not a branch name at all.
    let err = ConfigSource::open(SourceSpec::remote(
        file_url(&upstream),
        "a..b",
        tmp.path().join("x"),
    ))
    .unwrap_err();
    assert!(matches!(err, WatchError::InvalidSpec(_)), "{err}");

    // Credentials in the URL never reach the error (nothing listens on port 1; no network).
    let spec = SourceSpec::remote(
        "https://deploy:s3cr3t-t0ken@127.0.0.1:1/org/config.git",
        "main",
        tmp.path().join("c"),
    );
    let source = ConfigSource::open(spec).unwrap();
    assert!(!format!("{source:?}").contains("s3cr3t"));
    assert_eq!(
        source.describe(),
        "https://deploy:***@127.0.0.1:1/org/config.git#main:nodepool.yaml"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tmp.path().join("c/config.git/config"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "the mirror's config holds the token: private"
        );
    }
    let err = source.fetch().unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, WatchError::Fetch { .. }), "{text}");
    assert!(!text.contains("s3cr3t-t0ken"), "{text}");
    assert!(
        text.contains("https://deploy:***@127.0.0.1:1/org/config.git"),
        "{text}"
    );
}

#[test]
fn describe_path_inside_and_outside_git() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init(&repo);
    let sha = commit_file(&repo, "nodepool.yaml", V1, "one");

    let by_file = describe_path(&repo.join("nodepool.yaml")).unwrap();
    assert_eq!(by_file.id, format!("main@{}", &sha[..7]));
    assert_eq!(
        describe_path(&repo).unwrap(),
        by_file,
        "a directory means its nodepool.yaml"
    );

    std::fs::write(repo.join("nodepool.yaml"), V2).unwrap();
    assert_eq!(
        describe_path(&repo).unwrap().id,
        format!("main@{}+dirty.{}", &sha[..7], sha256_prefix(V2.as_bytes()))
    );

    // An untracked file differs from HEAD (which lacks it).
    std::fs::create_dir_all(repo.join("alt")).unwrap();
    std::fs::write(repo.join("alt/nodepool.yaml"), V1).unwrap();
    let untracked = describe_path(&repo.join("alt/nodepool.yaml")).unwrap();
    assert_eq!(
        untracked.id,
        format!("main@{}+dirty.{}", &sha[..7], sha256_prefix(V1.as_bytes()))
    );

    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    std::fs::write(plain.join("nodepool.yaml"), V1).unwrap();
    let outside: Revision = describe_path(&plain.join("nodepool.yaml")).unwrap();
    assert_eq!(outside.id, format!("file@{}", sha256_prefix(V1.as_bytes())));
    assert_eq!((outside.commit, outside.branch), (None, None));

    let err = describe_path(&plain.join("missing.yaml")).unwrap_err();
    assert!(err.to_string().contains("missing.yaml"), "{err}");
}

#[test]
fn changing_the_url_repoints_the_mirror_and_forgets_the_old_state() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    init(&a);
    init(&b);
    commit_file(&a, "nodepool.yaml", V1, "in a");
    let in_b = commit_file(&b, "nodepool.yaml", V2, "in b");
    ConfigSource::open(SourceSpec::remote(file_url(&a), "main", &data))
        .unwrap()
        .fetch()
        .unwrap();

    let moved = ConfigSource::open(SourceSpec::remote(file_url(&b), "main", &data)).unwrap();
    let err = moved.current().unwrap_err();
    assert!(matches!(err, WatchError::BranchNotFound { .. }), "{err}");
    let rev = moved.fetch().unwrap();
    assert_eq!(rev.commit.as_deref(), Some(in_b.as_str()));
    assert_eq!(moved.read_config(&rev).unwrap(), V2);
}
