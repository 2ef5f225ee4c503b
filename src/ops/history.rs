//! The config's history: its revision, and its text at an earlier revision, from git.
//!
//! A config file inside a git work tree has the revision `<branch>@<short sha>` (with
//! `+dirty` when the file differs from HEAD); a file outside git has `file@<sha256 prefix>`
//! and no history.

use git2::Repository;
use std::path::Path;

/// The revision of the config file at `path` whose text hashes to `sha256`.
pub fn revision(path: &Path, sha256: &str) -> String {
    git_revision(path).unwrap_or_else(|| format!("file@{}", &sha256[..12]))
}

fn repo_and_rel(path: &Path) -> Option<(Repository, std::path::PathBuf)> {
    let abs = std::fs::canonicalize(path).ok()?;
    let repo = Repository::discover(abs.parent()?).ok()?;
    let workdir = std::fs::canonicalize(repo.workdir()?).ok()?;
    let rel = abs.strip_prefix(&workdir).ok()?.to_owned();
    Some((repo, rel))
}

fn git_revision(path: &Path) -> Option<String> {
    let (repo, rel) = repo_and_rel(path)?;
    let head = repo.head().ok()?;
    let branch = head.shorthand().unwrap_or("HEAD").to_owned();
    let commit = head.peel_to_commit().ok()?;
    let sha = commit.id().to_string();
    let committed = commit
        .tree()
        .ok()?
        .get_path(&rel)
        .ok()
        .and_then(|e| e.to_object(&repo).ok())
        .and_then(|o| o.as_blob().map(|b| b.content().to_vec()));
    let current = std::fs::read(path).ok()?;
    let dirty = committed.as_deref() != Some(current.as_slice());
    Some(format!(
        "{branch}@{}{}",
        &sha[..7],
        if dirty { "+dirty" } else { "" }
    ))
}

/// The text of the config file at an earlier git revision (`<branch>@<short sha>`), if the
/// file is in a repository that has that commit and the revision was clean.
pub fn text_at(path: &Path, revision: &str) -> Option<String> {
    let (_, sha) = revision.split_once('@')?;
    if sha.ends_with("+dirty") || revision.starts_with("file@") {
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
        assert!(!r1.ends_with("+dirty"), "{r1}");
        std::fs::write(&f, "labels: [{name: a}]\n").unwrap();
        assert!(revision(&f, "0123456789abcdef").ends_with("+dirty"));
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
        assert_eq!(revision(&f, "0123456789abcdef0000"), "file@0123456789ab");
    }
}
