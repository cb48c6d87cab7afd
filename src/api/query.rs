//! Query strings in Stripe's bracket notation: `a[0]=x`, `a[]=x`, repeated `a=x`, `o[k]=v`,
//! with brackets raw or percent-encoded. Parameters are taken by name; leftovers are errors.

use std::collections::BTreeMap;

use percent_encoding::percent_decode_str;

use super::error::FieldError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Scalar(String),
    List(Vec<(Option<usize>, String)>),
    Map(BTreeMap<String, String>),
}

#[derive(Debug, Default)]
pub struct Query {
    params: BTreeMap<String, Value>,
    pub errors: Vec<FieldError>,
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let mut q = Query::default();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            q.add(&decode(k), decode(v));
        }
        q
    }

    /// The parameters a page token carries (as `own` parsers return them: strings, arrays of
    /// strings, objects of strings), back in query form so they are parsed and checked again
    /// exactly like a first request's. `None` when the JSON has any other shape.
    pub fn from_params(params: &serde_json::Value) -> Option<Self> {
        use serde_json::Value as Json;
        let mut q = Query::default();
        for (name, value) in params.as_object()? {
            let v = match value {
                Json::String(s) => Value::Scalar(s.clone()),
                Json::Array(items) => Value::List(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Some((Some(i), v.as_str()?.to_owned())))
                        .collect::<Option<_>>()?,
                ),
                Json::Object(m) => Value::Map(
                    m.iter()
                        .map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                        .collect::<Option<_>>()?,
                ),
                _ => return None,
            };
            q.params.insert(name.clone(), v);
        }
        Some(q)
    }

    fn error(&mut self, path: &str, message: &str) {
        self.errors.push(FieldError {
            path: path.to_owned(),
            message: message.to_owned(),
        });
    }

    fn add(&mut self, key: &str, value: String) {
        let (name, sub) = match key.find('[') {
            Some(open) if key.ends_with(']') => (&key[..open], Some(&key[open + 1..key.len() - 1])),
            _ => (key, None),
        };
        if sub.is_some_and(|s| s.contains('[') || s.contains(']')) {
            return self.error(key, "Nested parameters are not supported.");
        }
        let entry = self.params.remove(name);
        let merged = match (entry, sub) {
            (None, None) => Value::Scalar(value),
            (Some(Value::Scalar(old)), None) => Value::List(vec![(None, old), (None, value)]),
            (Some(Value::List(mut l)), None) => {
                l.push((None, value));
                Value::List(l)
            }
            (prev, Some(s)) if s.is_empty() || s.bytes().all(|b| b.is_ascii_digit()) => {
                let index = s.parse::<usize>().ok();
                let mut l = match prev {
                    None => Vec::new(),
                    Some(Value::List(l)) => l,
                    Some(Value::Scalar(old)) => vec![(None, old)],
                    Some(Value::Map(_)) => {
                        return self.error(name, "Mixes an array and an object.");
                    }
                };
                l.push((index, value));
                Value::List(l)
            }
            (None, Some(s)) => Value::Map(BTreeMap::from([(s.to_owned(), value)])),
            (Some(Value::Map(mut m)), Some(s)) => {
                m.insert(s.to_owned(), value);
                Value::Map(m)
            }
            (Some(_), Some(_)) | (Some(Value::Map(_)), None) => {
                return self.error(name, "Mixes an array or value and an object.");
            }
        };
        self.params.insert(name.to_owned(), merged);
    }

    pub fn scalar(&mut self, name: &str) -> Option<String> {
        match self.params.remove(name)? {
            Value::Scalar(s) => Some(s),
            _ => {
                self.error(name, "Expected a single value.");
                None
            }
        }
    }

    /// An array parameter, ordered by its indexes (unindexed entries keep their order).
    pub fn list(&mut self, name: &str) -> Vec<String> {
        match self.params.remove(name) {
            None => Vec::new(),
            Some(Value::Scalar(s)) => vec![s],
            Some(Value::List(mut l)) => {
                l.sort_by_key(|(i, _)| i.unwrap_or(usize::MAX));
                l.into_iter().map(|(_, v)| v).collect()
            }
            Some(Value::Map(_)) => {
                self.error(name, "Expected an array.");
                Vec::new()
            }
        }
    }

    pub fn map(&mut self, name: &str) -> BTreeMap<String, String> {
        match self.params.remove(name) {
            None => BTreeMap::new(),
            Some(Value::Map(m)) => m,
            Some(_) => {
                self.error(name, "Expected an object, like name[key]=value.");
                BTreeMap::new()
            }
        }
    }

    /// Every parameter not taken is unknown.
    pub fn finish(mut self) -> Vec<FieldError> {
        let unknown: Vec<String> = self.params.keys().cloned().collect();
        for name in unknown {
            self.error(&name, "Unknown parameter.");
        }
        self.errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: &str, name: &str, expected: &[&str]) {
        let mut q = Query::parse(Some(raw));
        assert_eq!(q.list(name), expected, "{raw}");
        assert!(q.finish().is_empty(), "{raw}");
    }

    #[test]
    fn arrays_in_every_form() {
        check("include[0]=a&include[1]=b", "include", &["a", "b"]);
        check("include%5B0%5D=a&include%5B1%5D=b", "include", &["a", "b"]);
        check("include[1]=b&include[0]=a", "include", &["a", "b"]);
        check("include[]=a&include[]=b", "include", &["a", "b"]);
        check("include=a&include=b", "include", &["a", "b"]);
        check("include=a", "include", &["a"]);
        check(
            "types%5B0%5D=v2.core.event_destination.ping",
            "types",
            &["v2.core.event_destination.ping"],
        );
    }

    #[test]
    fn objects_and_unknowns() {
        let mut q = Query::parse(Some(
            "created[gte]=2026-01-01T00%3A00%3A00Z&created%5Blt%5D=x&bogus=1",
        ));
        let m = q.map("created");
        assert_eq!(
            m.get("gte").map(String::as_str),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(m.get("lt").map(String::as_str), Some("x"));
        let errors = q.finish();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "bogus");
    }
}
