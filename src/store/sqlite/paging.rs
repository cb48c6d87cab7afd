//! Keyset pagination over a table's insertion sequence, newest first.

use rusqlite::types::Value;
use rusqlite::{params_from_iter, Connection};

use crate::store::{Cursor, Page, StoreError};

/// `base` is `FROM <table> WHERE <filters>`; rows yield `(seq, body)`.
pub fn fetch_page<T>(
    c: &Connection,
    base: &str,
    params: Vec<Value>,
    cursor: Cursor,
    limit: usize,
    decode: impl Fn(&str) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let (bound, order) = match cursor {
        Cursor::Start => (String::new(), "DESC"),
        Cursor::Before(s) => (format!(" AND seq < {s}"), "DESC"),
        Cursor::After(s) => (format!(" AND seq > {s}"), "ASC"),
    };
    let sql = format!(
        "SELECT seq, body {base}{bound} ORDER BY seq {order} LIMIT {}",
        limit + 1
    );
    let mut rows: Vec<(i64, String)> = c
        .prepare_cached(&sql)?
        .query_map(params_from_iter(params.iter()), |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    if matches!(cursor, Cursor::After(_)) {
        rows.reverse();
    }
    let first_seq = rows.first().map(|r| r.0);
    let last_seq = rows.last().map(|r| r.0);
    let exists = |cond: String| -> Result<bool, StoreError> {
        let sql = format!("SELECT EXISTS (SELECT 1 {base} AND {cond})");
        Ok(c.prepare_cached(&sql)?
            .query_row(params_from_iter(params.iter()), |r| r.get(0))?)
    };
    let (has_newer, has_older) = match (cursor, first_seq, last_seq) {
        (_, None, _) | (_, _, None) => (false, false),
        (Cursor::Start, _, _) => (false, more),
        (Cursor::Before(_), Some(first), _) => (exists(format!("seq > {first}"))?, more),
        (Cursor::After(_), _, Some(last)) => (more, exists(format!("seq < {last}"))?),
    };
    let items = rows
        .iter()
        .map(|(_, body)| decode(body))
        .collect::<Result<Vec<T>, StoreError>>()?;
    Ok(Page {
        items,
        first_seq,
        last_seq,
        has_newer,
        has_older,
    })
}
