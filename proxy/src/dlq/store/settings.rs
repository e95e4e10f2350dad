//! Settings the admin API changes at runtime (the topic policy), versioned so that proxies
//! sharing the store follow each other, and the audit log of every admin action.

use sqlx::Row as _;

use super::{Backend, DlqStore, StoreError, now_ms};

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

/// One admin action.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Store-wide sequence number (0 before it is written).
    pub seq: i64,
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// Who.
    pub actor: String,
    /// What, e.g. `topic.create`.
    pub action: String,
    /// On what, e.g. the topic name.
    pub target: String,
    /// `ok`, or the error.
    pub outcome: String,
    /// The state before, when there was one: any JSON, its shape depends on the action.
    #[schema(required = true)]
    pub before: Option<serde_json::Value>,
    /// The state after, when there is one: any JSON, its shape depends on the action.
    #[schema(required = true)]
    pub after: Option<serde_json::Value>,
}

impl DlqStore {
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

    /// Appends to the audit log.
    pub async fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let sql = self.sql(AUDIT_INSERT);
        on_pool!(self.backend, pool => {
            bind_audit(sqlx::query(&sql), entry, now_ms()).execute(pool).await?;
        });
        Ok(())
    }

    /// Audit entries, newest first, before `before_seq` (0: from the newest), optionally
    /// only those whose action starts with `action`.
    pub async fn audit_log(
        &self,
        before_seq: i64,
        action: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = self.sql(
            "SELECT seq, at_ms, actor, action, target, outcome, before_json, after_json \
             FROM audit_log WHERE (? = 0 OR seq < ?) AND action LIKE ? || '%' \
             ORDER BY seq DESC LIMIT ?",
        );
        let action = action.unwrap_or("");
        on_pool!(self.backend, pool => {
            sqlx::query(&sql)
                .bind(before_seq).bind(before_seq).bind(action).bind(limit)
                .fetch_all(pool).await?
                .iter()
                .map(|row| {
                    let json = |column: &str| -> Result<Option<serde_json::Value>, StoreError> {
                        let text: Option<String> = row.try_get(column)?;
                        Ok(text.and_then(|t| serde_json::from_str(&t).ok()))
                    };
                    Ok(AuditEntry {
                        seq: row.try_get("seq")?,
                        at_ms: row.try_get("at_ms")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        target: row.try_get("target")?,
                        outcome: row.try_get("outcome")?,
                        before: json("before_json")?,
                        after: json("after_json")?,
                    })
                })
                .collect()
        })
    }
}

pub(super) const AUDIT_INSERT: &str = "INSERT INTO audit_log \
    (at_ms, actor, action, target, outcome, before_json, after_json) \
    VALUES (?, ?, ?, ?, ?, ?, ?)";

pub(super) fn bind_audit<'q, DB: sqlx::Database>(
    q: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    e: &'q AuditEntry,
    now: i64,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
    q.bind(now)
        .bind(e.actor.as_str())
        .bind(e.action.as_str())
        .bind(e.target.as_str())
        .bind(e.outcome.as_str())
        .bind(text(&e.before))
        .bind(text(&e.after))
}
