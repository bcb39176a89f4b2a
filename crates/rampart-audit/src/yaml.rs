//! YAML OpenAPI documents, read as JSON values.
//!
//! Defends the auditor against the document it is reading: the target chose every byte of
//! it. YAML aliases repeat a node by reference, so a few hundred bytes can stand for billions
//! of nodes (the "billion laughs"), and a loader that copies them runs out of memory. Before
//! anything is built, one pass over the parser's events counts the nodes the document stands
//! for, aliases expanded, and how deep it nests; past [`MAX_NODES`] or [`MAX_DEPTH`] it is
//! refused. Parsing is `yaml-rust2` (pure Rust, maintained; `serde_yaml` is archived and
//! `serde_yml` carries an advisory).

use serde_json::Value;
use yaml_rust2::parser::{Event, EventReceiver, Parser};
use yaml_rust2::{Yaml, YamlLoader};

/// Nodes a document may stand for, aliases expanded: far above any real API description.
const MAX_NODES: u64 = 500_000;
/// Nesting a document may have (serde_json's own limit is 128).
const MAX_DEPTH: usize = 64;

/// `text` as a JSON value; `None` when it is not YAML, is empty, or is refused as too large.
pub(crate) fn to_json(text: &str) -> Option<Value> {
    if !within_bounds(text) {
        return None;
    }
    let docs = YamlLoader::load_from_str(text).ok()?;
    let first = docs.into_iter().next()?;
    Some(convert(&first, 0))
}

/// Counts nodes (aliases at the size of what they repeat) and depth without building them.
#[derive(Default)]
struct Measure {
    /// Open collections: their anchor and the nodes counted inside so far.
    open: Vec<(usize, u64)>,
    /// Expanded size of each anchored node, by anchor id.
    anchored: std::collections::HashMap<usize, u64>,
    total: u64,
    too_big: bool,
}

impl Measure {
    fn add(&mut self, nodes: u64) {
        match self.open.last_mut() {
            Some((_, inside)) => *inside = inside.saturating_add(nodes),
            None => self.total = self.total.saturating_add(nodes),
        }
        let everything = self
            .open
            .iter()
            .fold(self.total, |sum, (_, inside)| sum.saturating_add(*inside));
        if everything > MAX_NODES {
            self.too_big = true;
        }
    }
}

impl EventReceiver for Measure {
    fn on_event(&mut self, event: Event) {
        if self.too_big {
            return;
        }
        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.open.push((anchor, 1));
                if self.open.len() > MAX_DEPTH {
                    self.too_big = true;
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, inside)) = self.open.pop() {
                    if anchor > 0 {
                        self.anchored.insert(anchor, inside);
                    }
                    self.add(inside);
                }
            }
            Event::Scalar(_, _, anchor, _) => {
                if anchor > 0 {
                    self.anchored.insert(anchor, 1);
                }
                self.add(1);
            }
            Event::Alias(anchor) => {
                let repeated = self.anchored.get(&anchor).copied().unwrap_or(1);
                self.add(repeated);
            }
            _ => {}
        }
    }
}

fn within_bounds(text: &str) -> bool {
    let mut measure = Measure::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut measure, false).is_ok() && !measure.too_big
}

fn convert(node: &Yaml, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    match node {
        Yaml::Real(text) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(text.clone()), Value::Number),
        Yaml::Integer(n) => Value::from(*n),
        Yaml::String(text) => Value::String(text.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => items.iter().map(|i| convert(i, depth + 1)).collect(),
        Yaml::Hash(entries) => entries
            .iter()
            .filter_map(|(key, value)| {
                let key = match key {
                    Yaml::String(k) | Yaml::Real(k) => k.clone(),
                    Yaml::Integer(n) => n.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => return None,
                };
                Some((key, convert(value, depth + 1)))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
        Yaml::Null | Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_openapi_document_in_yaml_reads_as_its_json() {
        let text = "openapi: 3.0.1\ninfo: {title: t, version: '1'}\npaths:\n  /users/v1/{username}:\n    get:\n      parameters:\n        - name: username\n          in: path\n      responses:\n        '200': {description: ok}\n";
        let doc = to_json(text).unwrap();
        assert_eq!(doc["openapi"], "3.0.1");
        assert_eq!(
            doc["paths"]["/users/v1/{username}"]["get"]["parameters"][0]["in"],
            "path"
        );
        assert_eq!(
            doc["paths"]["/users/v1/{username}"]["get"]["responses"]["200"]["description"],
            "ok"
        );
    }

    use std::fmt::Write as _;

    #[test]
    fn ordinary_anchors_are_read_but_alias_bombs_and_deep_nesting_are_refused() {
        let shared = "a: &x {type: string}\nb: *x\nc: *x\n";
        assert_eq!(to_json(shared).unwrap()["c"]["type"], "string");

        // Nine levels of ten aliases each: a billion strings from a few hundred bytes.
        let mut bomb = String::from("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for level in 1..9 {
            let prev = format!("*l{}", level - 1);
            let row = [prev.as_str(); 10].join(", ");
            writeln!(bomb, "l{level}: &l{level} [{row}]").unwrap();
        }
        assert!(bomb.len() < 1000);
        assert!(to_json(&bomb).is_none());

        let deep = format!("{}x{}", "[".repeat(200), "]".repeat(200));
        assert!(to_json(&deep).is_none());
    }
}
