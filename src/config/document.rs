//! Reading a fabric YAML file (`p4fabric apply`, `validate`, the demo, the
//! lab), with diagnostics that point at the file: line and column for
//! syntax and type errors, the key path (and the line of its entry, where
//! it can be found) for semantic ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::keys::document_to_raw;
use super::{validate, ConfigKey, Fabric};

/// The file cannot be read at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// A parsed and checked document.
pub struct Document {
    pub path: PathBuf,
    pub fabric: Option<Fabric>,
    pub raw: BTreeMap<String, Vec<u8>>,
    pub problems: Vec<String>,
}

impl Document {
    pub fn read(path: &Path) -> Result<Document, ReadError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReadError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(check(path, &text))
    }
}

/// Checks `text` as the content of `path`.
pub fn check(path: &Path, text: &str) -> Document {
    let mut doc = Document {
        path: path.to_path_buf(),
        fabric: None,
        raw: BTreeMap::new(),
        problems: Vec::new(),
    };
    let p = path.display();
    let fabric: Fabric = match serde_yaml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let at = e
                .location()
                .map(|l| format!("{}:{}:", l.line(), l.column()))
                .unwrap_or_default();
            doc.problems.push(format!("{p}:{at} {e}"));
            return doc;
        }
    };
    match document_to_raw(text) {
        Ok(raw) => doc.raw = raw,
        Err(e) => {
            doc.problems.push(format!("{p}: {e}"));
            return doc;
        }
    }
    // Per-key decoding catches what the whole-document parse cannot:
    // unknown fields of ports and LAGs (flattened types).
    for (key, bytes) in &doc.raw {
        let r = ConfigKey::parse(key).and_then(|k| k.decode(bytes).map(|_| ()));
        if let Err(e) = r {
            doc.problems
                .push(format!("{p}:{} {key}: {e}", line_of(text, key)));
        }
    }
    for problem in validate(&fabric) {
        let key = problem.key.to_string();
        doc.problems
            .push(format!("{p}:{} {problem}", line_of(text, &key)));
    }
    doc.fabric = Some(fabric);
    doc
}

/// `LINE:` of the entry for `key` (`hosts/vm1`: the `vm1:` line inside the
/// top-level `hosts:` block), or nothing if not found.
fn line_of(text: &str, key: &str) -> String {
    let (section, name) = key.split_once('/').unwrap_or((key, ""));
    let mut in_section = false;
    for (i, line) in text.lines().enumerate() {
        let top = !line.starts_with([' ', '\t', '#']) && !line.trim().is_empty();
        if top {
            in_section = line.starts_with(&format!("{section}:"));
            if in_section && name.is_empty() {
                return format!("{}:", i + 1);
            }
            continue;
        }
        let t = line.trim_start().trim_start_matches(['"', '\'']);
        if in_section && !name.is_empty() && t.starts_with(name) {
            let rest = t[name.len()..].trim_start_matches(['"', '\'']);
            if rest.starts_with(':') {
                return format!("{}:", i + 1);
            }
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "(?s).{0,200}") {
            let _ = check(Path::new("f.yaml"), &text);
        }

        #[test]
        fn mangled_example_never_panics(cut in 0usize..4000, junk in "[ :{}\\[\\],'\"a-z0-9/\n-]{0,8}") {
            let text = include_str!("../../examples/fabric.yaml");
            let cut = (0..=cut.min(text.len())).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            let mangled = format!("{}{junk}{}", &text[..cut], &text[cut..]);
            let _ = check(Path::new("f.yaml"), &mangled);
        }
    }

    #[test]
    fn points_at_lines() {
        let text = "switches:\n  leaf1: {address: \"a:1\", device_id: 1, role: leaf, label: 5}\n";
        let d = check(Path::new("f.yaml"), text);
        assert_eq!(d.problems.len(), 1, "{:?}", d.problems);
        assert!(
            d.problems[0].starts_with("f.yaml:2: switches/leaf1: label 5"),
            "{:?}",
            d.problems
        );

        let d = check(
            Path::new("f.yaml"),
            "switches:\n  leaf1: {address: 1, role: lief}\n",
        );
        assert!(d.problems[0].starts_with("f.yaml:2:"), "{:?}", d.problems);

        let d = check(
            Path::new("f.yaml"),
            "vlans:\n  10: {}\nports:\n  \"x/3\": {mode: access, vlan: 10, colour: red}\n",
        );
        assert!(
            d.problems
                .iter()
                .any(|p| p.starts_with("f.yaml:4: ports/x/3: unknown field")),
            "{:?}",
            d.problems
        );
    }
}
