//! Integration tests of the state store's file handling: permissions, migrations and
//! fixtures, refusal of newer schemas, and that no secret reaches the database file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nodepool::config::credentials::CloudCredentials;
use nodepool::secret::Secret;
use nodepool::state::{
    ConfigStatus, LeakKind, NewConfigRevision, NewJournalEntry, NewNode, NewRequest, NodeState,
    SCHEMA_VERSION, StateError, Store, migration_sql,
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn schema_of(conn: &rusqlite::Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn new_database_is_private_wal_and_current() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path).unwrap();
    store.insert_node(&NewNode::new("p", "main", "l")).unwrap();
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("state.db-wal");
    assert!(wal.exists(), "WAL mode leaves a -wal file while open");
    assert_eq!(mode(&wal), 0o600);
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal_mode, "wal");
}

#[test]
fn existing_database_is_tightened_to_0600() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let _store = Store::open(&path).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn unwritable_location_is_a_clear_error() {
    let err = Store::open("/nonexistent-dir-for-nodepool-test/state.db").unwrap_err();
    assert!(matches!(err, StateError::Io { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/nonexistent-dir-for-nodepool-test/state.db")
    );
}

#[test]
fn reopening_keeps_lineage_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (stamp, id) = {
        let mut store = Store::open(&path).unwrap();
        let id = store
            .insert_node(&NewNode::new("p", "main", "l"))
            .unwrap()
            .id;
        (store.read().stamp().unwrap(), id)
    };
    let store = Store::open(&path).unwrap();
    assert_eq!(store.read().stamp().unwrap(), stamp);
    assert!(store.read().node(&id).unwrap().is_some());
}

#[test]
fn database_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(Store::open(&path).unwrap());
    let future = SCHEMA_VERSION + 1;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "INSERT INTO schema_version (version, description, applied_at) VALUES (?1, 'from the future', 0)",
            [future],
        )
        .unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StateError::SchemaTooNew { found, supported, .. } if found == future && supported == SCHEMA_VERSION),
        "{text}"
    );
    assert!(text.contains(&format!("schema version {future}")), "{text}");
    assert!(text.contains(&format!("up to {SCHEMA_VERSION}")), "{text}");
    assert!(text.contains("state.db"), "{text}");
    // Refused means untouched: the future version is still recorded.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let max: u32 = conn
        .query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(max, future);
}

/// Every released schema version has a fixture (`tests/state_fixtures/vN.sql`) written by that
/// release; the current code must open each one, upgrade it, and read its rows.
#[test]
fn fixtures_of_every_version_open_and_upgrade() {
    for version in 1..=SCHEMA_VERSION {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/state_fixtures/v{version}.sql"));
        let sql = fs::read_to_string(&fixture)
            .unwrap_or_else(|e| panic!("missing fixture {}: {e}", fixture.display()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(&sql)
            .unwrap();
        let mut store = Store::open(&path).unwrap();
        assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
        assert!(store.integrity_check().unwrap().is_empty());

        // The fixture's rows read back through the current API.
        let r = store.read();
        let stamp = r.stamp().unwrap();
        assert_eq!(stamp.lineage, "6b1f2c0e-8a8e-4d7e-9c61-2f0d6f3b7a10");
        let nodes = r.nodes_of_provider("rax-dfw").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].state, NodeState::Ready);
        assert_eq!(nodes[0].details.host_keys.len(), 1);
        assert_eq!(nodes[1].state, NodeState::Hold);
        assert_eq!(nodes[1].details.hold_expiration, Some(86_400));
        assert_eq!(r.ready_nodes("ubuntu-noble").unwrap().len(), 1);
        assert_eq!(r.uploads_for("ubuntu-noble", "rax-dfw").unwrap().len(), 1);
        assert_eq!(
            r.builds_of_image("ubuntu-noble").unwrap()[0].size_bytes,
            Some(2_147_483_648)
        );
        assert_eq!(r.requests().unwrap()[0].nodes, vec!["0000000002"]);
        assert_eq!(r.unfinished_journal().unwrap().len(), 1);
        assert_eq!(
            r.last_applied_config().unwrap().unwrap().status,
            ConfigStatus::Ok
        );
        assert_eq!(r.leak_sightings().unwrap()[0].count, 2);
        // Version 2: operator pauses and pruned formats (empty when upgraded from version 1).
        let pauses = r.image_pauses().unwrap();
        let pruned = &r.builds_of_image("ubuntu-noble").unwrap()[0].pruned_formats;
        if version >= 2 {
            assert_eq!(pauses.len(), 1);
            assert_eq!(pauses[0].image_name, "ubuntu-jammy");
            assert_eq!(pauses[0].reason.as_deref(), Some("kernel regression"));
            assert_eq!(pruned, &["qcow2"]);
            assert_eq!(
                nodes[0].details.attributes.get("executor-zone"),
                Some(&serde_json::json!("dfw"))
            );
        } else {
            assert!(nodes[0].details.attributes.is_empty());
            assert!(pauses.is_empty());
            assert!(pruned.is_empty());
        }

        // Sequences continue where the old release left them.
        let next = store
            .insert_node(&NewNode::new("rax-dfw", "main", "x"))
            .unwrap();
        assert_eq!(next.id, "0000000003");
        assert_eq!(store.read().stamp().unwrap().serial, stamp.serial + 1);
    }
}

/// A released migration must never change: applying migrations 1..=N of the current code gives
/// exactly the schema frozen in fixture vN (the version table itself aside).
#[test]
fn released_migrations_are_frozen() {
    for version in 1..=SCHEMA_VERSION {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/state_fixtures/v{version}.sql"));
        let old = rusqlite::Connection::open_in_memory().unwrap();
        old.execute_batch(&fs::read_to_string(fixture).unwrap())
            .unwrap();
        let now = rusqlite::Connection::open_in_memory().unwrap();
        for v in 1..=version {
            now.execute_batch(migration_sql(v).unwrap()).unwrap();
        }
        let without_version_table = |schema: Vec<String>| -> Vec<String> {
            schema
                .into_iter()
                .filter(|sql| !sql.contains("TABLE schema_version"))
                .collect()
        };
        assert_eq!(
            without_version_table(schema_of(&old)),
            without_version_table(schema_of(&now)),
            "migration {version} differs from what was released"
        );
    }
}

/// Rows written from data that travelled alongside credentials: the database file (and its
/// WAL) must not contain the secret, while an ordinary marker written the same way does
/// appear (so the grep is not vacuous).
#[test]
fn no_secret_reaches_the_database_file() {
    const SECRET: &str = "MARKER-secret-5f1d9c3e-never-store";
    const VISIBLE: &str = "MARKER-visible-0c7a";
    let creds = CloudCredentials {
        region_name: Some("DFW".into()),
        image_format: Some("qcow2".into()),
        ..CloudCredentials::password(
            "clouds.yaml:rax",
            "https://identity.example/v3",
            "ci-bot",
            Secret::new(SECRET),
            "ci",
        )
    };
    let token = Secret::new(SECRET);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let mut store = Store::open(&path).unwrap();
    store
        .write(|w| {
            let mut new = NewNode::new("rax-dfw", "main", "ubuntu");
            new.details.cloud = Some(creds.source.clone());
            new.details.region = creds.region_name.clone();
            new.details.comment = Some(format!("{VISIBLE} launched with {creds:?}"));
            new.details.last_error = Some(format!("401 from keystone with token {token}"));
            w.insert_node(&new)?;
            w.insert_request(&NewRequest {
                labels: vec!["ubuntu".into()],
                requestor: format!("{:?}", creds.auth),
                priority: 100,
                tenant: None,
            })?;
            let entry = w.journal_insert(&NewJournalEntry {
                plan_id: "plan".into(),
                seq: 1,
                kind: "create-server".into(),
                address: "provider.rax-dfw.node.0000000001".into(),
                reason: "min-ready".into(),
                payload: serde_json::to_value(creds.describe()).unwrap(),
            })?;
            w.journal_start(entry.id)?;
            w.journal_fail(
                entry.id,
                &format!(
                    "auth as {} failed: {token:?}",
                    creds.describe().user.unwrap()
                ),
            )?;
            w.record_config_revision(&NewConfigRevision {
                revision: "abc".into(),
                source: creds.source.clone(),
                status: ConfigStatus::Invalid,
                errors: Some(format!("password {} rejected", creds.auth_url)),
            })?;
            w.observe_leaks("rax-dfw", LeakKind::Port, &[format!("{token}")])?;
            Ok(())
        })
        .unwrap();

    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm"] {
        let file = dir.path().join(format!("state.db{suffix}"));
        if file.exists() {
            bytes.extend(fs::read(file).unwrap());
        }
    }
    let contains = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        contains(VISIBLE),
        "control marker not found: the grep would be vacuous"
    );
    assert!(!contains(SECRET), "the secret reached the database file");
    drop(store);
    // After close (checkpoint into the main file) as well.
    let main = fs::read(&path).unwrap();
    assert!(!main.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    assert!(main.windows(VISIBLE.len()).any(|w| w == VISIBLE.as_bytes()));
}
