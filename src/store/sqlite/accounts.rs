//! Accounts and API keys (stored as SHA-256 hashes, never in clear).

use rusqlite::{params, Connection, OptionalExtension};

use crate::domain::account::{Account, KeyOwner};
use crate::domain::Mode;
use crate::store::{hash_key, StoreError};

pub fn insert_account(
    c: &Connection,
    id: &str,
    parent: Option<&str>,
    now_ms: i64,
) -> Result<(), StoreError> {
    if let Some(parent) = parent {
        if get_account(c, parent)?.is_none() {
            return Err(StoreError::NotFound);
        }
    }
    c.prepare_cached("INSERT INTO accounts (id, parent_id, created_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![id, parent, now_ms])?;
    super::routes::changed(c)
}

pub fn insert_key(
    c: &Connection,
    account_id: &str,
    mode: Mode,
    secret: &str,
    now_ms: i64,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "INSERT OR IGNORE INTO api_keys (hash, account_id, livemode, created_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![hash_key(secret), account_id, mode.livemode(), now_ms])?;
    Ok(())
}

pub fn find_key(c: &Connection, secret: &str) -> Result<Option<KeyOwner>, StoreError> {
    let row = c
        .prepare_cached("SELECT account_id, livemode FROM api_keys WHERE hash = ?1")?
        .query_row([hash_key(secret)], |r| {
            Ok(KeyOwner {
                account_id: r.get(0)?,
                mode: Mode::from_livemode(r.get(1)?),
            })
        })
        .optional()?;
    Ok(row)
}

pub fn get_account(c: &Connection, id: &str) -> Result<Option<Account>, StoreError> {
    let row = c
        .prepare_cached("SELECT id, parent_id FROM accounts WHERE id = ?1")?
        .query_row([id], |r| {
            Ok(Account {
                id: r.get(0)?,
                parent_id: r.get(1)?,
            })
        })
        .optional()?;
    Ok(row)
}

pub fn list_accounts(c: &Connection) -> Result<Vec<Account>, StoreError> {
    let mut stmt =
        c.prepare_cached("SELECT id, parent_id FROM accounts ORDER BY created_ms, id")?;
    let rows = stmt.query_map([], |r| {
        Ok(Account {
            id: r.get(0)?,
            parent_id: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn first_root_account(c: &Connection) -> Result<Option<String>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT id FROM accounts WHERE parent_id IS NULL ORDER BY created_ms, id LIMIT 1",
        )?
        .query_row([], |r| r.get(0))
        .optional()?;
    Ok(row)
}
