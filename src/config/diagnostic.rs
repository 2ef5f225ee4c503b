//! One problem found in a config file: where (file, line, column, key path), what, and a hint.

use super::yaml::Pos;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    /// 1-based; 0 when unknown.
    pub line: u32,
    pub column: u32,
    /// The key path, e.g. `providers[0].pools[1].labels[0].min-ram` (empty: the whole file).
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(
        file: impl Into<PathBuf>,
        pos: Pos,
        pointer: &str,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            line: pos.line,
            column: pos.column,
            path: display_path(pointer),
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(
        file: impl Into<PathBuf>,
        pos: Pos,
        pointer: &str,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(file, pos, pointer, message)
        }
    }

    pub fn with_hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {sev}: ")?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// `/providers/0/pools/1/min-ram` → `providers[0].pools[1].min-ram`.
pub fn display_path(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&seg);
            out.push(']');
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg);
        }
    }
    out
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(display_path(""), "");
        assert_eq!(
            display_path("/providers/0/pools/12/min-ram"),
            "providers[0].pools[12].min-ram"
        );
        assert_eq!(display_path("/env-vars/A~1B"), "env-vars.A/B");
    }

    #[test]
    fn hints() {
        assert_eq!(
            did_you_mean("min-rady", ["min-ready", "max-ready-age", "name"]).as_deref(),
            Some("did you mean `min-ready`?")
        );
        assert_eq!(did_you_mean("zzz", ["min-ready", "name"]), None);
    }

    #[test]
    fn display() {
        let d = Diagnostic::error(
            "n.yaml",
            Pos { line: 3, column: 5 },
            "/labels/0/min-rady",
            "unknown key",
        )
        .with_hint(Some("did you mean `min-ready`?".into()));
        assert_eq!(
            d.to_string(),
            "n.yaml:3:5: error: labels[0].min-rady: unknown key\n  hint: did you mean `min-ready`?"
        );
    }
}
