//! The consumers end to end: events published through the proxy reach the main server's
//! handlers and Elasticsearch (and Splunk HEC) exactly once per id, poison events land in
//! the dead-letter topic with their origin, and neither a `kill -9` of the consumers nor a
//! stalled Elasticsearch loses or duplicates anything.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier_consumer_es::elasticsearch::{ElasticsearchConfig, ElasticsearchSink};
use courier_consumer_es::splunk::{SplunkConfig, SplunkSink};
use courier_consumer_es::{PipelineConfig, PipelineStats, pipeline};
use courier_consumer_main::dead_letter as dlt;
use courier_consumer_main::{Consumer, ConsumerConfig, Handler, HandlerError, Received};
use courier_e2e::sinks::{
    ConsumerProcess, HecDouble, HecFault, es_node, es_url, es_wait_count, orders, publish,
};
use courier_e2e::{TestProxy, bootstrap, consumer, header, unique};
use rdkafka::message::{Headers, Message, OwnedMessage};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn consumer_config(group: &str) -> ConsumerConfig {
    let mut c = ConsumerConfig::default();
    c.kafka.bootstrap_servers = bootstrap();
    c.kafka.group_id = group.to_owned();
    c.kafka.metadata_refresh_ms = 1000;
    c.retry.initial_backoff = Duration::from_millis(50);
    c
}

fn pipeline_config(group: &str, topic: &str) -> PipelineConfig {
    let mut c = PipelineConfig::default();
    c.kafka.bootstrap_servers = bootstrap();
    c.kafka.group_id = group.to_owned();
    c.kafka.metadata_refresh_ms = 1000;
    c.topics = vec![format!("^{}$", topic.replace('.', r"\."))];
    c.batch.max_docs = 200;
    c.batch.max_wait = Duration::from_millis(200);
    c
}

fn es_sink() -> Arc<ElasticsearchSink> {
    Arc::new(
        ElasticsearchSink::new(ElasticsearchConfig {
            url: es_url(),
            replicas: 0,
            request_timeout: Duration::from_secs(3),
            max_backoff: Duration::from_secs(1),
            ..ElasticsearchConfig::default()
        })
        .expect("sink"),
    )
}

/// Writes `event` straight into Kafka under `key`, as another producer than the proxy might:
/// its id need not keep the proxy's bounds.
async fn write_straight(topic: &str, event: &Value, key: &str) {
    let mut parseable = event.clone();
    parseable["id"] = json!("placeholder");
    let mut parsed =
        courier_shared::envelope::Event::from_json(parseable.to_string().as_bytes()).unwrap();
    parsed.id = event["id"].as_str().unwrap().to_owned();
    let record = courier_shared::binding::to_record(&parsed);
    let mut headers = rdkafka::message::OwnedHeaders::new();
    for (k, v) in &record.headers {
        headers = headers.insert(rdkafka::message::Header {
            key: k,
            value: Some(&**v),
        });
    }
    let r: rdkafka::producer::FutureRecord<'_, [u8], [u8]> =
        rdkafka::producer::FutureRecord::to(topic)
            .key(key.as_bytes())
            .payload(record.value.as_deref().unwrap_or_default())
            .headers(headers);
    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer");
    producer
        .send(r, Duration::from_secs(10))
        .await
        .expect("written straight into Kafka");
}

fn ids(svc: &str, from: usize, n: usize) -> HashSet<String> {
    (from..from + n).map(|i| format!("{svc}-{i}")).collect()
}

/// Records what it handled; `poison` events break a rule, `flaky` ones fail once first.
#[derive(Debug, Default, Clone)]
struct Recorder {
    handled: Arc<Mutex<HashMap<String, u32>>>,
    attempts: Arc<Mutex<HashMap<String, u32>>>,
}

impl Handler for Recorder {
    type Payload = Value;

    async fn handle(&self, e: Received<Value>) -> Result<(), HandlerError> {
        let attempt = {
            let mut a = self.attempts.lock().unwrap();
            let n = a.entry(e.event.id.clone()).or_default();
            *n += 1;
            *n
        };
        if e.data["poison"] == true {
            return Err(HandlerError::fatal("poison order").with_class("test.PoisonOrder"));
        }
        if e.data["flaky"] == true && attempt == 1 {
            return Err(HandlerError::retriable("database briefly away"));
        }
        *self
            .handled
            .lock()
            .unwrap()
            .entry(e.event.id.clone())
            .or_default() += 1;
        Ok(())
    }
}

impl Recorder {
    fn handled(&self) -> HashMap<String, u32> {
        self.handled.lock().unwrap().clone()
    }

    async fn wait_for(&self, want: &HashSet<String>, timeout: Duration) -> HashMap<String, u32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let h = self.handled();
            if want.iter().all(|id| h.contains_key(id)) {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.handled()
    }
}

fn index_pattern(topic: &str) -> String {
    format!("courier-{topic}-*")
}

/// Every record of `topic` until `want` were read or `timeout` passed.
/// The record at `offset` of `topic`'s `partition`, read directly (bounded: 30 s).
async fn record_at(topic: &str, partition: i32, offset: i64) -> OwnedMessage {
    use rdkafka::consumer::{Consumer as _, StreamConsumer};
    let c: StreamConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", unique("at-"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
        .expect("partition");
    c.assign(&tpl).expect("assign");
    tokio::time::timeout(Duration::from_secs(30), c.recv())
        .await
        .expect("the original record within 30 s")
        .expect("the original record")
        .detach()
}

async fn read_all(topic: &str, want: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let c = consumer(&[topic]);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(1), c.recv()).await {
            out.push(m.detach());
        }
    }
    out
}

fn raw_header(m: &OwnedMessage, name: &str) -> Vec<u8> {
    m.headers()
        .and_then(|hs| {
            hs.iter()
                .find(|h| h.key == name)
                .and_then(|h| h.value.map(<[u8]>::to_vec))
        })
        .unwrap_or_else(|| panic!("header {name} missing"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_event_is_handled_once_and_indexed_once_by_id() {
    const N: usize = 500;
    const DUPLICATES: usize = 50;
    let proxy = TestProxy::start(|_| {}).await;
    let svc = unique("ord");
    let topic = format!("{svc}.events");
    let events = orders(&svc, 0, N);
    publish(&proxy.url(""), &events, 100).await;
    // The rare duplicate the proxy's at-least-once delivery may leave: the same events
    // written a second time, straight into Kafka, under another key — so a copy is often on
    // another partition than its original and the two race through the dedupe.
    for e in &events[..DUPLICATES] {
        write_straight(&topic, e, &format!("copy-{}", e["id"])).await;
    }

    let shutdown = CancellationToken::new();
    let recorder = Recorder::default();
    let runtime = Consumer::builder(consumer_config(&unique("main-")))
        .route(&format!(r"^{svc}\..*"), recorder.clone())
        .unwrap()
        .build()
        .unwrap();
    let stats = runtime.stats();
    let main = tokio::spawn(runtime.run(shutdown.clone()));
    let es_stats = Arc::new(PipelineStats::default());
    let es = tokio::spawn(pipeline::run(
        es_sink(),
        pipeline_config(&unique("es-"), &topic),
        es_stats.clone(),
        shutdown.clone(),
    ));

    let handled = recorder
        .wait_for(&ids(&svc, 0, N), Duration::from_secs(120))
        .await;
    let count = es_wait_count(&index_pattern(&topic), N as u64, Duration::from_secs(120)).await;
    // Let the duplicates that are still in flight arrive before judging.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats
        .deduplicated
        .load(std::sync::atomic::Ordering::Relaxed)
        < DUPLICATES as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    main.await.unwrap().unwrap();
    es.await.unwrap().unwrap();
    let handled_after = recorder.handled();
    println!(
        "handled {} ids, deduplicated {}, indexed {count}",
        handled.len(),
        stats
            .deduplicated
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert_eq!(handled_after.len(), N, "every event handled");
    assert!(
        handled_after.values().all(|&n| n == 1),
        "no event handled twice"
    );
    assert_eq!(
        stats
            .deduplicated
            .load(std::sync::atomic::Ordering::Relaxed),
        DUPLICATES as u64
    );
    assert_eq!(
        count, N as u64,
        "every event searchable in Elasticsearch, once"
    );
    let final_count = es_wait_count(&index_pattern(&topic), u64::MAX, Duration::from_secs(2)).await;
    assert_eq!(
        final_count, N as u64,
        "duplicates overwrote their first copy"
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_events_go_to_the_dead_letter_topic_and_the_stream_goes_on() {
    let proxy = TestProxy::start(|_| {}).await;
    let svc = unique("poi");
    let topic = format!("{svc}.events");
    let (main_group, es_group) = (unique("main-"), unique("es-"));
    let mut first = orders(&svc, 0, 50);
    first.push(
        json!({"specversion": "1.0", "id": "handler-poison", "source": format!("/{svc}"),
                      "type": "order.placed", "data": {"order": -1, "amount": 1, "poison": true}}),
    );
    first.push(
        json!({"specversion": "1.0", "id": "flaky", "source": format!("/{svc}"),
                      "type": "order.placed", "data": {"order": -2, "amount": 2, "flaky": true}}),
    );
    publish(&proxy.url(""), &first, 100).await;

    let shutdown = CancellationToken::new();
    let recorder = Recorder::default();
    let runtime = Consumer::builder(consumer_config(&main_group))
        .route(&format!(r"^{svc}\..*"), recorder.clone())
        .unwrap()
        .build()
        .unwrap();
    let stats = runtime.stats();
    let main = tokio::spawn(runtime.run(shutdown.clone()));
    let es = tokio::spawn(pipeline::run(
        es_sink(),
        pipeline_config(&es_group, &topic),
        Arc::new(PipelineStats::default()),
        shutdown.clone(),
    ));
    // Everything is indexed first: `amount` is mapped as a number.
    assert_eq!(
        es_wait_count(&index_pattern(&topic), 52, Duration::from_secs(120)).await,
        52
    );

    // A document whose `amount` is not a number contradicts the mapping.
    let mut second = vec![
        json!({"specversion": "1.0", "id": "mapping-poison", "source": format!("/{svc}"),
                                 "type": "order.placed", "data": {"order": -3, "amount": "lots"}}),
    ];
    second.extend(orders(&svc, 50, 20));
    publish(&proxy.url(""), &second, 100).await;
    // An id Elasticsearch refuses as an `_id` (over 512 bytes) fails the whole `_bulk`
    // request (400): the sink splits the batch until that document is alone. The proxy
    // refuses such an id (over 256 bytes), so it comes from another producer.
    let long_id = format!("long-{}", "x".repeat(600));
    write_straight(
        &topic,
        &json!({"specversion": "1.0", "id": long_id, "source": format!("/{svc}"),
                "type": "order.placed", "data": {"order": -4, "amount": 4}}),
        "long",
    )
    .await;

    let mut want = ids(&svc, 0, 70);
    want.insert("flaky".into());
    want.insert("mapping-poison".into());
    want.insert(long_id.clone());
    let handled = recorder.wait_for(&want, Duration::from_secs(120)).await;
    assert!(
        want.iter().all(|id| handled.contains_key(id)),
        "the stream went on past the poison"
    );
    assert!(!handled.contains_key("handler-poison"));
    assert_eq!(
        recorder.attempts.lock().unwrap()["flaky"],
        2,
        "a retriable error is retried"
    );
    assert_eq!(
        es_wait_count(&index_pattern(&topic), 72, Duration::from_secs(120)).await,
        72
    );

    let dead = read_all(&format!("{topic}.dlt"), 3, Duration::from_secs(60)).await;
    shutdown.cancel();
    main.await.unwrap().unwrap();
    es.await.unwrap().unwrap();
    assert_eq!(dead.len(), 3, "one dead letter per poison event");
    assert_eq!(
        stats
            .dead_lettered
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    for m in &dead {
        let id = header(m, "ce_id").expect("original headers kept");
        let group = String::from_utf8(raw_header(m, dlt::ORIGINAL_CONSUMER_GROUP)).unwrap();
        let class = String::from_utf8(raw_header(m, dlt::EXCEPTION_FQCN)).unwrap();
        let message = String::from_utf8(raw_header(m, dlt::EXCEPTION_MESSAGE)).unwrap();
        assert_eq!(
            String::from_utf8(raw_header(m, dlt::ORIGINAL_TOPIC)).unwrap(),
            topic
        );
        let partition =
            i32::from_be_bytes(raw_header(m, dlt::ORIGINAL_PARTITION).try_into().unwrap());
        let offset = i64::from_be_bytes(raw_header(m, dlt::ORIGINAL_OFFSET).try_into().unwrap());
        let timestamp =
            i64::from_be_bytes(raw_header(m, dlt::ORIGINAL_TIMESTAMP).try_into().unwrap());
        assert!((0..6).contains(&partition) && offset >= 0 && timestamp > 1_600_000_000_000);
        // The dead letter is the original record: same value, at the offset it names.
        let original = record_at(&topic, partition, offset).await;
        assert_eq!(header(&original, "ce_id").as_deref(), Some(id.as_str()));
        assert_eq!(original.payload(), m.payload());
        match id.as_str() {
            "handler-poison" => {
                assert_eq!(group, main_group);
                assert_eq!(class, "test.PoisonOrder");
                assert_eq!(message, "poison order");
            }
            "mapping-poison" => {
                assert_eq!(group, es_group);
                assert!(class.starts_with("elasticsearch."), "{class}");
                assert!(message.starts_with("HTTP 400"), "{message}");
            }
            id if id == long_id => {
                assert_eq!(group, es_group);
                assert_eq!(class, "elasticsearch.request_refused");
                assert!(message.starts_with("HTTP 400"), "{message}");
            }
            other => panic!("unexpected dead letter {other}"),
        }
    }
    proxy.stop().await;
}

fn journal_ids(path: &std::path::Path) -> (HashSet<String>, usize) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen = HashSet::new();
    let mut dup = 0;
    for line in text.lines() {
        if let Some((_, id)) = line.split_once('\t')
            && !seen.insert(id.to_owned())
        {
            dup += 1;
        }
    }
    (seen, dup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumers_killed_mid_batch_resume_without_skipping_or_duplicating() {
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let proxy = TestProxy::start(|_| {}).await;
    let svc = unique("kil");
    let topic = format!("{svc}.events");
    let journal = dir.path().join("journal.tsv");
    // Ephemeral ports for the operations endpoints: tests run side by side.
    let main_args = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--bootstrap-servers".into(),
        bootstrap(),
        "--group".into(),
        unique("main-"),
        "--orders".into(),
        format!(r"^{svc}\.events$"),
        "--journal".into(),
        journal.display().to_string(),
        "--metadata-refresh-ms".into(),
        "1000".into(),
    ];
    let es_args = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--bootstrap-servers".into(),
        bootstrap(),
        "--group".into(),
        unique("es-"),
        "--topics".into(),
        format!(r"^{svc}\.events$"),
        "--metadata-refresh-ms".into(),
        "1000".into(),
        "--es-url".into(),
        es_url(),
        "--es-replicas".into(),
        "0".into(),
        "--batch-docs".into(),
        "150".into(),
        "--batch-wait-ms".into(),
        "100".into(),
        "--es-timeout-ms".into(),
        "5000".into(),
    ];
    let main_log = dir.path().join("main.log");
    let es_log = dir.path().join("es.log");
    let mut main = ConsumerProcess::start("courier-consumer-main", &main_args, &main_log);
    let mut es = ConsumerProcess::start("courier-consumer-es", &es_args, &es_log);

    let base = proxy.url("");
    let svc2 = svc.clone();
    let load = tokio::spawn(async move {
        for chunk in orders(&svc2, 0, N).chunks(100) {
            publish(&base, chunk, 100).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // Kill both once they are well into the stream.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let handled = journal_ids(&journal).0.len();
        let indexed = es_wait_count(&index_pattern(&topic), 0, Duration::from_secs(1)).await;
        if handled >= 500 && indexed >= 300 {
            println!("killing the consumers at {handled} handled, {indexed} indexed");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "consumers made no progress: {handled} handled, {indexed} indexed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    main.signal_and_wait("-9", Duration::from_secs(10));
    es.signal_and_wait("-9", Duration::from_secs(10));
    let mut main = ConsumerProcess::start("courier-consumer-main", &main_args, &main_log);
    let mut es = ConsumerProcess::start("courier-consumer-es", &es_args, &es_log);
    load.await.unwrap();

    let want = ids(&svc, 0, N);
    let deadline = Instant::now() + Duration::from_secs(180);
    let (handled, dup) = loop {
        let (seen, dup) = journal_ids(&journal);
        if want.is_subset(&seen) || Instant::now() > deadline {
            break (seen, dup);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let count = es_wait_count(&index_pattern(&topic), N as u64, Duration::from_secs(180)).await;
    // Settle: anything redelivered late must overwrite, not add.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = es_wait_count(&index_pattern(&topic), u64::MAX, Duration::from_secs(2)).await;
    assert!(
        main.signal_and_wait("-TERM", Duration::from_secs(40))
            .success()
    );
    assert!(
        es.signal_and_wait("-TERM", Duration::from_secs(40))
            .success()
    );
    let missing = want.difference(&handled).count();
    println!(
        "main: handled {} ids, {missing} missing, {dup} redelivered after the crash; es: {count} then {settled}",
        handled.len()
    );
    assert_eq!(missing, 0, "no event skipped by the handlers");
    assert_eq!(
        count, N as u64,
        "no event skipped by the Elasticsearch sink"
    );
    assert_eq!(settled, N as u64, "no duplicate in Elasticsearch");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sink_waits_out_a_stalled_elasticsearch() {
    let proxy = TestProxy::start(|_| {}).await;
    let svc = unique("stl");
    let topic = format!("{svc}.events");
    let shutdown = CancellationToken::new();
    let es = tokio::spawn(pipeline::run(
        es_sink(),
        pipeline_config(&unique("es-"), &topic),
        Arc::new(PipelineStats::default()),
        shutdown.clone(),
    ));
    publish(&proxy.url(""), &orders(&svc, 0, 200), 100).await;
    assert_eq!(
        es_wait_count(&index_pattern(&topic), 200, Duration::from_secs(120)).await,
        200
    );

    es_node("pause");
    let result = tokio::time::timeout(Duration::from_secs(60), async {
        publish(&proxy.url(""), &orders(&svc, 200, 300), 100).await;
        // Long enough for bulk requests to time out and be retried.
        tokio::time::sleep(Duration::from_secs(8)).await;
    })
    .await;
    es_node("resume");
    result.expect("publishing does not depend on Elasticsearch");

    assert_eq!(
        es_wait_count(&index_pattern(&topic), 500, Duration::from_secs(120)).await,
        500
    );
    shutdown.cancel();
    es.await.unwrap().unwrap();
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn splunk_sink_retries_busy_resends_unacknowledged_and_dead_letters_invalid() {
    const N: usize = 120;
    let proxy = TestProxy::start(|_| {}).await;
    let hec = HecDouble::start("test-token").await;
    hec.script(&[
        HecFault::Busy,
        HecFault::NeverAck,
        HecFault::InvalidEvent(0),
    ]);
    let svc = unique("spl");
    let topic = format!("{svc}.events");
    let sink = SplunkSink::new(SplunkConfig {
        url: hec.url(),
        token: "test-token".into(),
        ack_timeout: Duration::from_secs(2),
        ack_poll_interval: Duration::from_millis(100),
        initial_backoff: Duration::from_millis(100),
        ..SplunkConfig::default()
    })
    .unwrap();
    let mut config = pipeline_config(&unique("splunk-"), &topic);
    config.batch.max_docs = 40;
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(pipeline::run(
        Arc::new(sink),
        config,
        Arc::new(PipelineStats::default()),
        shutdown.clone(),
    ));
    publish(&proxy.url(""), &orders(&svc, 0, N), 40).await;

    let want = ids(&svc, 0, N);
    let dead = read_all(&format!("{topic}.dlt"), 1, Duration::from_secs(90)).await;
    assert_eq!(dead.len(), 1, "the invalid event is dead-lettered");
    let dead_id = header(&dead[0], "ce_id").unwrap();
    assert_eq!(
        String::from_utf8(raw_header(&dead[0], dlt::EXCEPTION_FQCN)).unwrap(),
        "splunk.InvalidEvent"
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let indexed: HashSet<String> = loop {
        let got: HashSet<String> = hec
            .indexed()
            .iter()
            .filter_map(|e| e["event"]["id"].as_str().map(str::to_owned))
            .collect();
        if got.len() + 1 >= N || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    shutdown.cancel();
    run.await.unwrap().unwrap();
    assert!(!indexed.contains(&dead_id));
    let mut all = indexed.clone();
    all.insert(dead_id);
    assert_eq!(all, want, "every event indexed or dead-lettered");
    assert!(
        hec.requests() >= 6,
        "busy, unacknowledged and invalid batches were sent again"
    );
    let e = &hec.indexed()[0];
    assert_eq!(e["sourcetype"], "courier:event");
    assert_eq!(e["fields"]["topic"], topic.as_str());
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn splunk_sink_stops_rather_than_commit_a_batch_without_an_acknowledgement() {
    const N: usize = 30;
    let proxy = TestProxy::start(|_| {}).await;
    let hec = HecDouble::start("test-token").await;
    // A token with indexer acknowledgement off answers 200 without an ack id.
    hec.script(&[HecFault::AckOff]);
    let svc = unique("spa");
    let topic = format!("{svc}.events");
    let group = unique("splunk-");
    let splunk = |require_ack| {
        Arc::new(
            SplunkSink::new(SplunkConfig {
                url: hec.url(),
                token: "test-token".into(),
                require_ack,
                ack_poll_interval: Duration::from_millis(100),
                initial_backoff: Duration::from_millis(100),
                ..SplunkConfig::default()
            })
            .unwrap(),
        )
    };
    publish(&proxy.url(""), &orders(&svc, 0, N), N).await;
    let mut config = pipeline_config(&group, &topic);
    config.batch.max_docs = N;
    let stopped = tokio::time::timeout(
        Duration::from_secs(90),
        pipeline::run(
            splunk(true),
            config.clone(),
            Arc::new(PipelineStats::default()),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the sink stops by itself");
    let error = stopped.expect_err("a 200 without an ack id is not taken as indexed");
    assert!(error.to_string().contains("ack id"), "{error}");

    // Nothing was committed: the group reads the batch again (here with acknowledgement
    // on), and every event arrives acknowledged.
    let shutdown = CancellationToken::new();
    let stats = Arc::new(PipelineStats::default());
    let run = tokio::spawn(pipeline::run(
        splunk(true),
        config,
        stats.clone(),
        shutdown.clone(),
    ));
    let deadline = Instant::now() + Duration::from_secs(90);
    while stats.written.load(std::sync::atomic::Ordering::Relaxed) < N as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shutdown.cancel();
    run.await.unwrap().unwrap();
    assert_eq!(
        stats.written.load(std::sync::atomic::Ordering::Relaxed),
        N as u64,
        "the unacknowledged batch is read again from the last commit"
    );
    proxy.stop().await;
}

/// Handles slowly, counting every call per id across consumers.
#[derive(Debug, Default, Clone)]
struct SlowCounter {
    calls: Arc<Mutex<HashMap<String, u32>>>,
}

impl Handler for SlowCounter {
    type Payload = Value;

    async fn handle(&self, e: Received<Value>) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(25)).await;
        *self.calls.lock().unwrap().entry(e.event.id).or_default() += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_hands_partitions_over_without_handling_anything_twice() {
    const N: usize = 1200;
    let proxy = TestProxy::start(|_| {}).await;
    let svc = unique("reb");
    publish(&proxy.url(""), &orders(&svc, 0, N), 200).await;
    let group = unique("main-");
    let counter = SlowCounter::default();
    let start = |shutdown: &CancellationToken| {
        let mut config = consumer_config(&group);
        // No dedupe: a record handled twice shows up as two calls.
        config.dedupe_capacity = 0;
        config.partition_queue = 16;
        let runtime = Consumer::builder(config)
            .route(&format!(r"^{svc}\..*"), counter.clone())
            .unwrap()
            .build()
            .unwrap();
        tokio::spawn(runtime.run(shutdown.clone()))
    };
    let calls = || counter.calls.lock().unwrap().values().sum::<u32>() as usize;
    let shutdown = CancellationToken::new();
    let first = start(&shutdown);
    let deadline = Instant::now() + Duration::from_secs(60);
    while calls() < 100 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        calls() < N / 2,
        "the first consumer was too fast for the test"
    );
    // A second member joins: the first gives its partitions up mid-stream, handlers busy
    // and records queued, and the group splits them.
    let second = start(&shutdown);
    let deadline = Instant::now() + Duration::from_secs(120);
    while counter.calls.lock().unwrap().len() < N && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A duplicate would come from a record redone after the hand-over: give it time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let calls = counter.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), N, "every event handled");
    let twice: Vec<_> = calls.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "handled twice across the rebalance: {twice:?}"
    );
    proxy.stop().await;
}
