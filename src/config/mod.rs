//! The desired state: `nodepool.yaml` (+ secure file, + `clouds.yaml`) loaded, schema-checked and validated.
//!
//! Pipeline, for each file: read → replace `%(NODEPOOL_*)` tokens from the environment →
//! parse YAML into a JSON value with a position index → check the JSON Schema → decode the
//! typed model from the same JSON value → semantic checks → resolve (defaults, parent chains,
//! secure file). Every problem is collected with file, line, column and key path; a config
//! with any error yields no [`Config`] at all, so an invalid config can never change the world.
//!
//! Invariant: this module does no I/O beyond reading the files it is pointed at.

pub mod clouds;
pub mod credentials;
pub mod diagnostic;
pub mod model;
pub mod resolve;
pub mod schema;
pub mod validate;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use resolve::{Config, DiskImage};

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file name looked for when `-c` names a directory (a config repo).
pub const DEFAULT_FILE_NAME: &str = "nodepool.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render_errors(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render_errors(diags: &[Diagnostic]) -> String {
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect();
    format!(
        "{}\n{} error{} in the configuration",
        errors.join("\n"),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    )
}

impl ConfigError {
    /// All diagnostics (errors and warnings) when the config was invalid.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(d) => d,
            ConfigError::Io { .. } => &[],
        }
    }
}

/// Where to load from.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// A `nodepool.yaml` file, or a directory (config repo) holding one.
    pub config: PathBuf,
    /// The secure file (`-s`), if any.
    pub secure: Option<PathBuf>,
    /// The environment `%(NODEPOOL_*)` tokens are replaced from (only `NODEPOOL_` names are used).
    pub env: BTreeMap<String, String>,
}

impl LoadOptions {
    /// Load `config` with the process environment.
    pub fn new(config: impl Into<PathBuf>) -> Self {
        LoadOptions {
            config: config.into(),
            secure: None,
            env: std::env::vars()
                .filter(|(k, _)| k.starts_with("NODEPOOL_"))
                .collect(),
        }
    }

    pub fn with_secure(mut self, secure: Option<PathBuf>) -> Self {
        self.secure = secure;
        self
    }

    /// The config file itself (`config`, or `config/nodepool.yaml` for a directory).
    pub fn config_file(&self) -> PathBuf {
        if self.config.is_dir() {
            self.config.join(DEFAULT_FILE_NAME)
        } else {
            self.config.clone()
        }
    }
}

/// A successfully loaded config.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    /// Warnings (never errors: a config with errors does not load).
    pub warnings: Vec<Diagnostic>,
    /// The config file read.
    pub path: PathBuf,
    /// The config file's text as read (before `%(...)` substitution: it may not hold secrets
    /// that came from the environment).
    pub text: String,
    /// SHA-256 of that text, hex: the revision of a config that is not in git.
    pub sha256: String,
}

/// Load, check and resolve a config. Errors carry every problem found, warnings included.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigError> {
    let path = opts.config_file();
    let text = read(&path)?;
    let secure = match &opts.secure {
        Some(p) => Some((p.clone(), read(p)?)),
        None => None,
    };
    let (config, warnings) = load_str(
        &path,
        &text,
        secure.as_ref().map(|(p, t)| (p.as_path(), t.as_str())),
        &opts.env,
    )
    .map_err(ConfigError::Invalid)?;
    let sha256 = hex::encode(Sha256::digest(text.as_bytes()));
    Ok(Loaded {
        config,
        warnings,
        path,
        text,
        sha256,
    })
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Load from text already in memory (what [`load`] does after reading; also the fuzz entry).
/// Never panics, whatever the input.
pub fn load_str(
    path: &Path,
    text: &str,
    secure: Option<(&Path, &str)>,
    env: &BTreeMap<String, String>,
) -> Result<(Config, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let file: Option<(model::NodepoolFile, yaml::PositionIndex)> =
        parse_document(path, text, env, schema::Document::Config, &mut diags);
    let secure_doc: Option<(model::SecureFile, yaml::PositionIndex)> = match secure {
        Some((sp, st)) => parse_document(sp, st, env, schema::Document::Secure, &mut diags),
        None => Some((model::SecureFile::default(), yaml::PositionIndex::default())),
    };
    if let Some((file, index)) = &file {
        let mut r = validate::Report::new(path, index);
        validate::check(file, &mut r);
        diags.append(&mut r.out);
        if let (Some((s, sindex)), Some((sp, _))) = (&secure_doc, secure) {
            let mut r = validate::Report::new(sp, sindex);
            validate::check_secure(s, file, &mut r);
            diags.append(&mut r.out);
        }
    }
    match (file, secure_doc) {
        (Some((file, _)), Some((secure, _))) if !diags.iter().any(Diagnostic::is_error) => {
            Ok((resolve::resolve(file, secure), diags))
        }
        _ => Err(diags),
    }
}

/// Load a secure file on its own (the daemon reads its API tokens and webhook secret from it;
/// its diskimage and provider entries are checked against the config by [`load`]).
pub fn load_secure(
    path: &Path,
    env: &BTreeMap<String, String>,
) -> Result<model::SecureFile, ConfigError> {
    let text = read(path)?;
    let mut diags = Vec::new();
    match parse_document::<model::SecureFile>(
        path,
        &text,
        env,
        schema::Document::Secure,
        &mut diags,
    ) {
        Some((secure, _)) => Ok(secure),
        None => Err(ConfigError::Invalid(diags)),
    }
}

fn parse_document<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    env: &BTreeMap<String, String>,
    doc: schema::Document,
    diags: &mut Vec<Diagnostic>,
) -> Option<(T, yaml::PositionIndex)> {
    let text = match substitute_env(path, text, env) {
        Ok(t) => t,
        Err(mut e) => {
            diags.append(&mut e);
            return None;
        }
    };
    let (value, index) = match yaml::parse(&text) {
        Ok(v) => v,
        Err(e) => {
            diags.push(Diagnostic::error(
                path,
                e.pos,
                "",
                format!("invalid YAML: {}", e.message),
            ));
            return None;
        }
    };
    let value = match value {
        serde_json::Value::Null => serde_json::Value::Object(Default::default()),
        v => v,
    };
    let errors = schema::check(doc, path, &value, &index);
    if !errors.is_empty() {
        diags.extend(errors);
        return None;
    }
    match serde_json::from_value::<T>(value) {
        Ok(t) => Some((t, index)),
        Err(e) => {
            // The schema and the types are generated from each other, so this is a bug; still
            // report it as a config error rather than crash.
            diags.push(Diagnostic::error(
                path,
                Default::default(),
                "",
                format!("cannot decode: {e}"),
            ));
            None
        }
    }
}

/// Replace `%(NODEPOOL_NAME)` with the environment variable's value, before YAML parsing (as
/// upstream does). Other `%(...)` text is left alone. A `NODEPOOL_` name that is not set is an
/// error naming the line.
fn substitute_env(
    path: &Path,
    text: &str,
    env: &BTreeMap<String, String>,
) -> Result<String, Vec<Diagnostic>> {
    let mut out = String::with_capacity(text.len());
    let mut errors = Vec::new();
    let mut rest = text;
    let mut consumed = 0usize;
    while let Some(start) = rest.find("%(") {
        let after = &rest[start + 2..];
        let Some(end) = after.find(')') else { break };
        let name = &after[..end];
        out.push_str(&rest[..start]);
        let token_len = 2 + end + 1;
        if name.starts_with("NODEPOOL_")
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    let offset = consumed + start;
                    let line = text[..offset].matches('\n').count() + 1;
                    let column = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
                    errors.push(Diagnostic::error(
                        path,
                        yaml::Pos {
                            line: u32::try_from(line).unwrap_or(u32::MAX),
                            column: u32::try_from(column).unwrap_or(u32::MAX),
                        },
                        "",
                        format!(
                            "environment variable `{name}` is not set (referenced as `%({name})`)"
                        ),
                    ));
                }
            }
        } else {
            out.push_str(&rest[start..start + token_len]);
        }
        consumed += start + token_len;
        rest = &rest[start + token_len..];
    }
    out.push_str(rest);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn env_substitution() {
        let p = Path::new("x.yaml");
        let e = env(&[("NODEPOOL_PORT", "8022")]);
        assert_eq!(
            substitute_env(p, "port: %(NODEPOOL_PORT)\n", &e).unwrap(),
            "port: 8022\n"
        );
        assert_eq!(
            substitute_env(p, "a: %(OTHER)\n", &e).unwrap(),
            "a: %(OTHER)\n"
        );
        let err = substitute_env(p, "a: 1\nb: %(NODEPOOL_NOPE)\n", &e).unwrap_err();
        assert_eq!((err[0].line, err[0].column), (2, 4));
        assert!(err[0].message.contains("NODEPOOL_NOPE"));
    }

    const MINIMAL: &str = "labels:\n  - name: small\n    min-ready: 2\nproviders:\n  - name: p1\n    cloud: c1\n    pools:\n      - name: main\n        max-servers: 4\n        labels:\n          - name: small\n            cloud-image: cirros\n            min-ram: 512\n    cloud-images:\n      - name: cirros\n";

    #[test]
    fn minimal_config_resolves_with_defaults() {
        let (c, warnings) = load_str(Path::new("n.yaml"), MINIMAL, None, &env(&[])).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let p = c.provider("p1").unwrap();
        assert_eq!((p.boot_timeout, p.launch_retries, p.rate), (60, 3, 1.0));
        assert_eq!(p.image_name_format, "{image_name}-{timestamp}");
        assert!(p.pools[0].auto_floating_ip);
        assert_eq!(c.label("small").unwrap().min_ready, 2);
    }

    #[test]
    fn unknown_key_has_line_and_hint() {
        let text = MINIMAL.replace("    min-ready: 2", "    min-rady: 2");
        let errs = load_str(Path::new("n.yaml"), &text, None, &env(&[])).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!((errs[0].line, errs[0].column), (3, 5));
        assert_eq!(errs[0].path, "labels[0].min-rady");
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `min-ready`?"));
    }

    #[test]
    fn all_problems_at_once() {
        let text = MINIMAL
            .replace("cloud-image: cirros", "cloud-image: cirrus")
            .replace(
                "- name: small\n            cloud",
                "- name: smal\n            cloud",
            );
        let errs = load_str(Path::new("n.yaml"), &text, None, &env(&[])).unwrap_err();
        let errors: Vec<_> = errs.iter().filter(|d| d.is_error()).collect();
        assert_eq!(errors.len(), 2, "{errs:#?}");
        assert!(
            errors
                .iter()
                .any(|d| d.message.contains("label `smal`") && d.line == 11)
        );
        assert!(
            errors
                .iter()
                .any(|d| d.message.contains("cloud-image `cirrus`")
                    && d.hint.as_deref() == Some("did you mean `cirros`?"))
        );
    }

    #[test]
    fn parent_chain_merges() {
        let text = "diskimages:\n  - name: base\n    abstract: true\n    elements: [a]\n    env-vars: {X: '1', Y: '1'}\n    release: 22.04\n  - name: mid\n    parent: base\n    abstract: true\n    elements: [b]\n    env-vars: {Y: '2'}\n  - name: leaf\n    parent: mid\n    elements: [c]\n    rebuild-age: 10\n";
        let (c, _) = load_str(Path::new("n.yaml"), text, None, &env(&[])).unwrap();
        let leaf = c.diskimage("leaf").unwrap();
        assert_eq!(leaf.elements, ["a", "b", "c"]);
        assert_eq!(leaf.env_vars.get("X").map(String::as_str), Some("1"));
        assert_eq!(leaf.env_vars.get("Y").map(String::as_str), Some("2"));
        assert_eq!(leaf.release.as_deref(), Some("22.04"));
        assert_eq!((leaf.rebuild_age, leaf.build_timeout), (10, 28800));
        assert!(!leaf.r#abstract);
        assert!(c.diskimage("mid").unwrap().r#abstract);
    }

    #[test]
    fn parent_cycle_is_reported() {
        let text = "diskimages:\n  - name: a\n    parent: b\n  - name: b\n    parent: a\n";
        let errs = load_str(Path::new("n.yaml"), text, None, &env(&[])).unwrap_err();
        assert!(errs.iter().any(|d| d.message.contains("cycle")), "{errs:?}");
    }

    #[test]
    fn secure_file_merges_and_hides() {
        let text = "diskimages:\n  - name: img\n    env-vars: {PUBLIC: x}\n";
        let secure = "diskimages:\n  - name: img\n    env-vars: {REG_PASSWORD: hunter2}\n";
        let (c, _) = load_str(
            Path::new("n.yaml"),
            text,
            Some((Path::new("s.yaml"), secure)),
            &env(&[]),
        )
        .unwrap();
        let img = c.diskimage("img").unwrap();
        assert_eq!(img.secure_env_vars["REG_PASSWORD"].expose(), "hunter2");
        let shown = format!("{c:?}{}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("hunter2"));

        let bad = "diskimages:\n  - name: nope\n    env-vars: {A: b}\n";
        let errs = load_str(
            Path::new("n.yaml"),
            text,
            Some((Path::new("s.yaml"), bad)),
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(errs[0].file, Path::new("s.yaml"));
        assert!(errs[0].message.contains("`nope`"));
    }

    #[test]
    fn secure_file_alone_with_api_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("secure.yaml");
        std::fs::write(&f, "api-tokens: [tok-1, tok-2]\nwebhook-secret: hook\n").unwrap();
        let s = load_secure(&f, &env(&[])).unwrap();
        assert_eq!(
            s.api_tokens.iter().map(|t| t.expose()).collect::<Vec<_>>(),
            ["tok-1", "tok-2"]
        );
        assert_eq!(s.webhook_secret.unwrap().expose(), "hook");
        std::fs::write(&f, "api-token: [x]\n").unwrap();
        let err = load_secure(&f, &env(&[])).unwrap_err().to_string();
        assert!(
            err.contains("api-token: unknown key") && err.contains("did you mean `api-tokens`?"),
            "{err}"
        );
    }

    #[test]
    fn inline_password_never_shown() {
        let text = "providers:\n  - name: default\n    auth_url: http://localhost:5000/v2.0\n    project_id: tenantname\n    username: user\n    password: '%(NODEPOOL_PW)'\n    region_name: ''\n";
        let (c, _) = load_str(
            Path::new("n.yaml"),
            text,
            None,
            &env(&[("NODEPOOL_PW", "s3cr3t-pw")]),
        )
        .unwrap();
        let shown = format!("{c:?}{}", serde_json::to_string(&c).unwrap());
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert_eq!(
            c.providers[0].password.as_ref().unwrap().expose(),
            "s3cr3t-pw"
        );
    }

    #[test]
    fn type_errors_do_not_quote_values() {
        let text = "providers:\n  - name: p\n    auth-url: http://k\n    username: u\n    project-name: p\n    password: [topsecret]\n";
        let errs = load_str(Path::new("n.yaml"), text, None, &env(&[])).unwrap_err();
        let shown: String = errs.iter().map(ToString::to_string).collect();
        assert!(!shown.contains("topsecret"), "{shown}");
        assert!(shown.contains("providers[0].password"), "{shown}");
    }
}
