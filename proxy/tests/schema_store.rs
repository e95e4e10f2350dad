//! The schemas' side of the store, run against SQLite and against a real PostgreSQL
//! (`COURIER_TEST_POSTGRES_URL`, started by `scripts/test.sh`): versions, bounds, deletion,
//! audit entries, and a second proxy on the same store following a change.

mod common;

use std::future::Future;

use courier_proxy::schemas::SchemaRegistry;
use courier_proxy::store::{
    AuditEntry, Registered, SCHEMAS_SETTING, SchemaBounds, SchemaVersion, Store,
};
use courier_shared::{Event, ProblemKind};

const BOUNDS: SchemaBounds = SchemaBounds {
    max_versions: 3,
    max_types: 2,
};

/// A store at `url`, and its URL (a second store opened on it is a second proxy).
async fn sqlite() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("store.db").display());
    (url, dir)
}

/// Runs `case` on the URL of a fresh SQLite store and of a fresh PostgreSQL store.
async fn on_both<F, Fut>(case: F)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let (url, _dir) = sqlite().await;
    case(url).await;
    case(common::fresh_postgres_database("schemas").await).await;
}

fn audit(v: &SchemaVersion) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: "alice".into(),
        action: "schema.register".into(),
        target: format!("{}/{}", v.service, v.event_type),
        outcome: "ok".into(),
        before: None,
        after: Some(serde_json::json!({ "version": v.version })),
    }
}

async fn register(store: &Store, service: &str, ty: &str, schema: &str) -> Registered {
    store
        .register_schema(service, ty, schema, BOUNDS, audit)
        .await
        .unwrap()
}

fn saved(r: Registered) -> SchemaVersion {
    match r {
        Registered::Saved(v) => v,
        other => panic!("not saved: {other:?}"),
    }
}

#[tokio::test]
async fn versions_count_up_within_bounds_and_every_change_is_audited() {
    on_both(|url| async move {
        let store = Store::open(&url, 8).await.unwrap();
        let v1 = saved(register(&store, "billing", "order", r#"{"type":"object"}"#).await);
        let v2 = saved(register(&store, "billing", "order", r#"{"required":["a"]}"#).await);
        assert_eq!((v1.version, v2.version), (1, 2));
        assert_eq!(v2.created_by, "alice");
        let generation = store
            .setting(SCHEMAS_SETTING)
            .await
            .unwrap()
            .unwrap()
            .version;
        assert_eq!(generation, 2, "each registration bumps the generation");
        let versions = store
            .schema_versions("billing", "order", None)
            .await
            .unwrap();
        assert_eq!(versions.len(), 2);
        assert_eq!(versions[1].schema, r#"{"required":["a"]}"#);
        let one = store
            .schema_versions("billing", "order", Some(1))
            .await
            .unwrap();
        assert_eq!(one[0].schema, r#"{"type":"object"}"#);

        saved(register(&store, "billing", "order", "{}").await);
        assert_eq!(
            register(&store, "billing", "order", "{}").await,
            Registered::TooManyVersions
        );
        saved(register(&store, "billing", "refund", "{}").await);
        assert_eq!(
            register(&store, "shipping", "x", "{}").await,
            Registered::TooManyTypes
        );

        // Deleting frees the type's room, and its numbers stay taken.
        let entry = AuditEntry {
            action: "schema.delete".into(),
            ..audit(&v1)
        };
        assert_eq!(
            store
                .delete_schemas("billing", "order", &entry)
                .await
                .unwrap(),
            3
        );
        assert_eq!(
            store
                .delete_schemas("billing", "order", &entry)
                .await
                .unwrap(),
            0
        );
        assert!(
            store
                .schema_versions("billing", "order", None)
                .await
                .unwrap()
                .is_empty()
        );
        let keys = store.schema_keys().await.unwrap();
        assert_eq!(keys.len(), 1, "only billing/refund is left: {keys:?}");
        let again = saved(register(&store, "billing", "order", "{}").await);
        assert_eq!(
            again.version, 4,
            "a version number names one schema for ever"
        );

        let log = store.audit_log(0, Some("schema."), 100).await.unwrap();
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            [
                "schema.register",
                "schema.delete",
                "schema.register",
                "schema.register",
                "schema.register",
                "schema.register"
            ],
            "one entry per change, none for refusals or a deletion of nothing"
        );
        assert_eq!(log[0].after.as_ref().unwrap()["version"], 4);
    })
    .await;
}

fn order(data: &str) -> Event {
    Event::from_json(
        format!(
            r#"{{"specversion":"1.0","id":"1","source":"/billing","type":"order","data":{data}}}"#
        )
        .as_bytes(),
    )
    .unwrap()
}

#[tokio::test]
async fn a_proxy_on_the_same_store_follows_schema_changes() {
    on_both(|url| async move {
        let here = Store::open(&url, 8).await.unwrap();
        let there = Store::open(&url, 8).await.unwrap();
        let registry = SchemaRegistry::new();
        registry.reload(&there).await.unwrap();
        assert_eq!(
            registry.check("billing", &order("1"), true).unwrap(),
            None,
            "no schema yet"
        );

        saved(
            register(
                &here,
                "billing",
                "order",
                r#"{"type":"object","required":["amount"]}"#,
            )
            .await,
        );
        registry.reload(&there).await.unwrap();
        let err = registry.check("billing", &order("{}"), true).unwrap_err();
        assert_eq!(err.kind, ProblemKind::SchemaViolation);
        assert!(
            registry
                .check("billing", &order(r#"{"amount":1}"#), true)
                .is_ok()
        );

        // The policy saved through the other store is followed too.
        let policy = r#"{"on_invalid":{"billing":"error-topic"}}"#;
        let current = there
            .setting(SCHEMAS_SETTING)
            .await
            .unwrap()
            .unwrap()
            .version;
        let entry = AuditEntry {
            action: "schema.policy".into(),
            ..audit(&saved(Registered::Saved(SchemaVersion {
                service: "billing".into(),
                event_type: "order".into(),
                version: 0,
                schema: String::new(),
                created_ms: 0,
                created_by: String::new(),
            })))
        };
        assert!(
            here.save_setting(SCHEMAS_SETTING, policy, current, &entry)
                .await
                .unwrap()
                .is_some()
        );
        registry.reload(&there).await.unwrap();
        assert!(matches!(
            registry.check("billing", &order("{}"), true).unwrap(),
            Some(courier_proxy::schemas::Annotation::Violation { .. })
        ));

        here.delete_schemas("billing", "order", &entry)
            .await
            .unwrap();
        registry.reload(&there).await.unwrap();
        assert_eq!(
            registry.check("billing", &order("{}"), true).unwrap(),
            None,
            "deleted: unchecked"
        );
    })
    .await;
}
