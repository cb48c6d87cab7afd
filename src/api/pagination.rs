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

/// A page token: where the page starts, its size, the list it belongs to (`p`, the path) and the
/// list's parameters (`q`). Tokens are not secret and not signed: a client can write any token,
/// so decoding checks `p` against the path it arrives on and parses `q` again exactly like a
/// first request's parameters. A token can only ask for what the query string could have.
#[derive(Serialize, Deserialize)]
struct Token {
    /// `b`: older than `s`; `a`: newer than `s`.
    c: char,
    s: i64,
    l: usize,
    p: String,
    q: Value,
}

fn invalid_page() -> ApiError {
    ApiError::field("page", "The page token is invalid or has expired.")
}

/// Reads `page` (which then decides everything) or `limit` plus the list's own parameters,
/// parsed by `own` into a JSON value that page tokens carry (strings, arrays of strings and
/// objects of strings, which `own` parses again when they come back in a token).
pub fn parse(
    q: &mut Query,
    path: &str,
    own: impl FnOnce(&mut Query) -> Result<Value, ApiError>,
) -> Result<ListRequest, ApiError> {
    if let Some(token) = q.scalar("page") {
        let (cursor, limit, params) = decode(&token, path)?;
        let mut carried = Query::from_params(&params).ok_or_else(invalid_page)?;
        return Ok(ListRequest {
            cursor,
            limit,
            params: own(&mut carried)?,
        });
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

fn decode(token: &str, path: &str) -> Result<(Cursor, usize, Value), ApiError> {
    let body = token.strip_prefix("page_").ok_or_else(invalid_page)?;
    let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| invalid_page())?;
    let t: Token = serde_json::from_slice(&bytes).map_err(|_| invalid_page())?;
    let cursor = match t.c {
        'b' => Cursor::Before(t.s),
        'a' => Cursor::After(t.s),
        _ => return Err(invalid_page()),
    };
    if !(1..=MAX_LIMIT).contains(&t.l) || t.p != path {
        return Err(invalid_page());
    }
    Ok((cursor, t.l, t.q))
}

fn encode(c: char, seq: i64, path: &str, req: &ListRequest) -> String {
    let token = Token {
        c,
        s: seq,
        l: req.limit,
        p: path.to_owned(),
        q: req.params.clone(),
    };
    let bytes = serde_json::to_vec(&token).unwrap_or_default();
    format!("page_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The list envelope for `path`, with page URLs only where more objects exist.
pub fn envelope<T>(path: &str, data: Vec<Value>, page: &Page<T>, req: &ListRequest) -> Value {
    let url =
        |c: char, seq: Option<i64>| seq.map(|s| format!("{path}?page={}", encode(c, s, path, req)));
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
