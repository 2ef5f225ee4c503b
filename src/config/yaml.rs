//! YAML text → a JSON value plus an index of where every key and value stood in the source.
//!
//! The loader checks the JSON Schema and decodes the typed model from the *same* JSON value,
//! so the schema check and the decode can never disagree about what the YAML said. The
//! [`PositionIndex`] maps JSON pointers (what the schema validator reports) back to
//! line/column, so every diagnostic can name the line of the offending key.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::{Options, Spanned};
use std::collections::HashMap;
use std::fmt;

/// A 1-based position in a source file. `line == 0` means unknown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    fn from_location(loc: serde_saphyr::Location) -> Self {
        Pos {
            line: u32::try_from(loc.line()).unwrap_or(u32::MAX),
            column: u32::try_from(loc.column()).unwrap_or(u32::MAX),
        }
    }
}

/// Where a key and its value stand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spot {
    /// The key's position (for a sequence item: the item's own position).
    pub key: Pos,
    /// The value's position.
    pub value: Pos,
}

/// JSON pointer → position of the key and value at that pointer.
#[derive(Clone, Debug, Default)]
pub struct PositionIndex {
    spots: HashMap<String, Spot>,
}

impl PositionIndex {
    /// The position of the key (or item) at `pointer`, or of its nearest located ancestor.
    pub fn key_pos(&self, pointer: &str) -> Pos {
        self.nearest(pointer).key
    }

    /// The position of the value at `pointer`, or of its nearest located ancestor.
    pub fn value_pos(&self, pointer: &str) -> Pos {
        self.nearest(pointer).value
    }

    fn nearest(&self, pointer: &str) -> Spot {
        let mut p = pointer;
        loop {
            if let Some(spot) = self.spots.get(p) {
                return *spot;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Spot::default(),
            }
        }
    }
}

/// A YAML file that could not be parsed.
#[derive(Debug, Clone)]
pub struct YamlError {
    pub pos: Pos,
    /// The parser's message, with a source snippet when it has one.
    pub message: String,
}

/// The options every config file is parsed with: YAML 1.1 booleans (`yes`/`on`) as PyYAML
/// reads them, merge keys, duplicate keys rejected, and the default alias-bomb budget.
/// Numbers written with leading zeros (`0755`, `0000000042`) stay strings: an id or a
/// release must never silently become a different number.
fn options() -> Options {
    let mut opts = Options::default();
    opts.strict_booleans = false;
    opts.leading_zero_numbers_as_strings = true;
    opts
}

/// Parse one YAML document into a JSON value and its position index. An empty document is
/// `null`.
pub fn parse(text: &str) -> Result<(Value, PositionIndex), YamlError> {
    if text.trim().is_empty() {
        return Ok((Value::Null, PositionIndex::default()));
    }
    let node: Spanned<Tree> =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| YamlError {
            pos: e.location().map(Pos::from_location).unwrap_or_default(),
            message: e.to_string(),
        })?;
    let mut index = PositionIndex::default();
    let root = Pos::from_location(node.referenced);
    let value = into_json(node, text, String::new(), &mut index);
    index.spots.insert(
        String::new(),
        Spot {
            key: root,
            value: root,
        },
    );
    Ok((value, index))
}

/// Escape one JSON-pointer segment (RFC 6901).
pub fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// PyYAML (what upstream Nodepool reads configs with) takes `y`, `Y`, `n` and `N` as strings;
/// the YAML 1.1 resolver here takes them as booleans. Put them back to strings.
fn pyyaml_bool(b: bool, node: &Spanned<Tree>, text: &str) -> Value {
    let span = node.defined.span();
    let raw = span
        .byte_offset()
        .zip(span.byte_len())
        .and_then(|(o, l)| text.get(usize::try_from(o).ok()?..usize::try_from(o + l).ok()?));
    match raw {
        Some(r @ ("y" | "Y" | "n" | "N")) => Value::String(r.to_owned()),
        _ => Value::Bool(b),
    }
}

fn into_json(node: Spanned<Tree>, text: &str, pointer: String, index: &mut PositionIndex) -> Value {
    let tree = match node.value {
        Tree::Bool(b) => return pyyaml_bool(b, &node, text),
        other => other,
    };
    match tree {
        Tree::Null => Value::Null,
        Tree::Bool(b) => Value::Bool(b),
        Tree::Int(i) => Value::Number(i.into()),
        Tree::UInt(u) => Value::Number(u.into()),
        Tree::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        Tree::Str(s) => Value::String(s),
        Tree::Seq(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let p = format!("{pointer}/{i}");
                    let pos = Pos::from_location(item.referenced);
                    index.spots.insert(
                        p.clone(),
                        Spot {
                            key: pos,
                            value: pos,
                        },
                    );
                    into_json(item, text, p, index)
                })
                .collect(),
        ),
        Tree::Map(entries) => {
            let mut map = Map::with_capacity(entries.len());
            for (key, value) in entries {
                let p = format!("{pointer}/{}", escape_segment(&key.name));
                index.spots.insert(
                    p.clone(),
                    Spot {
                        key: key.pos,
                        value: Pos::from_location(value.referenced),
                    },
                );
                let v = into_json(value, text, p, index);
                map.insert(key.name, v);
            }
            Value::Object(map)
        }
    }
}

/// The parsed document, each node with its location. Private: callers see JSON + index.
enum Tree {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Tree>>),
    Map(Vec<(TreeKey, Spanned<Tree>)>),
}

struct TreeKey {
    name: String,
    pos: Pos,
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_none<E>(self) -> Result<Tree, E> {
        Ok(Tree::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Tree, D::Error> {
        Tree::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::UInt(v))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Tree, E> {
        i64::try_from(v)
            .map(Tree::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Tree, E> {
        u64::try_from(v)
            .map(Tree::UInt)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Tree, E> {
        Ok(Tree::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Tree, E> {
        String::from_utf8(v.to_vec())
            .map(Tree::Str)
            .map_err(|_| E::custom("binary values are not supported"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            items.push(item);
        }
        Ok(Tree::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let pos = Pos::from_location(key.referenced);
            let name = key.value;
            let value = map.next_value::<Spanned<Tree>>()?;
            entries.push((TreeKey { name, pos }, value));
        }
        Ok(Tree::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_positions() {
        let text = "a: 1\nb:\n  - x: yes\n    y: 2.5\n  - z\n";
        let (v, idx) = parse(text).unwrap();
        assert_eq!(v, json!({"a": 1, "b": [{"x": true, "y": 2.5}, "z"]}));
        assert_eq!(idx.key_pos("/a"), Pos { line: 1, column: 1 });
        assert_eq!(idx.key_pos("/b/0/y").line, 4);
        assert_eq!(idx.value_pos("/b/1").line, 5);
        // Unknown pointers fall back to the nearest located ancestor.
        assert_eq!(idx.key_pos("/b/0/nope").line, 3);
    }

    #[test]
    fn merge_keys_and_anchors() {
        let text = "base: &b\n  x: 1\n  y: 2\nchild:\n  <<: *b\n  y: 3\n";
        let (v, _) = parse(text).unwrap();
        assert_eq!(v["child"], json!({"x": 1, "y": 3}));
    }

    #[test]
    fn duplicate_key_is_an_error_with_a_line() {
        let err = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 3, "{}", err.message);
    }

    #[test]
    fn syntax_error_has_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{}", err.message);
    }

    #[test]
    fn yaml_11_booleans_like_pyyaml() {
        let (v, _) = parse("a: True\nb: off\nc: 'yes'\nd: y\ne: [N, n]\n").unwrap();
        assert_eq!(
            v,
            json!({"a": true, "b": false, "c": "yes", "d": "y", "e": ["N", "n"]})
        );
    }

    #[test]
    fn leading_zeros_stay_strings() {
        let (v, _) = parse("a: 0000000008\nb: 0755\nc: 10\nd: 0.5\n").unwrap();
        assert_eq!(
            v,
            json!({"a": "0000000008", "b": "0755", "c": 10, "d": 0.5})
        );
    }

    #[test]
    fn pointer_escaping() {
        let (_, idx) = parse("a/b:\n  c~d: 1\n").unwrap();
        assert_eq!(idx.key_pos("/a~1b/c~0d").line, 2);
    }

    #[test]
    fn alias_bomb_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&text).is_err());
    }
}
