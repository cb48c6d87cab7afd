//! Field-by-field validation of JSON bodies, collecting every error with its path.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::{ApiError, FieldError};

/// A body being validated: fields are taken by name, leftovers are unknown fields.
pub struct Fields {
    map: Map<String, Value>,
    pub errors: Vec<FieldError>,
}

pub const MAX_METADATA_KEYS: usize = 50;
pub const MAX_METADATA_KEY_CHARS: usize = 40;
pub const MAX_METADATA_VALUE_CHARS: usize = 500;

impl Fields {
    pub fn new(map: Map<String, Value>) -> Self {
        Fields {
            map,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Takes a field; JSON `null` counts as absent.
    pub fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    /// Takes a field that may be left out but never set to `null` (an update's `name`: `null`
    /// cannot mean "unchanged" without hiding a client's mistake).
    pub fn take_set(&mut self, name: &str) -> Option<Value> {
        match self.map.remove(name) {
            Some(Value::Null) => {
                self.error(
                    name,
                    "Must not be null; leave the field out to keep its value.",
                );
                None
            }
            v => v,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.map.contains_key(name)
    }

    pub fn required(&mut self, name: &str) -> Option<Value> {
        let v = self.take(name);
        if v.is_none() {
            self.error(name, "Required field is missing.");
        }
        v
    }

    pub fn string(&mut self, path: &str, v: Option<Value>, max_chars: usize) -> Option<String> {
        match v? {
            Value::String(s) if s.chars().count() > max_chars => {
                self.error(path, format!("Must be at most {max_chars} characters."));
                None
            }
            Value::String(s) => Some(s),
            _ => {
                self.error(path, "Expected a string.");
                None
            }
        }
    }

    pub fn non_empty_string(
        &mut self,
        path: &str,
        v: Option<Value>,
        max_chars: usize,
    ) -> Option<String> {
        let s = self.string(path, v, max_chars)?;
        if s.trim().is_empty() {
            self.error(path, "Must not be empty.");
            return None;
        }
        Some(s)
    }

    pub fn enumeration<'a>(
        &mut self,
        path: &str,
        v: Option<Value>,
        valid: &[&'a str],
    ) -> Option<&'a str> {
        let s = self.string(path, v, 200)?;
        match valid.iter().find(|x| **x == s) {
            Some(x) => Some(x),
            None => {
                self.error(
                    path,
                    format!(
                        "Unrecognized enum value '{s}', valid values are: {}.",
                        valid.join(", ")
                    ),
                );
                None
            }
        }
    }

    pub fn object(&mut self, path: &str, v: Option<Value>) -> Option<Map<String, Value>> {
        match v? {
            Value::Object(m) => Some(m),
            _ => {
                self.error(path, "Expected an object.");
                None
            }
        }
    }

    pub fn string_array(
        &mut self,
        path: &str,
        v: Option<Value>,
        max_items: usize,
        max_chars: usize,
    ) -> Option<Vec<String>> {
        let Value::Array(items) = v? else {
            self.error(path, "Expected an array of strings.");
            return None;
        };
        if items.len() > max_items {
            self.error(path, format!("Must have at most {max_items} items."));
            return None;
        }
        let before = self.errors.len();
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            match item {
                Value::String(s) if s.is_empty() => self.error(item_path, "Must not be empty."),
                Value::String(s) if s.chars().count() > max_chars => self.error(
                    item_path,
                    format!("Must be at most {max_chars} characters."),
                ),
                Value::String(s) if out.contains(&s) => {
                    self.error(item_path, format!("Duplicate value '{s}'."))
                }
                Value::String(s) => out.push(s),
                _ => self.error(item_path, "Expected a string."),
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// Metadata (reference §1.10). With `allow_null`, a `null` value (delete the key) is kept as `None`.
    pub fn metadata(
        &mut self,
        v: Option<Value>,
        allow_null: bool,
    ) -> Option<BTreeMap<String, Option<String>>> {
        let map = self.object("metadata", v)?;
        if map.len() > MAX_METADATA_KEYS {
            self.error(
                "metadata",
                format!("Must have at most {MAX_METADATA_KEYS} keys."),
            );
            return None;
        }
        let before = self.errors.len();
        let mut out = BTreeMap::new();
        for (k, v) in map {
            let path = format!("metadata.{k}");
            if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_CHARS {
                self.error(
                    path,
                    format!("Keys must be 1 to {MAX_METADATA_KEY_CHARS} characters."),
                );
                continue;
            }
            if k.contains('[') || k.contains(']') {
                self.error(path, "Keys must not contain '[' or ']'.");
                continue;
            }
            match v {
                Value::Null if allow_null => {
                    out.insert(k, None);
                }
                Value::String(s) if s.chars().count() > MAX_METADATA_VALUE_CHARS => self.error(
                    path,
                    format!("Values must be at most {MAX_METADATA_VALUE_CHARS} characters."),
                ),
                Value::String(s) => {
                    out.insert(k, Some(s));
                }
                _ if allow_null => self.error(path, "Expected a string or null."),
                _ => self.error(path, "Expected a string."),
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    /// Reports leftover (unknown) fields and turns collected errors into one 400.
    pub fn finish(mut self) -> Result<(), ApiError> {
        let unknown: Vec<String> = self.map.keys().cloned().collect();
        for name in unknown {
            self.error(name, "Unknown field.");
        }
        finish_errors(self.errors)
    }
}

pub fn finish_errors(errors: Vec<FieldError>) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidFields(errors))
    }
}

/// Sub-object fields are validated with their own `Fields`, whose errors are re-rooted under `prefix`.
pub fn nested(parent: &mut Fields, prefix: &str, child: Fields) {
    let mut child = child;
    let unknown: Vec<String> = child.map.keys().cloned().collect();
    for name in unknown {
        child.error(name, "Unknown field.");
    }
    for e in child.errors {
        parent.error(format!("{prefix}.{}", e.path), e.message);
    }
}
