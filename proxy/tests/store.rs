//! One test suite for the store (events, settings, audit, keys), run against SQLite and
//! against a real PostgreSQL (`COURIER_TEST_POSTGRES_URL`, started by `scripts/test.sh`). Each
//! PostgreSQL test gets a database of its own, so the tests run in parallel.

mod common;
#[path = "common/tmpfs.rs"]
mod tmpfs;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use courier_proxy::store::{AuditEntry, Filter, NewApiKey, NewEntry, State, Store, StoreError};
use courier_proxy::store::{Failure, now_ms};
use courier_shared::KafkaRecord;
use tmpfs::Tmpfs;

fn entry(id: &str, topic: &str, due_in_ms: i64) -> NewEntry {
    from_source("/svc", id, topic, due_in_ms)
}

fn from_source(source: &str, id: &str, topic: &str, due_in_ms: i64) -> NewEntry {
    NewEntry {
        event_id: id.to_owned(),
        event_source: source.to_owned(),
        topic: topic.to_owned(),
        record: KafkaRecord {
            key: Some(format!("key-{id}").into_bytes()),
            value: Some(vec![0, 159, 146, 150, b'{']),
            headers: vec![
                ("ce_id".into(), id.as_bytes().to_vec().into()),
                ("bin".into(), vec![0xff, 0, 1].into()),
            ],
        },
        error: "no acknowledgement".to_owned(),
        next_attempt_ms: now_ms() + due_in_ms,
    }
}

async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("dlq.db").display());
    (Store::open(&url, 64).await.unwrap(), dir)
}

async fn postgres() -> Store {
    Store::open(&common::fresh_postgres_database("dlq").await, 64)
        .await
        .unwrap()
}

/// Runs `case` on a fresh SQLite store and a fresh PostgreSQL store.
async fn on_both<F, Fut>(case: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let (store, _dir) = sqlite().await;
    case(store).await;
    case(postgres().await).await;
}

#[tokio::test]
async fn stored_events_come_back_intact_and_once() {
    on_both(|store| async move {
        store
            .store(vec![entry("a", "t.events", 0), entry("b", "t.events", 0)])
            .await
            .unwrap();
        // The same event (topic, source, id) again is not a second copy.
        store.store(vec![entry("a", "t.events", 0)]).await.unwrap();
        assert_eq!(store.counts().await.unwrap(), (2, 0));
        let claimed = store.claim_due(10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let a = claimed.iter().find(|e| e.event_id == "a").unwrap();
        assert_eq!(a.record, entry("a", "t.events", 0).record);
        assert_eq!(a.state, State::Pending);
        assert_eq!(a.attempts, 0);
        assert_eq!(a.last_error.as_deref(), Some("no acknowledgement"));
        assert_eq!(store.get(a.seq).await.unwrap().unwrap().record, a.record);
    })
    .await;
}

#[tokio::test]
async fn identity_is_source_and_id() {
    on_both(|store| async move {
        // Two sources of one service may use the same id: two events, two rows.
        store
            .store(vec![
                from_source("/billing/a", "same", "billing.events", 0),
                from_source("/billing/b", "same", "billing.events", 0),
            ])
            .await
            .unwrap();
        // Each of them again, in one commit and in another: still one row each.
        store
            .store(vec![
                from_source("/billing/a", "same", "billing.events", 0),
                from_source("/billing/a", "same", "billing.events", 0),
            ])
            .await
            .unwrap();
        store
            .store(vec![from_source("/billing/b", "same", "billing.events", 0)])
            .await
            .unwrap();
        assert_eq!(store.counts().await.unwrap(), (2, 0));
        let mut sources: Vec<String> = store
            .claim_due(10, Duration::from_secs(30))
            .await
            .unwrap()
            .into_iter()
            .map(|e| {
                assert_eq!(e.event_id, "same");
                e.event_source
            })
            .collect();
        sources.sort();
        assert_eq!(sources, ["/billing/a", "/billing/b"]);
    })
    .await;
}

#[tokio::test]
async fn only_due_unclaimed_events_are_claimed() {
    on_both(|store| async move {
        store
            .store(vec![entry("now", "t", 0), entry("later", "t", 60_000)])
            .await
            .unwrap();
        let first = store.claim_due(10, Duration::from_secs(30)).await.unwrap();
        assert_eq!(
            first
                .iter()
                .map(|e| e.event_id.as_str())
                .collect::<Vec<_>>(),
            ["now"]
        );
        // Claimed: not handed out again while the lease runs.
        assert!(
            store
                .claim_due(10, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn an_expired_lease_releases_the_claim() {
    on_both(|store| async move {
        store.store(vec![entry("x", "t", 0)]).await.unwrap();
        assert_eq!(
            store
                .claim_due(10, Duration::from_millis(1))
                .await
                .unwrap()
                .len(),
            1
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            store
                .claim_due(10, Duration::from_secs(30))
                .await
                .unwrap()
                .len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn failures_reschedule_then_park_and_replay_brings_back() {
    on_both(|store| async move {
        store.store(vec![entry("p", "t", 0)]).await.unwrap();
        let seq = store.claim_due(1, Duration::from_secs(30)).await.unwrap()[0].seq;
        let fail = |error: &str, next| Failure {
            seq,
            error: error.into(),
            next_attempt_ms: next,
        };
        store
            .record_failures(&[fail("timed out", Some(now_ms() + 60_000))])
            .await
            .unwrap();
        let e = store.get(seq).await.unwrap().unwrap();
        assert_eq!((e.state, e.attempts), (State::Pending, 1));
        assert!(
            store
                .claim_due(1, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty()
        );

        store
            .record_failures(&[fail("too large", None)])
            .await
            .unwrap();
        let e = store.get(seq).await.unwrap().unwrap();
        assert_eq!((e.state, e.attempts), (State::Parked, 2));
        assert_eq!(e.last_error.as_deref(), Some("too large"));
        assert_eq!(store.counts().await.unwrap(), (0, 1));
        let parked = Filter {
            state: Some(State::Parked),
            ..Filter::default()
        };
        assert_eq!(store.list(&parked, 0, 10).await.unwrap().len(), 1);
        let by_error = Filter {
            error: Some("too".into()),
            topic: Some("t".into()),
            ..Filter::default()
        };
        assert_eq!(store.list(&by_error, 0, 10).await.unwrap().len(), 1);
        let other_topic = Filter {
            topic: Some("u".into()),
            ..Filter::default()
        };
        assert!(store.list(&other_topic, 0, 10).await.unwrap().is_empty());
        assert!(
            store
                .claim_due(1, Duration::from_secs(30))
                .await
                .unwrap()
                .is_empty(),
            "parked events are not retried"
        );

        assert_eq!(store.replay(None).await.unwrap(), 1);
        let again = store.claim_due(1, Duration::from_secs(30)).await.unwrap();
        assert_eq!(again[0].seq, seq);
        assert_eq!(again[0].attempts, 0);
        assert_eq!(store.delete(&[seq]).await.unwrap(), 1);
        assert_eq!(store.counts().await.unwrap(), (0, 0));
    })
    .await;
}

#[tokio::test]
async fn concurrent_writers_share_commits_and_lose_nothing() {
    on_both(|store| async move {
        let writers: Vec<_> = (0..50)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let batch = (0..40)
                        .map(|i| entry(&format!("{w}-{i}"), "t", 0))
                        .collect();
                    store.store(batch).await
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        assert_eq!(store.counts().await.unwrap(), (2_000, 0));
        let mut ids = HashSet::new();
        loop {
            let claimed = store.claim_due(500, Duration::from_secs(30)).await.unwrap();
            if claimed.is_empty() {
                break;
            }
            ids.extend(claimed.into_iter().map(|e| e.event_id));
        }
        assert_eq!(ids.len(), 2_000);
    })
    .await;
}

#[tokio::test]
async fn two_claimers_never_get_the_same_event() {
    on_both(|store| async move {
        let batch = (0..1_000).map(|i| entry(&i.to_string(), "t", 0)).collect();
        store.store(batch).await.unwrap();
        let claim = |s: Store| async move {
            let mut got = Vec::new();
            loop {
                let c = s.claim_due(50, Duration::from_secs(30)).await.unwrap();
                if c.is_empty() {
                    return got;
                }
                got.extend(c.into_iter().map(|e| e.seq));
            }
        };
        let (a, b) = tokio::join!(claim(store.clone()), claim(store.clone()));
        let all: HashSet<i64> = a.iter().chain(&b).copied().collect();
        assert_eq!(a.len() + b.len(), 1_000, "no event claimed twice");
        assert_eq!(all.len(), 1_000);
    })
    .await;
}

/// A SQLite store's claims are leased in the claiming process: a second process on the same
/// file claims nothing while the first does (both would deliver the same events), and a
/// claimer that is gone leaves no lease behind, so the next one claims its events at once.
#[tokio::test]
async fn a_sqlite_store_has_one_claimer_and_a_gone_one_leaves_no_lease() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("dlq.db").display());
    let first = Store::open(&url, 8).await.unwrap();
    first
        .store(vec![entry("a", "t", 0), entry("b", "t", 0)])
        .await
        .unwrap();
    assert_eq!(
        first
            .claim_due(10, Duration::from_secs(3_600))
            .await
            .unwrap()
            .len(),
        2
    );

    let second = Store::open(&url, 8).await.unwrap();
    // Storing and reading stay open to it; claiming is the first's.
    second.store(vec![entry("c", "t", 0)]).await.unwrap();
    assert_eq!(second.counts().await.unwrap(), (3, 0));
    assert!(
        second
            .claim_due(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "the first process claims"
    );
    let from_second = first
        .claim_due(10, Duration::from_secs(3_600))
        .await
        .unwrap();
    assert_eq!(
        from_second.len(),
        1,
        "the claimer delivers what the other stored"
    );
    assert_eq!(from_second[0].event_id, "c");

    drop(first);
    let again = second.claim_due(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        again.len(),
        3,
        "the hour-long leases died with their claimer"
    );
}

/// A stored row that cannot be read back into an event (here: its headers overwritten by
/// hand) is parked with the reason; the events beside it are claimed, and later claims read
/// past it.
#[tokio::test]
async fn an_unreadable_stored_event_is_parked_and_the_rest_are_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("dlq.db").display());
    let store = Store::open(&url, 8).await.unwrap();
    store
        .store((0..4).map(|i| entry(&format!("e{i}"), "t", 0)).collect())
        .await
        .unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE dlq_events SET headers = 'not json' WHERE event_id = 'e1'")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let first = store.claim_due(2, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e0"]
    );
    let rest = store.claim_due(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        rest.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        ["e2", "e3"]
    );
    assert_eq!(store.counts().await.unwrap(), (3, 1));

    // The admin API still lists and shows every row, the damaged one without its headers
    // and with the reason it was parked.
    let listed = store.list(&Filter::default(), 0, 10).await.unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    let damaged = listed.iter().find(|e| e.event_id == "e1").unwrap();
    assert!(damaged.record.headers.is_empty());
    assert_eq!(damaged.unreadable_headers.as_deref(), Some("not json"));
    assert!(
        listed
            .iter()
            .filter(|e| e.event_id != "e1")
            .all(|e| e.unreadable_headers.is_none() && !e.record.headers.is_empty())
    );
    assert_eq!(damaged.state, State::Parked);
    assert!(
        damaged
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("cannot be read")),
        "{damaged:?}"
    );
    let shown = store.get(damaged.seq).await.unwrap().expect("the row");
    assert_eq!(shown.event_id, "e1");
    assert_eq!(shown.unreadable_headers.as_deref(), Some("not json"));
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    let err = Store::open("mysql://x", 1).await.unwrap_err();
    assert!(err.to_string().contains("unsupported"), "{err}");
}

fn audit_entry(action: &str, target: &str) -> AuditEntry {
    AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: "alice".into(),
        action: action.into(),
        target: target.into(),
        outcome: "ok".into(),
        before: Some(serde_json::json!({"v": 1})),
        after: None,
    }
}

#[tokio::test]
async fn settings_are_versioned_and_saved_with_their_audit_entry() {
    on_both(|store| async move {
        assert_eq!(store.setting("policy").await.unwrap(), None);
        let entry = audit_entry("policy.update", "policy");
        assert_eq!(
            store
                .save_setting("policy", "{\"a\":1}", 0, &entry)
                .await
                .unwrap(),
            Some(1)
        );
        // A second writer editing version 0 lost the race: refused, nothing audited.
        assert_eq!(
            store
                .save_setting("policy", "{\"a\":2}", 0, &entry)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .save_setting("policy", "{\"a\":3}", 1, &entry)
                .await
                .unwrap(),
            Some(2)
        );
        assert_eq!(
            store
                .save_setting("policy", "{\"a\":4}", 1, &entry)
                .await
                .unwrap(),
            None
        );
        let saved = store.setting("policy").await.unwrap().unwrap();
        assert_eq!((saved.value.as_str(), saved.version), ("{\"a\":3}", 2));
        assert_eq!(saved.updated_by, "alice");
        let log = store.audit_log(0, Some("policy."), 10).await.unwrap();
        assert_eq!(log.len(), 2, "one audit entry per saved version");
    })
    .await;
}

#[tokio::test]
async fn api_keys_are_created_rotated_and_revoked_with_their_audit_entries() {
    on_both(|store| async move {
        let new = NewApiKey {
            id: "key-1".into(),
            service: "billing".into(),
            label: "ops".into(),
            key_hash: "a".repeat(64),
            last4: "wxyz".into(),
            created_by: "alice".into(),
        };
        store
            .create_api_key(&new, &audit_entry("key.create", "key-1"))
            .await
            .unwrap();
        // The hash is unique: the same secret cannot be two keys.
        let twin = NewApiKey {
            id: "key-2".into(),
            ..new.clone()
        };
        assert!(
            store
                .create_api_key(&twin, &audit_entry("key.create", "key-2"))
                .await
                .is_err()
        );
        let until = now_ms() + 60_000;
        let rotated = store
            .rotate_api_key(
                "key-1",
                &"b".repeat(64),
                "abcd",
                Some(until),
                &audit_entry("key.rotate", "key-1"),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rotated.key_hash, "b".repeat(64));
        assert_eq!(rotated.previous_hash, Some("a".repeat(64)));
        assert_eq!(rotated.previous_until_ms, Some(until));
        assert!(rotated.rotated_ms.is_some());
        let revoked = store
            .revoke_api_key("key-1", &audit_entry("key.revoke", "key-1"))
            .await
            .unwrap()
            .unwrap();
        assert!(revoked.revoked_ms.is_some());
        assert_eq!(
            revoked.previous_hash, None,
            "revoking ends the grace period"
        );
        // Revoked once: not again, not rotated, listed only on request.
        let again = audit_entry("key.revoke", "key-1");
        assert_eq!(store.revoke_api_key("key-1", &again).await.unwrap(), None);
        let rotate = audit_entry("key.rotate", "key-1");
        let hash = "c".repeat(64);
        let rotated = store.rotate_api_key("key-1", &hash, "c", None, &rotate);
        assert_eq!(rotated.await.unwrap(), None);
        assert!(store.api_keys(false).await.unwrap().is_empty());
        assert_eq!(store.api_keys(true).await.unwrap(), vec![revoked]);
        let log = store.audit_log(0, Some("key."), 10).await.unwrap();
        let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(
            actions,
            ["key.revoke", "key.rotate", "key.create"],
            "one entry per change that happened"
        );
    })
    .await;
}

#[tokio::test]
async fn the_audit_log_pages_newest_first_and_filters_by_action() {
    on_both(|store| async move {
        for i in 0..5 {
            store
                .audit(&audit_entry("topic.create", &format!("t{i}")))
                .await
                .unwrap();
        }
        store.audit(&audit_entry("dlq.replay", "x")).await.unwrap();
        let topics = store.audit_log(0, Some("topic."), 3).await.unwrap();
        let targets: Vec<&str> = topics.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(targets, ["t4", "t3", "t2"]);
        assert_eq!(topics[0].before, Some(serde_json::json!({"v": 1})));
        assert!(topics[0].at_ms > 0);
        let rest = store
            .audit_log(topics[2].seq, Some("topic."), 10)
            .await
            .unwrap();
        let targets: Vec<&str> = rest.iter().map(|e| e.target.as_str()).collect();
        assert_eq!(targets, ["t1", "t0"]);
        assert_eq!(store.audit_log(0, None, 100).await.unwrap().len(), 6);
    })
    .await;
}

/// On a full disk, a write the store acknowledged is on disk — also the writes after a failed
/// one (a failed SQLite COMMIT leaves its transaction open on the connection; a store that
/// reused that connection would acknowledge later writes that never commit).
#[tokio::test]
async fn every_acknowledged_write_survives_a_full_disk() {
    let dir = Tmpfs::mount("300k");
    let url = format!("sqlite:{}", dir.path().join("dlq.db").display());
    let store = Store::open(&url, 16).await.unwrap();
    let mut acknowledged = HashSet::new();
    let mut refused = 0;
    for batch in 0..400 {
        let entries: Vec<NewEntry> = (0..20)
            .map(|i| entry(&format!("d-{batch}-{i}"), "disk.events", 60_000))
            .collect();
        let ids: Vec<String> = entries.iter().map(|e| e.event_id.clone()).collect();
        match store.store(entries).await {
            Ok(()) => acknowledged.extend(ids),
            Err(_) => refused += 1,
        }
        if refused >= 30 {
            break;
        }
    }
    assert!(refused > 0, "the disk never filled up");
    drop(store);
    let reopened = Store::open(&url, 4).await.unwrap();
    let mut stored = HashSet::new();
    let mut after = 0;
    loop {
        let page = reopened
            .list(&Filter::default(), after, 1_000)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page.into_iter().map(|e| e.event_id));
    }
    drop(reopened);
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged, {} of them not stored: {lost:?}",
        acknowledged.len(),
        lost.len()
    );
}

/// A store written before events kept their source: its rows survive the migration to the
/// (topic, source, id) identity, and a new event with a stored id but another source is a row
/// of its own.
async fn rows_survive_the_identity_migration(url: &str, backend: &str) {
    let before = tempfile::tempdir().unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for name in ["0001_dlq.sql", "0002_admin.sql", "0003_api_keys.sql"] {
        std::fs::copy(dir.join(name), before.path().join(name)).unwrap();
    }
    let old = sqlx::migrate::Migrator::new(before.path()).await.unwrap();
    let insert = "INSERT INTO dlq_events (event_id, topic, headers, state, next_attempt_ms, \
                  created_ms) VALUES ('old-1', 't.events', '[]', 'pending', 0, 0), \
                  ('old-2', 't.events', '[]', 'parked', 0, 0)";
    if backend == "sqlite" {
        let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
            .await
            .unwrap();
        old.run(&pool).await.unwrap();
        sqlx::query(insert).execute(&pool).await.unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        old.run(&pool).await.unwrap();
        sqlx::query(insert).execute(&pool).await.unwrap();
        pool.close().await;
    }
    let store = Store::open(url, 16).await.unwrap();
    assert_eq!(
        store.counts().await.unwrap(),
        (1, 1),
        "{backend}: rows kept"
    );
    let kept = store.list(&Filter::default(), 0, 10).await.unwrap();
    assert_eq!(
        kept.iter()
            .map(|e| (e.event_id.as_str(), e.event_source.as_str()))
            .collect::<Vec<_>>(),
        [("old-1", ""), ("old-2", "")]
    );
    store
        .store(vec![from_source("/svc", "old-1", "t.events", 0)])
        .await
        .unwrap();
    assert_eq!(store.counts().await.unwrap(), (2, 1), "{backend}");
    // Sequence numbers go on after the kept rows.
    let newest = store
        .list(&Filter::default(), kept[1].seq, 10)
        .await
        .unwrap();
    assert_eq!(newest.len(), 1, "{backend}");
}

#[tokio::test]
async fn sqlite_rows_survive_the_identity_migration() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("old.db").display());
    rows_survive_the_identity_migration(&url, "sqlite").await;
}

#[tokio::test]
async fn postgres_rows_survive_the_identity_migration() {
    rows_survive_the_identity_migration(&common::fresh_postgres_database("dlq").await, "postgres")
        .await;
}

/// A full disk does not stop the drain: deleting delivered events (and claiming, rescheduling,
/// replaying) truncates the write-ahead log, or releases the store's reserve, and goes on; new
/// events are refused while the reserve is out, and stored again once it is back.
#[tokio::test]
async fn the_drain_goes_on_on_a_full_disk() {
    let dir = Tmpfs::mount("1m");
    let url = format!("sqlite:{}", dir.path().join("dlq.db").display());
    let store = Store::open_with_reserve(&url, 16, 128 * 1024)
        .await
        .unwrap();
    assert!(dir.path().join("dlq.db.reserve").exists());
    // A store that has run a while: its events mostly in the database file, checkpointed
    // (here by hand: the automatic checkpoint comes every 4 MB of log).
    let checkpoints = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut stored = 0;
    let mut full = false;
    for batch in 0..400 {
        let entries: Vec<NewEntry> = (0..20)
            .map(|i| entry(&format!("r-{batch}-{i}"), "disk.events", 0))
            .collect();
        match store.store(entries).await {
            Ok(()) => stored += 20,
            Err(_) => {
                full = true;
                break;
            }
        }
        if batch % 5 == 4 {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&checkpoints)
                .await;
        }
    }
    checkpoints.close().await;
    assert!(
        full && stored > 0,
        "the disk never filled up ({stored} stored)"
    );
    // Kafka took everything: claim, then delete it all, on the full disk.
    let mut drained = 0;
    for _ in 0..1_000 {
        let claimed = store.claim_due(50, Duration::from_secs(60)).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        let seqs: Vec<i64> = claimed.iter().map(|e| e.seq).collect();
        drained += store.delete(&seqs).await.unwrap();
    }
    assert_eq!(drained, stored as u64, "every stored event drained");
    assert_eq!(store.counts().await.unwrap(), (0, 0));
    assert!(
        !dir.path().join("dlq.db.reserve").exists(),
        "the drain on a full disk used the reserve"
    );
    // New events would eat the room the drain needs: refused until the reserve is back.
    let refused = store.store(vec![entry("new-1", "disk.events", 0)]).await;
    assert!(
        matches!(refused, Err(StoreError::DiskFull(_))),
        "{refused:?}"
    );
    assert!(
        store.restore_reserve().await,
        "the reserve is in place after the drain"
    );
    assert!(dir.path().join("dlq.db.reserve").exists());
    store
        .store(vec![entry("new-2", "disk.events", 0)])
        .await
        .unwrap();
    assert_eq!(store.counts().await.unwrap(), (1, 0));
    eprintln!("full disk: {stored} stored, drained on the full disk, the reserve back");
}
