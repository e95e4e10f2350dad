//! The audit log of every admin action: who, what, on what, with what outcome, and the
//! state before and after.

use sqlx::Row as _;

use super::{Backend, Store, StoreError, now_ms};

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

impl Store {
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
