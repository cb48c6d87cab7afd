//! Keyset pagination over a table's sequence, newest first (PostgreSQL flavour).

use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;

use crate::store::{Cursor, Page, StoreError};

pub type Param = Box<dyn ToSql + Sync + Send>;

/// `base` is `FROM <table> WHERE <filters with $1…>`; rows yield `(seq, body)`.
pub async fn fetch_page<C: GenericClient, T>(
    c: &C,
    base: &str,
    params: &[Param],
    cursor: Cursor,
    limit: usize,
    decode: impl Fn(&str) -> Result<T, StoreError>,
) -> Result<Page<T>, StoreError> {
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as _).collect();
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
        .query(&sql, &refs)
        .await?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let more = rows.len() > limit;
    rows.truncate(limit);
    if matches!(cursor, Cursor::After(_)) {
        rows.reverse();
    }
    let first_seq = rows.first().map(|r| r.0);
    let last_seq = rows.last().map(|r| r.0);
    let exists = |cond: String| {
        let sql = format!("SELECT EXISTS (SELECT 1 {base} AND {cond})");
        let refs = &refs;
        async move { Ok::<bool, StoreError>(c.query_one(&sql, refs).await?.get(0)) }
    };
    let (has_newer, has_older) = match (cursor, first_seq, last_seq) {
        (_, None, _) | (_, _, None) => (false, false),
        (Cursor::Start, _, _) => (false, more),
        (Cursor::Before(_), Some(first), _) => (exists(format!("seq > {first}")).await?, more),
        (Cursor::After(_), _, Some(last)) => (more, exists(format!("seq < {last}")).await?),
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
