//! Accounts and keys on PostgreSQL.

use super::{queries, PgStore};
use crate::domain::account::{Account, KeyOwner};
use crate::domain::{ids, Mode};
use crate::store::{CreatedAccount, StoreError};

impl PgStore {
    pub async fn create_account(
        &self,
        parent: Option<String>,
    ) -> Result<CreatedAccount, StoreError> {
        let now = self.clock.now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let account_id = ids::account();
        queries::insert_account(&tx, &account_id, parent.as_deref(), now).await?;
        let test_key = ids::secret_key(Mode::Test);
        let live_key = ids::secret_key(Mode::Live);
        queries::insert_key(&tx, &account_id, Mode::Test, &test_key, now).await?;
        queries::insert_key(&tx, &account_id, Mode::Live, &live_key, now).await?;
        tx.commit().await?;
        Ok(CreatedAccount {
            account_id,
            test_key,
            live_key,
        })
    }

    pub async fn create_keys(&self, account_id: String) -> Result<(String, String), StoreError> {
        let now = self.clock.now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        queries::get_account(&tx, &account_id)
            .await?
            .ok_or(StoreError::NotFound)?;
        let test = ids::secret_key(Mode::Test);
        let live = ids::secret_key(Mode::Live);
        queries::insert_key(&tx, &account_id, Mode::Test, &test, now).await?;
        queries::insert_key(&tx, &account_id, Mode::Live, &live, now).await?;
        tx.commit().await?;
        Ok((test, live))
    }

    /// Nodes starting together serialise on an advisory lock, so exactly one first account exists.
    pub async fn bootstrap(
        &self,
        keys: Option<(String, String)>,
    ) -> Result<(String, Option<CreatedAccount>), StoreError> {
        let now = self.clock.now_ms();
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&super::lock_id(&["bootstrap"])],
        )
        .await?;
        if let Some(account_id) = queries::first_root_account(&tx).await? {
            if let Some((test, live)) = &keys {
                queries::insert_key(&tx, &account_id, Mode::Test, test, now).await?;
                queries::insert_key(&tx, &account_id, Mode::Live, live, now).await?;
            }
            tx.commit().await?;
            return Ok((account_id, None));
        }
        let account_id = ids::account();
        queries::insert_account(&tx, &account_id, None, now).await?;
        let (test_key, live_key) =
            keys.unwrap_or_else(|| (ids::secret_key(Mode::Test), ids::secret_key(Mode::Live)));
        queries::insert_key(&tx, &account_id, Mode::Test, &test_key, now).await?;
        queries::insert_key(&tx, &account_id, Mode::Live, &live_key, now).await?;
        tx.commit().await?;
        let created = CreatedAccount {
            account_id: account_id.clone(),
            test_key,
            live_key,
        };
        Ok((account_id, Some(created)))
    }

    pub async fn find_key(&self, secret: String) -> Result<Option<KeyOwner>, StoreError> {
        queries::find_key(&self.client().await?, &secret).await
    }

    pub async fn get_account(&self, id: String) -> Result<Option<Account>, StoreError> {
        queries::get_account(&self.client().await?, &id).await
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        queries::list_accounts(&self.client().await?).await
    }
}
