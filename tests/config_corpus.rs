//! Every real upstream config in `../shared/corpus` loads (or is rejected) as upstream's
//! `nodepool config-validate` does, and the example config repo is valid.

use nodepool::config::{self, LoadOptions, Severity};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

/// Fill in the `str.format` placeholders upstream's test harness substitutes.
fn render_template(text: &str) -> String {
    let mut t = text.to_owned();
    for (k, v) in [
        ("images_dir", "/tmp/np-images"),
        ("build_log_dir", "/tmp/np-build-logs"),
        ("zookeeper_host", "localhost"),
        ("zookeeper_port", "2281"),
        ("zookeeper_chroot", "/nodepool-test"),
        ("zookeeper_ca", "/etc/zk/ca.pem"),
        ("zookeeper_cert", "/etc/zk/client.pem"),
        ("zookeeper_key", "/etc/zk/client.key"),
    ] {
        t = t.replace(&format!("{{{k}}}"), v);
    }
    t.replace("{{", "{").replace("}}", "}")
}

fn load_text(
    path: &Path,
    text: &str,
    secure: Option<(&Path, &str)>,
) -> Result<config::Config, Vec<config::Diagnostic>> {
    let env: BTreeMap<String, String> = [("NODEPOOL_PORT".to_owned(), "8005".to_owned())].into();
    config::load_str(path, text, secure, &env).map(|(c, _)| c)
}

#[test]
fn every_upstream_fixture_loads() {
    let dir = corpus().join("nodepool-fixtures");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap();
        // Not nodepool.yaml files: the openstacksdk clouds file and the secure-file half.
        if path.extension().is_none_or(|e| e != "yaml")
            || name == "clouds.yaml"
            || name == "secure_file_secure.yaml"
        {
            continue;
        }
        let text = render_template(&std::fs::read_to_string(&path).unwrap());
        if let Err(diags) = load_text(&path, &text, None) {
            panic!(
                "{name} must load:\n{}",
                diags.iter().map(|d| format!("  {d}\n")).collect::<String>()
            );
        }
        checked += 1;
    }
    assert!(
        checked >= 28,
        "only {checked} fixtures found in {}",
        dir.display()
    );
}

#[test]
fn secure_file_fixture_merges() {
    let dir = corpus().join("nodepool-fixtures");
    let cfg =
        render_template(&std::fs::read_to_string(dir.join("secure_file_config.yaml")).unwrap());
    let sec =
        render_template(&std::fs::read_to_string(dir.join("secure_file_secure.yaml")).unwrap());
    let c = load_text(
        &dir.join("secure_file_config.yaml"),
        &cfg,
        Some((&dir.join("secure_file_secure.yaml"), &sec)),
    )
    .unwrap();
    assert_eq!(c.zookeeper_servers[0].host, "localhost");
    assert_eq!(c.zookeeper_tls.as_ref().unwrap().ca, "/etc/zk/ca.pem");
    let img = c.diskimage("fake-image").unwrap();
    assert_eq!(img.secure_env_vars["REG_PASSWORD"].expose(), "secret");
    assert!(!img.env_vars.contains_key("REG_PASSWORD"));
    assert!(!format!("{c:?}").contains("secret\""));
}

#[test]
fn parents_fixture_flattens_like_upstream() {
    let dir = corpus().join("nodepool-fixtures");
    let text =
        render_template(&std::fs::read_to_string(dir.join("node_diskimage_parents.yaml")).unwrap());
    let c = load_text(&dir.join("node_diskimage_parents.yaml"), &text, None).unwrap();
    let p2 = c.diskimage("parent-image-2").unwrap();
    assert_eq!(p2.elements, ["fedora", "intermediate", "vm"]);
    assert_eq!(p2.env_vars["PARENT_TEST_ENV_OVERRIDE"], "parent-image-2");
    assert_eq!(
        p2.env_vars["PARENT_TEST_ENV_INTERMEDIATE"],
        "abstract-intermediate"
    );
    assert_eq!(p2.env_vars["PARENT_TEST_FLAG"], "intermediate");
    assert_eq!(p2.release.as_deref(), Some("21"));
    assert!(c.diskimage("abstract-base").unwrap().r#abstract);
}

/// `config_validate/`: exactly the verdicts of SOURCES.md, with the offending key and line.
#[test]
fn config_validate_verdicts() {
    let dir = corpus().join("nodepool-fixtures/config_validate");
    // (file, None for valid or: a fragment of the first error, its line, its key path)
    type Expected = Option<(&'static str, u32, &'static str)>;
    let cases: &[(&str, Expected)] = &[
        ("good.yaml", None),
        ("yaml_error.yaml", Some(("invalid YAML", 57, ""))),
        ("schema_error.yaml", Some(("unknown key", 4, "nothandled"))),
        (
            "missing_top_label.yaml",
            Some((
                "label `trusty` is not defined in the top-level `labels`",
                12,
                "providers[0].pools[0].labels[0].name",
            )),
        ),
        (
            "missing_diskimage_provider.yaml",
            Some((
                "diskimage `wrong` is not defined",
                6,
                "providers[0].diskimages[0].name",
            )),
        ),
        (
            "missing_parent_diskimage.yaml",
            Some((
                "parent diskimage `this_does_not_exist` is not defined",
                191,
                "diskimages[2].parent",
            )),
        ),
        (
            "duplicate_diskimage_name.yaml",
            Some((
                "duplicate diskimage name `trusty`",
                70,
                "diskimages[1].name",
            )),
        ),
        (
            "no_diskimage_name.yaml",
            Some(("missing required key `name`", 51, "diskimages[0]")),
        ),
    ];
    for (file, expected) in cases {
        let path = dir.join(file);
        let opts = LoadOptions {
            config: path.clone(),
            secure: None,
            env: [("NODEPOOL_PORT".to_owned(), "8005".to_owned())].into(),
        };
        match (config::load(&opts), expected) {
            (Ok(loaded), None) => {
                assert!(
                    loaded
                        .warnings
                        .iter()
                        .all(|d| d.severity == Severity::Warning)
                );
                assert_eq!(
                    loaded.config.providers.len(),
                    2,
                    "{file}: two openstack providers"
                );
                assert_eq!(
                    loaded.config.ignored_providers.len(),
                    7,
                    "{file}: other drivers kept, ignored"
                );
                assert_eq!(loaded.config.webapp.port, 8005);
            }
            (Err(e), Some((fragment, line, key))) => {
                let errors: Vec<_> = e.diagnostics().iter().filter(|d| d.is_error()).collect();
                let first = errors.first().unwrap_or_else(|| panic!("{file}: {e}"));
                assert!(first.message.contains(fragment), "{file}: {first}");
                assert_eq!(first.line, *line, "{file}: {first}");
                assert_eq!(first.path, *key, "{file}: {first}");
                assert_eq!(first.file, path);
            }
            (Ok(_), Some(_)) => panic!("{file} must be rejected"),
            (Err(e), None) => panic!("{file} must load: {e}"),
        }
    }
}

#[test]
fn good_yaml_without_its_env_var_names_the_token() {
    let path = corpus().join("nodepool-fixtures/config_validate/good.yaml");
    let opts = LoadOptions {
        config: path,
        secure: None,
        env: BTreeMap::new(),
    };
    let err = config::load(&opts).unwrap_err().to_string();
    assert!(
        err.contains("good.yaml:5:9") && err.contains("NODEPOOL_PORT"),
        "{err}"
    );
}

#[test]
fn zuul_quickstart_static_config_loads_with_a_warning() {
    let path = corpus().join("zuul-examples/nodepool.yaml");
    let loaded = config::load(&LoadOptions {
        config: path,
        secure: None,
        env: BTreeMap::new(),
    })
    .unwrap();
    assert!(loaded.config.providers.is_empty());
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("driver `static`"));
}

#[test]
fn example_config_repo_is_valid() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config-repo");
    let loaded = config::load(&LoadOptions {
        config: repo,
        secure: None,
        env: BTreeMap::new(),
    })
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let c = &loaded.config;
    assert_eq!(c.providers.len(), 2);
    assert_eq!(c.labels.len(), 4);
    assert!(c.labels.iter().all(|l| l.min_ready > 0));
    assert_eq!(c.diskimages.iter().filter(|d| !d.r#abstract).count(), 3);
    assert!(c.diskimages.iter().any(|d| d.parent.is_some()));
}
