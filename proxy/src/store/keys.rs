//! The API keys of the publish endpoints, kept in the store's database beside the policy so
//! every proxy sharing it knows the same keys. Only hashes are stored; every change is written
//! in one transaction with its audit entry.

use super::{AUDIT_INSERT, AuditEntry, Backend, Store, StoreError, bind_audit, now_ms};

/// A key as stored: its hashes and its history, never the key itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Stable id (the key's name in the admin API).
    pub id: String,
    /// The service the key speaks for.
    pub service: String,
    /// An operator's note (who holds it, what for).
    pub label: String,
    /// SHA-256 of the current secret, lowercase hex.
    pub key_hash: String,
    /// The secret's last four characters, to tell keys apart.
    pub last4: String,
    /// SHA-256 of the secret before the last rotation, accepted until `previous_until_ms`.
    pub previous_hash: Option<String>,
    /// End of the previous secret's grace period (ms since the epoch).
    pub previous_until_ms: Option<i64>,
    /// Created (ms since the epoch).
    pub created_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Last rotation (ms since the epoch).
    pub rotated_ms: Option<i64>,
    /// Revocation (ms since the epoch): refused from then on.
    pub revoked_ms: Option<i64>,
}

/// A key to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewApiKey {
    /// Its id.
    pub id: String,
    /// The service it speaks for.
    pub service: String,
    /// An operator's note.
    pub label: String,
    /// SHA-256 of the secret, lowercase hex.
    pub key_hash: String,
    /// The secret's last four characters.
    pub last4: String,
    /// Who creates it.
    pub created_by: String,
}

const COLUMNS: &str = "id, service, label, key_hash, last4, previous_hash, previous_until_ms, \
                       created_ms, created_by, rotated_ms, revoked_ms";

fn api_key<R>(row: &R) -> Result<ApiKey, sqlx::Error>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'d> String: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> Option<String>: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> i64: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
    for<'d> Option<i64>: sqlx::Decode<'d, R::Database> + sqlx::Type<R::Database>,
{
    Ok(ApiKey {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        label: row.try_get("label")?,
        key_hash: row.try_get("key_hash")?,
        last4: row.try_get("last4")?,
        previous_hash: row.try_get("previous_hash")?,
        previous_until_ms: row.try_get("previous_until_ms")?,
        created_ms: row.try_get("created_ms")?,
        created_by: row.try_get("created_by")?,
        rotated_ms: row.try_get("rotated_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}

impl Store {
    /// Every key, oldest first; revoked ones only when `revoked`.
    pub async fn api_keys(&self, revoked: bool) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE (? OR revoked_ms IS NULL) \
             ORDER BY created_ms, id"
        );
        let sql = self.sql(&sql);
        on_pool!(self.backend, pool => {
            Ok(sqlx::query(&sql)
                .bind(revoked)
                .fetch_all(pool)
                .await?
                .iter()
                .map(api_key)
                .collect::<Result<_, _>>()?)
        })
    }

    /// One key, revoked or not.
    pub async fn api_key(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let sql = self.sql(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?"));
        on_pool!(self.backend, pool => {
            Ok(sqlx::query(&sql)
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(api_key)
                .transpose()?)
        })
    }

    /// Creates a key and writes its audit entry, in one transaction.
    pub async fn create_api_key(
        &self,
        key: &NewApiKey,
        audit: &AuditEntry,
    ) -> Result<ApiKey, StoreError> {
        let now = now_ms();
        let insert = self.sql(
            "INSERT INTO api_keys (id, service, label, key_hash, last4, created_ms, created_by) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        );
        let audit_sql = self.sql(AUDIT_INSERT);
        on_pool!(self.backend, pool => {
            in_transaction!(pool, conn => {
                sqlx::query(&insert)
                    .bind(&key.id).bind(&key.service).bind(&key.label).bind(&key.key_hash)
                    .bind(&key.last4).bind(now).bind(&key.created_by)
                    .execute(&mut *conn).await?;
                bind_audit(sqlx::query(&audit_sql), audit, now).execute(&mut *conn).await?;
            });
        });
        Ok(ApiKey {
            id: key.id.clone(),
            service: key.service.clone(),
            label: key.label.clone(),
            key_hash: key.key_hash.clone(),
            last4: key.last4.clone(),
            previous_hash: None,
            previous_until_ms: None,
            created_ms: now,
            created_by: key.created_by.clone(),
            rotated_ms: None,
            revoked_ms: None,
        })
    }

    /// Gives a key that is not revoked a new secret; the old one is accepted until
    /// `previous_until_ms` (`None` or a past time: not at all). Writes the audit entry in the
    /// same transaction. `None` when there is no such key, or it is revoked.
    pub async fn rotate_api_key(
        &self,
        id: &str,
        key_hash: &str,
        last4: &str,
        previous_until_ms: Option<i64>,
        audit: &AuditEntry,
    ) -> Result<Option<ApiKey>, StoreError> {
        let now = now_ms();
        let update = self.sql(
            "UPDATE api_keys SET previous_hash = key_hash, previous_until_ms = ?, \
             key_hash = ?, last4 = ?, rotated_ms = ? WHERE id = ? AND revoked_ms IS NULL",
        );
        let audit_sql = self.sql(AUDIT_INSERT);
        let changed = on_pool!(self.backend, pool => {
            in_transaction!(pool, conn => {
                let changed = sqlx::query(&update)
                    .bind(previous_until_ms).bind(key_hash).bind(last4).bind(now).bind(id)
                    .execute(&mut *conn).await?.rows_affected();
                if changed > 0 {
                    bind_audit(sqlx::query(&audit_sql), audit, now).execute(&mut *conn).await?;
                }
                changed
            })
        });
        if changed == 0 {
            return Ok(None);
        }
        self.api_key(id).await
    }

    /// Revokes a key (and any previous secret still in its grace period), with its audit
    /// entry in the same transaction. `None` when there is no such key or it was revoked
    /// already.
    pub async fn revoke_api_key(
        &self,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<Option<ApiKey>, StoreError> {
        let now = now_ms();
        let update = self.sql(
            "UPDATE api_keys SET revoked_ms = ?, previous_hash = NULL, previous_until_ms = NULL \
             WHERE id = ? AND revoked_ms IS NULL",
        );
        let audit_sql = self.sql(AUDIT_INSERT);
        let changed = on_pool!(self.backend, pool => {
            in_transaction!(pool, conn => {
                let changed = sqlx::query(&update)
                    .bind(now).bind(id)
                    .execute(&mut *conn).await?.rows_affected();
                if changed > 0 {
                    bind_audit(sqlx::query(&audit_sql), audit, now).execute(&mut *conn).await?;
                }
                changed
            })
        });
        if changed == 0 {
            return Ok(None);
        }
        self.api_key(id).await
    }
}
