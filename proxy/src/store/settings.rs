//! Settings the admin API changes at runtime (the topic policy), versioned so that proxies
//! sharing the store follow each other. A change is saved with its audit entry
//! ([`super::audit`]).

use sqlx::Row as _;

use super::{AUDIT_INSERT, AuditEntry, Backend, Store, StoreError, bind_audit, now_ms};

/// A setting saved by the admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Its value (JSON).
    pub value: String,
    /// Incremented on every change; proxies sharing a store poll it.
    pub version: i64,
    /// When it was last changed (ms since the epoch).
    pub updated_ms: i64,
    /// Who changed it.
    pub updated_by: String,
}
impl Store {
    /// A setting, if it was ever saved.
    pub async fn setting(&self, name: &str) -> Result<Option<Setting>, StoreError> {
        let sql =
            self.sql("SELECT value, version, updated_ms, updated_by FROM settings WHERE name = ?");
        on_pool!(self.backend, pool => {
            let Some(row) = sqlx::query(&sql).bind(name).fetch_optional(pool).await? else {
                return Ok(None);
            };
            Ok(Some(Setting {
                value: row.try_get("value")?,
                version: row.try_get("version")?,
                updated_ms: row.try_get("updated_ms")?,
                updated_by: row.try_get("updated_by")?,
            }))
        })
    }

    /// Saves a setting and its audit entry in one transaction, provided its version is still
    /// `expected_version` (0: never saved). Returns the new version, or `None` when someone
    /// else changed it first.
    pub async fn save_setting(
        &self,
        name: &str,
        value: &str,
        expected_version: i64,
        audit: &AuditEntry,
    ) -> Result<Option<i64>, StoreError> {
        let now = now_ms();
        let version = expected_version + 1;
        let update = self.sql(
            "UPDATE settings SET value = ?, version = ?, updated_ms = ?, updated_by = ? \
             WHERE name = ? AND version = ?",
        );
        let insert = self.sql(
            "INSERT INTO settings (name, value, version, updated_ms, updated_by) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO NOTHING",
        );
        let audit_sql = self.sql(AUDIT_INSERT);
        on_pool!(self.backend, pool => {
            let changed = in_transaction!(pool, conn => {
                let changed = if expected_version == 0 {
                    sqlx::query(&insert)
                        .bind(name).bind(value).bind(version).bind(now).bind(&audit.actor)
                        .execute(&mut *conn).await?.rows_affected()
                } else {
                    sqlx::query(&update)
                        .bind(value).bind(version).bind(now).bind(&audit.actor)
                        .bind(name).bind(expected_version)
                        .execute(&mut *conn).await?.rows_affected()
                };
                // Someone else saved first: nothing changed, nothing to audit.
                if changed > 0 {
                    bind_audit(sqlx::query(&audit_sql), audit, now).execute(&mut *conn).await?;
                }
                changed
            });
            Ok((changed > 0).then_some(version))
        })
    }
}
