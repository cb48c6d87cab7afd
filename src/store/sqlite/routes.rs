//! What every publish needs to route its event (the account's parent, the enabled destinations
//! of the account and of its parent), kept in memory between publishes. The cache is valid while
//! `route_version` holds the value it was read at: every write to destinations or accounts sets
//! a new random value in the same transaction, so a change by any connection (another process,
//! the `eventd accounts` command) or a rolled-back batch is noticed on the next publish.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{params, Connection};

use crate::domain::destination::{EventDestination, Status};
use crate::store::StoreError;

#[derive(Default)]
pub struct RouteCache {
    version: Option<i64>,
    parents: HashMap<String, Option<String>>,
    enabled: HashMap<(String, bool), Arc<Vec<EventDestination>>>,
}

/// Marks routing data as changed (inside the changing transaction).
pub fn changed(c: &Connection) -> Result<(), StoreError> {
    c.prepare_cached("UPDATE route_version SET version = random()")?
        .execute([])?;
    Ok(())
}

impl RouteCache {
    /// Drops what was cached if routing data changed since; call first in each transaction.
    pub fn check(&mut self, c: &Connection) -> Result<(), StoreError> {
        let version: i64 = c
            .prepare_cached("SELECT version FROM route_version")?
            .query_row([], |r| r.get(0))?;
        if self.version != Some(version) {
            self.parents.clear();
            self.enabled.clear();
            self.version = Some(version);
        }
        Ok(())
    }

    /// The account's parent (`None` for a root or unknown account).
    pub fn parent(
        &mut self,
        c: &Connection,
        account_id: &str,
    ) -> Result<Option<String>, StoreError> {
        if let Some(parent) = self.parents.get(account_id) {
            return Ok(parent.clone());
        }
        let parent = super::accounts::get_account(c, account_id)?.and_then(|a| a.parent_id);
        self.parents.insert(account_id.to_owned(), parent.clone());
        Ok(parent)
    }

    /// The account's enabled destinations in one mode.
    pub fn enabled(
        &mut self,
        c: &Connection,
        account_id: &str,
        livemode: bool,
    ) -> Result<Arc<Vec<EventDestination>>, StoreError> {
        let key = (account_id.to_owned(), livemode);
        if let Some(list) = self.enabled.get(&key) {
            return Ok(list.clone());
        }
        let mut stmt = c.prepare_cached(
            "SELECT body FROM event_destinations
             WHERE account_id = ?1 AND livemode = ?2 AND deleted = 0 AND status = ?3",
        )?;
        let rows = stmt.query_map(
            params![account_id, livemode, Status::Enabled.as_str()],
            |r| r.get::<_, String>(0),
        )?;
        let mut list = Vec::new();
        for body in rows {
            list.push(serde_json::from_str(&body?)?);
        }
        let list = Arc::new(list);
        self.enabled.insert(key, list.clone());
        Ok(list)
    }
}
