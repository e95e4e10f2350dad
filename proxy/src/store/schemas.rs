//! The JSON Schemas of event data, per (service, type) in immutable versions, and the
//! per-service policy for events that do not match. Every change is written in one
//! transaction with its audit entry and a bump of the `schemas` settings row, whose version
//! proxies sharing the store poll to reload.

use sqlx::Row as _;

use super::{AUDIT_INSERT, AuditEntry, Backend, Store, StoreError, bind_audit, now_ms};

/// The settings row whose version counts schema changes and whose value is the policy.
pub const SCHEMAS_SETTING: &str = "schemas";

/// A registered schema version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The service whose events it checks.
    pub service: String,
    /// The CloudEvents `type` it checks.
    pub event_type: String,
    /// 1, 2, …: one more per registration of this (service, type).
    pub version: i64,
    /// The JSON Schema, as registered (empty when only the key was read).
    pub schema: String,
    /// When it was registered (ms since the epoch).
    pub created_ms: i64,
    /// Who registered it.
    pub created_by: String,
}

/// Bounds a registration must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaBounds {
    /// Most live versions of one (service, type).
    pub max_versions: i64,
    /// Most (service, type) pairs with live versions.
    pub max_types: i64,
}

/// What came of a registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Saved as this version.
    Saved(SchemaVersion),
    /// The (service, type) has as many versions as allowed.
    TooManyVersions,
    /// As many (service, type) pairs have schemas as allowed.
    TooManyTypes,
    /// Another registration of the same (service, type) took the version number first.
    Raced,
}

const BUMP: &str = "INSERT INTO settings (name, value, version, updated_ms, updated_by) \
    VALUES (?, '{}', 1, ?, ?) ON CONFLICT (name) DO UPDATE SET \
    version = settings.version + 1, updated_ms = excluded.updated_ms, \
    updated_by = excluded.updated_by";

impl Store {
    /// The live versions of every (service, type), without their schemas.
    pub async fn schema_keys(&self) -> Result<Vec<SchemaVersion>, StoreError> {
        let sql = "SELECT service, event_type, version, created_ms, created_by \
                   FROM event_schemas WHERE deleted_ms IS NULL \
                   ORDER BY service, event_type, version";
        on_pool!(self.backend, pool => {
            sqlx::query(sql)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok(SchemaVersion {
                        service: row.try_get("service")?,
                        event_type: row.try_get("event_type")?,
                        version: row.try_get("version")?,
                        schema: String::new(),
                        created_ms: row.try_get("created_ms")?,
                        created_by: row.try_get("created_by")?,
                    })
                })
                .collect()
        })
    }

    /// The live versions of one (service, type) with their schemas, oldest first; `version`
    /// narrows them to one.
    pub async fn schema_versions(
        &self,
        service: &str,
        event_type: &str,
        version: Option<i64>,
    ) -> Result<Vec<SchemaVersion>, StoreError> {
        let sql = self.sql(
            "SELECT service, event_type, version, schema_json, created_ms, created_by \
             FROM event_schemas WHERE service = ? AND event_type = ? AND deleted_ms IS NULL \
             AND (? = 0 OR version = ?) ORDER BY version",
        );
        let version = version.unwrap_or(0);
        on_pool!(self.backend, pool => {
            sqlx::query(&sql)
                .bind(service).bind(event_type).bind(version).bind(version)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok(SchemaVersion {
                        service: row.try_get("service")?,
                        event_type: row.try_get("event_type")?,
                        version: row.try_get("version")?,
                        schema: row.try_get("schema_json")?,
                        created_ms: row.try_get("created_ms")?,
                        created_by: row.try_get("created_by")?,
                    })
                })
                .collect()
        })
    }

    /// Registers `schema` as the next version of (service, type), within `bounds`, with the
    /// audit entry `audit` makes of the version, in one transaction.
    pub async fn register_schema(
        &self,
        service: &str,
        event_type: &str,
        schema: &str,
        bounds: SchemaBounds,
        audit: impl FnOnce(&SchemaVersion) -> AuditEntry,
    ) -> Result<Registered, StoreError> {
        let now = now_ms();
        // Deleted versions keep their numbers: a number names one schema for ever.
        let numbers = self.sql(
            "SELECT COALESCE(MAX(version), 0) AS last, \
             COUNT(CASE WHEN deleted_ms IS NULL THEN 1 END) AS live \
             FROM event_schemas WHERE service = ? AND event_type = ?",
        );
        let types = "SELECT COUNT(*) AS n FROM \
                     (SELECT DISTINCT service, event_type FROM event_schemas \
                      WHERE deleted_ms IS NULL) AS live";
        let insert = self.sql(
            "INSERT INTO event_schemas \
             (service, event_type, version, schema_json, created_ms, created_by) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (service, event_type, version) DO NOTHING",
        );
        let bump = self.sql(BUMP);
        let audit_sql = self.sql(AUDIT_INSERT);
        let mut audit = Some(audit);
        on_pool!(self.backend, pool => {
            let outcome = in_transaction!(pool, conn => {
                let row = sqlx::query(&numbers)
                    .bind(service).bind(event_type)
                    .fetch_one(&mut *conn).await?;
                let last: i64 = row.try_get("last")?;
                let live: i64 = row.try_get("live")?;
                let n_types: i64 = if live == 0 {
                    sqlx::query(types).fetch_one(&mut *conn).await?.try_get("n")?
                } else {
                    0
                };
                if live >= bounds.max_versions {
                    Registered::TooManyVersions
                } else if live == 0 && n_types >= bounds.max_types {
                    Registered::TooManyTypes
                } else {
                    let saved = SchemaVersion {
                        service: service.to_owned(),
                        event_type: event_type.to_owned(),
                        version: last + 1,
                        schema: schema.to_owned(),
                        created_ms: now,
                        created_by: String::new(),
                    };
                    let entry = audit.take().map(|f| f(&saved));
                    let actor = entry.as_ref().map_or("", |e| e.actor.as_str());
                    let inserted = sqlx::query(&insert)
                        .bind(service).bind(event_type).bind(saved.version).bind(schema)
                        .bind(now).bind(actor)
                        .execute(&mut *conn).await?.rows_affected();
                    if inserted == 0 {
                        Registered::Raced
                    } else {
                        sqlx::query(&bump)
                            .bind(SCHEMAS_SETTING).bind(now).bind(actor)
                            .execute(&mut *conn).await?;
                        if let Some(entry) = &entry {
                            bind_audit(sqlx::query(&audit_sql), entry, now)
                                .execute(&mut *conn).await?;
                        }
                        Registered::Saved(SchemaVersion {
                            created_by: actor.to_owned(),
                            ..saved
                        })
                    }
                }
            });
            Ok(outcome)
        })
    }

    /// Deletes the live versions of (service, type) (their numbers stay taken), with the audit
    /// entry, in one transaction. Returns how many versions were deleted.
    pub async fn delete_schemas(
        &self,
        service: &str,
        event_type: &str,
        audit: &AuditEntry,
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let update = self.sql(
            "UPDATE event_schemas SET deleted_ms = ? \
             WHERE service = ? AND event_type = ? AND deleted_ms IS NULL",
        );
        let bump = self.sql(BUMP);
        let audit_sql = self.sql(AUDIT_INSERT);
        on_pool!(self.backend, pool => {
            let deleted = in_transaction!(pool, conn => {
                let deleted = sqlx::query(&update)
                    .bind(now).bind(service).bind(event_type)
                    .execute(&mut *conn).await?.rows_affected();
                if deleted > 0 {
                    sqlx::query(&bump)
                        .bind(SCHEMAS_SETTING).bind(now).bind(&audit.actor)
                        .execute(&mut *conn).await?;
                    bind_audit(sqlx::query(&audit_sql), audit, now).execute(&mut *conn).await?;
                }
                deleted
            });
            Ok(deleted)
        })
    }
}
