//! Unknown keys: every key no reader asked for is reported, with the
//! closest valid key (as a variable name when it came from one).

use std::collections::BTreeSet;

use figment::value::{Dict, Value};

use super::check::{Checker, Path};
use super::load::{Origin, Origins};
use super::values::{edit_distance, shown};

impl Checker<'_> {
    /// Reports every key no reader asked for, and every table that is not one.
    pub(super) fn unknown_keys(&mut self) {
        let mut found = Vec::new();
        walk(
            self.root,
            &mut Vec::new(),
            &self.known,
            &self.sections,
            &mut found,
        );
        for (at, value, is_table) in found {
            let message = if is_table {
                format!("expected a table of settings, got {}", shown(value))
            } else {
                self.unknown_key_message(&at, value)
            };
            self.report(&at, Some(value), message);
        }
    }

    /// "did you mean" the closest valid key: one a few edits away, or one
    /// with the same name in another table (`kafka.linger` → `source.linger`);
    /// otherwise the valid keys of the table.
    fn unknown_key_message(&self, at: &[String], value: &Value) -> String {
        let valid: BTreeSet<&[String]> = self
            .known
            .iter()
            .chain(&self.sections)
            .flat_map(|k| (1..=k.len()).map(move |n| &k[..n]))
            .collect();
        let dotted = at.join(".");
        let best = valid
            .iter()
            .map(|k| (edit_distance(&dotted, &k.join(".")), k))
            .filter(|(d, k)| *d <= 2.max(dotted.len() / 4) || k.last() == at.last())
            .min_by_key(|(d, _)| *d);
        match best {
            Some((_, k)) if self.origins.origin(value) == Origin::Env => {
                format!("unknown setting; did you mean {}?", Origins::env_name(k))
            }
            Some((_, k)) => format!("unknown key; did you mean {}?", k.join(".")),
            None => {
                let parent = &at[..at.len() - 1];
                let here: BTreeSet<&str> = valid
                    .iter()
                    .filter(|k| k.len() == parent.len() + 1 && k.starts_with(parent))
                    .map(|k| k[parent.len()].as_str())
                    .collect();
                let here: Vec<&str> = here.into_iter().collect();
                format!("unknown key; expected one of {}", here.join(", "))
            }
        }
    }
}

/// Collects `(path, value, expected_table)` for each key under `dict`
/// that is neither read nor a table holding read keys.
fn walk<'v>(
    dict: &'v Dict,
    prefix: &mut Path,
    known: &BTreeSet<Path>,
    sections: &BTreeSet<Path>,
    found: &mut Vec<(Path, &'v Value, bool)>,
) {
    for (key, value) in dict {
        prefix.push(key.clone());
        let is_section = sections.contains(prefix)
            || known
                .iter()
                .any(|k| k.len() > prefix.len() && k.starts_with(prefix));
        match value {
            _ if known.contains(prefix) => {}
            Value::Dict(_, inner) if is_section => walk(inner, prefix, known, sections, found),
            other => found.push((prefix.clone(), other, is_section)),
        }
        prefix.pop();
    }
}
