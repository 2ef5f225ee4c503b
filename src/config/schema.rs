//! The JSON Schema of `nodepool.yaml`: generated from the model, shipped in `schema/`, checked at load.
//!
//! `schema/nodepool.schema.json` is the structural contract (usable in an editor). It is
//! generated from the serde types in [`super::model`]; a test fails when the file and the
//! types drift apart (`nodepool schema > schema/nodepool.schema.json` regenerates it).

use super::diagnostic::{Diagnostic, did_you_mean};
use super::model::{NodepoolFile, SecureFile};
use super::yaml::PositionIndex;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;
use std::path::Path;
use std::sync::OnceLock;

/// The schema as shipped (embedded at build time).
pub const NODEPOOL_SCHEMA: &str = include_str!("../../schema/nodepool.schema.json");

/// Keys the inline credential form also accepts in `snake_case` (as the seed's deployment
/// tool wrote them); serde aliases are not visible to the schema generator.
const PROVIDER_ALIASES: &[(&str, &str)] = &[
    ("auth_url", "auth-url"),
    ("project_id", "project-id"),
    ("project_name", "project-name"),
    ("user_domain_name", "user-domain-name"),
    ("project_domain_name", "project-domain-name"),
];

/// Generate the schema of `nodepool.yaml` from the model types.
pub fn generate() -> Value {
    let settings = schemars::generate::SchemaSettings::draft2020_12();
    let generator = settings.into_generator();
    let schema = generator.into_root_schema_for::<NodepoolFile>();
    let mut value = schema.to_value();
    if let Some(props) = value
        .pointer_mut("/$defs/OpenStackProvider/properties")
        .and_then(Value::as_object_mut)
    {
        for (alias, canonical) in PROVIDER_ALIASES {
            if let Some(s) = props.get(*canonical).cloned() {
                props.insert((*alias).to_owned(), s);
            }
        }
    }
    value
}

/// Generate the schema of the secure file.
pub fn generate_secure() -> Value {
    schemars::generate::SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<SecureFile>()
        .to_value()
}

/// Which document a validator checks.
#[derive(Clone, Copy, Debug)]
pub enum Document {
    Config,
    Secure,
}

struct Compiled {
    schema: Value,
    validator: jsonschema::Validator,
}

fn compiled(doc: Document) -> &'static Compiled {
    static CONFIG: OnceLock<Compiled> = OnceLock::new();
    static SECURE: OnceLock<Compiled> = OnceLock::new();
    let (cell, make): (_, fn() -> Value) = match doc {
        Document::Config => (&CONFIG, || {
            serde_json::from_str(NODEPOOL_SCHEMA).expect("the shipped schema is valid JSON")
        }),
        Document::Secure => (&SECURE, generate_secure),
    };
    cell.get_or_init(|| {
        let schema = make();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .build(&schema)
            .expect("the shipped schema compiles");
        Compiled { schema, validator }
    })
}

/// Check `instance` against the schema; every violation becomes a diagnostic with the line of
/// the offending key. Messages never quote the offending value (it may be a secret).
pub fn check(
    doc: Document,
    file: &Path,
    instance: &Value,
    index: &PositionIndex,
) -> Vec<Diagnostic> {
    let c = compiled(doc);
    let mut out: Vec<Diagnostic> = Vec::new();
    for err in c.validator.iter_errors(instance) {
        explain(&c.schema, &err, file, index, &mut out);
    }
    out.sort_by_key(|d| (d.line, d.column));
    out.dedup();
    out
}

/// Turn one validation error into diagnostics. An `anyOf` failure (how an optional value is
/// written in the schema) is explained by the errors of its most specific branch.
fn explain(
    schema: &Value,
    err: &jsonschema::ValidationError<'_>,
    file: &Path,
    index: &PositionIndex,
    out: &mut Vec<Diagnostic>,
) {
    {
        let pointer = err.instance_path().as_str().to_owned();
        match err.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let allowed = allowed_keys(schema, err.schema_path().as_str());
                for key in unexpected {
                    let p = format!("{pointer}/{}", super::yaml::escape_segment(key));
                    out.push(
                        Diagnostic::error(file, index.key_pos(&p), &p, "unknown key")
                            .with_hint(did_you_mean(key, allowed.iter().map(String::as_str))),
                    );
                }
            }
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or("?");
                out.push(Diagnostic::error(
                    file,
                    index.key_pos(&pointer),
                    &pointer,
                    format!("missing required key `{name}`"),
                ));
            }
            ValidationErrorKind::Type { kind } => {
                let expected = match kind {
                    jsonschema::error::TypeKind::Single(t) => t.to_string(),
                    jsonschema::error::TypeKind::Multiple(ts) => ts
                        .iter()
                        .map(|t| t.to_string())
                        .collect::<Vec<_>>()
                        .join(" or "),
                };
                let found = super::model::json_kind(err.instance());
                out.push(Diagnostic::error(
                    file,
                    index.value_pos(&pointer),
                    &pointer,
                    format!("expected {expected}, found {found}"),
                ));
            }
            ValidationErrorKind::Enum { options } => {
                let opts: Vec<String> = options
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let hint = err
                    .instance()
                    .as_str()
                    .and_then(|s| did_you_mean(s, opts.iter().map(String::as_str)));
                out.push(
                    Diagnostic::error(
                        file,
                        index.value_pos(&pointer),
                        &pointer,
                        format!("must be one of: {}", opts.join(", ")),
                    )
                    .with_hint(hint),
                );
            }
            ValidationErrorKind::AnyOf { context }
            | ValidationErrorKind::OneOfNotValid { context }
                if !context.is_empty() =>
            {
                // The branch that got furthest (errors deepest in the instance) is the one
                // the user meant; a bare type mismatch (e.g. against `null`) is the least useful.
                let best = context.iter().max_by_key(|branch| {
                    branch
                        .iter()
                        .map(|e| {
                            e.instance_path().as_str().len() * 2
                                + usize::from(!matches!(e.kind(), ValidationErrorKind::Type { .. }))
                        })
                        .max()
                        .unwrap_or(0)
                });
                for e in best.into_iter().flatten() {
                    explain(schema, e, file, index, out);
                }
            }
            _ => {
                out.push(Diagnostic::error(
                    file,
                    index.value_pos(&pointer),
                    &pointer,
                    err.masked().to_string(),
                ));
            }
        }
    }
}

/// The property names allowed by the schema object whose `additionalProperties` rejected a key.
fn allowed_keys(root: &Value, schema_path: &str) -> Vec<String> {
    let obj_path = schema_path
        .strip_suffix("/additionalProperties")
        .unwrap_or(schema_path);
    let mut node = root;
    for seg in obj_path.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        node = match node
            .get(&seg)
            .or_else(|| seg.parse::<usize>().ok().and_then(|i| node.get(i)))
        {
            Some(n) => n,
            None => return Vec::new(),
        };
        // Follow a local reference (`#/$defs/X`) so the path can continue inside it.
        while let Some(r) = node.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                Some(target) if node.get("properties").is_none() => node = target,
                _ => break,
            }
        }
    }
    node.get("properties")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_schema_matches_the_model() {
        let generated = generate();
        let shipped: Value = serde_json::from_str(NODEPOOL_SCHEMA).unwrap();
        assert!(
            generated == shipped,
            "schema/nodepool.schema.json is out of date with src/config/model.rs; \
             regenerate it with `cargo run -- schema > schema/nodepool.schema.json` and review the diff"
        );
    }

    #[test]
    fn schema_has_descriptions_and_defaults() {
        let s = generate();
        let p = &s["$defs"]["OpenStackProvider"]["properties"];
        assert_eq!(p["boot-timeout"]["default"], 60);
        assert_eq!(p["launch-retries"]["default"], 3);
        assert!(
            p["cloud"]["description"]
                .as_str()
                .unwrap()
                .contains("clouds.yaml")
        );
        assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    }
}
