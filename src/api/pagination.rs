//! v2 list pagination: `limit`, opaque `page` tokens that carry the limit, filters and `include`,
//! and the `{data, next_page_url, previous_page_url}` envelope with origin-relative URLs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::ApiError;
use super::query::Query;
use crate::store::{Cursor, Page};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

/// What a list request asks for: where to start, how many, and the list's own parameters
/// (filters, `include`) as they will be carried in page tokens.
#[derive(Debug, Clone)]
pub struct ListRequest {
    pub cursor: Cursor,
    pub limit: usize,
    pub params: Value,
}

#[derive(Serialize, Deserialize)]
struct Token {
    /// `b`: older than `s`; `a`: newer than `s`.
    c: char,
    s: i64,
    l: usize,
    q: Value,
}

fn invalid_page() -> ApiError {
    ApiError::field("page", "The page token is invalid or has expired.")
}

/// Reads `page` (which then decides everything) or `limit` plus the list's own parameters,
/// parsed by `own` into a JSON value that page tokens carry.
pub fn parse(
    q: &mut Query,
    own: impl FnOnce(&mut Query) -> Result<Value, ApiError>,
) -> Result<ListRequest, ApiError> {
    if let Some(token) = q.scalar("page") {
        return decode(&token);
    }
    let limit = match q.scalar("limit") {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::field(
                    "limit",
                    format!("Must be an integer from 1 to {MAX_LIMIT}."),
                ))
            }
        },
    };
    Ok(ListRequest {
        cursor: Cursor::Start,
        limit,
        params: own(q)?,
    })
}

fn decode(token: &str) -> Result<ListRequest, ApiError> {
    let body = token.strip_prefix("page_").ok_or_else(invalid_page)?;
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid_page())?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| invalid_page())?;
    let cursor = match t.c {
        'b' => Cursor::Before(t.s),
        'a' => Cursor::After(t.s),
        _ => return Err(invalid_page()),
    };
    if !(1..=MAX_LIMIT).contains(&t.l) {
        return Err(invalid_page());
    }
    Ok(ListRequest {
        cursor,
        limit: t.l,
        params: t.q,
    })
}

fn encode(c: char, seq: i64, req: &ListRequest) -> String {
    let token = Token {
        c,
        s: seq,
        l: req.limit,
        q: req.params.clone(),
    };
    let bytes = serde_json::to_vec(&token).unwrap_or_default();
    format!("page_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The list envelope for `path`, with page URLs only where more objects exist.
pub fn envelope<T>(path: &str, data: Vec<Value>, page: &Page<T>, req: &ListRequest) -> Value {
    let url = |c: char, seq: Option<i64>| seq.map(|s| format!("{path}?page={}", encode(c, s, req)));
    let next = if page.has_older {
        url('b', page.last_seq)
    } else {
        None
    };
    let previous = if page.has_newer {
        url('a', page.first_seq)
    } else {
        None
    };
    json!({"data": data, "next_page_url": next, "previous_page_url": previous})
}
