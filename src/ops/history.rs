//! The config's history: its revision, and its text at an earlier revision, from git.
//!
//! A config file inside a git work tree has the revision `<branch>@<short sha>` (with
//! `+dirty` when the file differs from HEAD); a file outside git has `file@<sha256 prefix>`
//! and no history.

use git2::Repository;
use std::path::Path;

/// The revision of the config file at `path` (see [`crate::watch::source::describe_path`]);
/// `file@<sha256 prefix>` of `sha256` when it cannot be described.
pub fn revision(path: &Path, sha256: &str) -> String {
    crate::watch::source::describe_path(path)
        .map(|r| r.id)
        .unwrap_or_else(|_| format!("file@{}", &sha256[..12]))
}

fn repo_and_rel(path: &Path) -> Option<(Repository, std::path::PathBuf)> {
    let abs = std::fs::canonicalize(path).ok()?;
    let repo = Repository::discover(abs.parent()?).ok()?;
    let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
    let rel = abs.strip_prefix(&workdir).ok()?.to_owned();
    Some((repo, rel))
}

/// The text of the config file at an earlier git revision (`<branch>@<short sha>`), if the
/// file is in a repository that has that commit and the revision was clean.
pub fn text_at(path: &Path, revision: &str) -> Option<String> {
    let (_, sha) = revision.split_once('@')?;
    if sha.contains("+dirty") || revision.starts_with("file@") {
        return None;
    }
    let (repo, rel) = repo_and_rel(path)?;
    let obj = repo.revparse_single(sha).ok()?;
    let commit = obj.peel_to_commit().ok()?;
    let entry = commit.tree().ok()?.get_path(&rel).ok()?;
    let blob = entry.to_object(&repo).ok()?.into_blob().ok()?;
    String::from_utf8(blob.content().to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_all(repo: &Repository, msg: &str) {
        let mut index = repo.index().unwrap();
        index
            .add_all(["*"], git2::IndexAddOption::DEFAULT, None)
            .unwrap();
        index.write().unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@example.com").unwrap();
        let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
        let parents: Vec<&git2::Commit> = parent.iter().collect();
        repo.commit(Some("HEAD"), &sig, &sig, msg, &tree, &parents)
            .unwrap();
    }

    #[test]
    fn revisions_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(dir.path()).unwrap();
        let f = dir.path().join("nodepool.yaml");
        std::fs::write(&f, "labels: []\n").unwrap();
        commit_all(&repo, "one");
        let r1 = revision(&f, "0123456789abcdef");
        assert!(!r1.contains("+dirty"), "{r1}");
        std::fs::write(&f, "labels: [{name: a}]\n").unwrap();
        assert!(revision(&f, "0123456789abcdef").contains("+dirty"));
        commit_all(&repo, "two");
        let r2 = revision(&f, "0123456789abcdef");
        assert_ne!(r1, r2);
        assert_eq!(text_at(&f, &r1).as_deref(), Some("labels: []\n"));
        assert_eq!(text_at(&f, "file@0123"), None);
    }

    #[test]
    fn outside_git() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("nodepool.yaml");
        std::fs::write(&f, "labels: []\n").unwrap();
        assert!(revision(&f, "0123456789abcdef0000").starts_with("file@"));
    }
}
