//! `courier-bench --mode produce`: every way of getting the same events into the same topic
//! of one cluster, side by side in one run — the proxy with single-event and batched POSTs,
//! the Rust client (`courier::Client`), a direct rdkafka producer with the proxy's own
//! producer settings (the ceiling), the Strimzi Kafka HTTP bridge with single and batched
//! records (when one runs), and two proxy processes sharing the load. Each is measured at a
//! fixed rate and at its maximum, with the CPU and memory of every process involved.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use courier_proxy::config::{DeliveryConfig, KafkaConfig};
use courier_proxy::delivery::producer_config;
use rdkafka::producer::{FutureProducer, Producer as _};

use crate::bench_goals::{against_floor, cross_check, goals, medians, write_charts};
use crate::bench_http::{Endpoint, Http1Pool};
use crate::bench_measure::{Load, Target, drive};
use crate::bench_plans::{Events, Kind, PLANS, Plan};
use crate::bench_procs::{Sampler, Watched, load_average};
use crate::bench_report::{Row, append_csv, markdown};
use crate::bench_targets::{
    ClientPublish, Direct, HttpPost, bodies, event, realistic_event, records,
};
use crate::proxy_process::{FloorProcess, Output, ProxyProcess, beside_current_exe};

/// Settings of the run.
#[derive(Debug, Clone)]
pub struct ProduceBench {
    /// Kafka bootstrap servers.
    pub bootstrap: String,
    /// Events per scenario at the maximum (fewer if `max_secs` runs out first).
    pub events: usize,
    /// Time limit of a scenario at the maximum.
    pub max_secs: f64,
    /// The fixed rate, events/s.
    pub rate: f64,
    /// How long each fixed-rate scenario offers load.
    pub rate_secs: f64,
    /// Requests in flight for single-event POSTs (proxy and bridge).
    pub single_concurrency: usize,
    /// Events per batched POST (proxy, bridge and client alike).
    pub batch_size: usize,
    /// Requests in flight for batched POSTs (proxy, bridge and client alike).
    pub batch_concurrency: usize,
    /// Records in flight for the direct producer.
    pub direct_in_flight: usize,
    /// Payload bytes per event.
    pub payload_bytes: usize,
    /// Rounds of the whole sequence (to see the spread on a shared machine).
    pub rounds: usize,
    /// Seconds of unmeasured load from the direct producer before the first scenario, so the
    /// brokers' JVMs are warm.
    pub warm_secs: f64,
    /// The Strimzi bridge, if one runs: its URL and process id.
    pub bridge: Option<(String, Option<u32>)>,
    /// The Kafka brokers' process ids.
    pub broker_pids: Vec<u32>,
    /// Scenario keys to run (all when empty): `proxy-single`, `proxy-batch`, `client`,
    /// `direct`, `bridge-single`, `bridge-batch`, `proxy2-single`, `proxy2-batch`.
    pub only: Vec<String>,
    /// The `wrk` Lua script of realistic events (`scripts/bench/events.lua`): with it, the
    /// single-event scenarios run again with `wrk` as the load generator, side by side.
    pub wrk_script: Option<PathBuf>,
    /// Settings (`COURIER_…` variables) every proxy of the run starts with.
    pub proxy_env: Vec<(String, String)>,
    /// CSV file the rows are appended to.
    pub csv: Option<PathBuf>,
    /// Directory the SVG charts are written to.
    pub svg_dir: Option<PathBuf>,
}

/// What the scenarios share.
struct Bench<'a> {
    b: &'a ProduceBench,
    proxies: Vec<ProxyProcess>,
    /// `courier-http-floor` and its connection pool, when the floor scenario runs.
    floor: Option<(FloorProcess, Arc<Http1Pool>)>,
    /// One connection pool per proxy, and one for the bridge.
    pools: Vec<Arc<Http1Pool>>,
    bridge_pool: Option<(Arc<Http1Pool>, String)>,
    source: String,
    topic: String,
    payload: String,
    direct: FutureProducer,
    client: courier::Client,
    run: String,
}

impl Bench<'_> {
    fn in_flight(&self, plan: &Plan) -> usize {
        let single = match plan.connections {
            0 => self.b.single_concurrency,
            n => n,
        };
        match plan.kind {
            Kind::ProxySingle | Kind::BridgeSingle | Kind::Wrk | Kind::Floor => single,
            Kind::ProxyBatch | Kind::BridgeBatch => match plan.connections {
                0 => self.b.batch_concurrency,
                n => n,
            },
            // Enough waiting publishers to fill the client's batches and requests.
            Kind::Client => self.b.batch_size * self.b.batch_concurrency * 2,
            Kind::Direct => self.b.direct_in_flight,
        }
    }

    fn per_unit(&self, kind: Kind) -> usize {
        match kind {
            Kind::ProxyBatch | Kind::BridgeBatch => self.b.batch_size,
            _ => 1,
        }
    }

    /// The `wrk` run of a single-event scenario against the first proxy: `connections`
    /// connections for `secs` seconds, the proxy's CPU sampled as for every other scenario.
    async fn wrk(
        &self,
        connections: usize,
        secs: f64,
        tag: &str,
        watched: &[Watched],
    ) -> anyhow::Result<(
        crate::bench_measure::Outcome,
        BTreeMap<&'static str, crate::bench_procs::Usage>,
    )> {
        let script = self.b.wrk_script.as_ref().context("no wrk script")?;
        let sampler = Sampler::start(watched, Duration::from_millis(250));
        let outcome = crate::bench_wrk::run(
            &format!("{}/v1/events", self.proxies[0].base),
            connections,
            Duration::from_secs_f64(secs.max(1.0)),
            script,
            &[
                ("COURIER_BENCH_SOURCE", self.source.as_str()),
                ("COURIER_BENCH_BATCH", "1"),
                ("COURIER_BENCH_TAG", tag),
            ],
        )
        .await;
        let usage = sampler.stop().await;
        Ok((outcome?, usage))
    }

    /// A cluster started for the run has cold JVMs: its brokers spend several times the CPU
    /// per record until their code is compiled, and the first scenario would pay for it. The
    /// direct producer (no proxy involved) warms them for `warm_secs` first, and the brokers
    /// are then left to settle; nothing of it is measured.
    async fn warm_brokers(&self) -> anyhow::Result<()> {
        let b = self.b;
        eprintln!(
            "[{}] warming the brokers: direct producer for {:.0} s ...",
            chrono::Utc::now().format("%H:%M:%S"),
            b.warm_secs
        );
        let records = records(b.direct_in_flight * 4, |i| {
            realistic_event(&self.source, "warm-brokers", i)
        })?;
        let warm = Arc::new(Direct {
            producer: self.direct.clone(),
            topic: self.topic.clone(),
            records,
        });
        let mut left = Duration::from_secs_f64(b.warm_secs);
        while !left.is_zero() {
            let t = std::time::Instant::now();
            drive(
                warm.clone(),
                Load::Max {
                    concurrency: b.direct_in_flight,
                },
                left,
            )
            .await;
            left = left.saturating_sub(t.elapsed());
        }
        crate::bench_procs::settle(&b.broker_pids).await;
        Ok(())
    }

    /// Runs `target` under `load` while sampling the processes of `groups`.
    async fn measure<T: Target>(
        &self,
        target: T,
        load: Load,
        limit: Duration,
        watched: &[Watched],
    ) -> (
        crate::bench_measure::Outcome,
        BTreeMap<&'static str, crate::bench_procs::Usage>,
    ) {
        let sampler = Sampler::start(watched, Duration::from_millis(250));
        let outcome = drive(Arc::new(target), load, limit).await;
        (outcome, sampler.stop().await)
    }

    /// One scenario: `plan` under `load`, `units` units, ids prefixed with `tag`.
    async fn scenario(
        &self,
        plan: &Plan,
        load: Load,
        units: usize,
        tag: &str,
        limit: Duration,
    ) -> anyhow::Result<(
        crate::bench_measure::Outcome,
        BTreeMap<&'static str, crate::bench_procs::Usage>,
    )> {
        let mut watched = vec![Watched {
            group: "bench",
            pid: std::process::id(),
        }];
        watched.extend(self.b.broker_pids.iter().map(|&pid| Watched {
            group: "brokers",
            pid,
        }));
        let per = self.per_unit(plan.kind);
        let mk = |i| match plan.events {
            Events::Realistic => realistic_event(&self.source, tag, i),
            Events::Fixed => event(&self.source, tag, i, &self.payload),
        };
        let proxy_targets: Vec<(Arc<Http1Pool>, String)> = self.pools[..plan.proxies]
            .iter()
            .map(|p| (p.clone(), "/v1/events".to_owned()))
            .collect();
        if plan.proxies > 0 {
            watched.extend(self.proxies[..plan.proxies].iter().map(|p| Watched {
                group: "proxy",
                pid: p.pid(),
            }));
        }
        let bridge_target = || -> anyhow::Result<Vec<(Arc<Http1Pool>, String)>> {
            Ok(vec![self.bridge_pool.clone().context("no bridge")?])
        };
        if matches!(plan.kind, Kind::BridgeSingle | Kind::BridgeBatch)
            && let Some((_, Some(pid))) = &self.b.bridge
        {
            watched.push(Watched {
                group: "bridge",
                pid: *pid,
            });
        }
        let bridge_records = |events: Vec<serde_json::Value>| {
            let records: Vec<_> = events
                .into_iter()
                .map(|e| serde_json::json!({"key": e["partitionkey"], "value": e}))
                .collect();
            serde_json::json!({ "records": records })
        };
        let http = |targets: Vec<(Arc<Http1Pool>, String)>, content_type, bodies| HttpPost {
            targets,
            content_type,
            bodies,
            per_unit: per,
            expect: 200,
        };
        Ok(match plan.kind {
            Kind::ProxySingle | Kind::Floor => {
                let targets = match plan.kind {
                    Kind::Floor => {
                        // Sampled as the proxy is, so its CPU per request reads the same way.
                        let (floor, pool) = self.floor.as_ref().context("no HTTP floor")?;
                        watched.push(Watched {
                            group: "proxy",
                            pid: floor.pid(),
                        });
                        vec![(pool.clone(), "/v1/events".to_owned())]
                    }
                    _ => proxy_targets,
                };
                let b = bodies(units, 1, mk, |mut e| e.remove(0))?;
                let t = http(targets, "application/cloudevents+json", b);
                self.measure(t, load, limit, &watched).await
            }
            Kind::ProxyBatch => {
                let b = bodies(units, per, mk, serde_json::Value::Array)?;
                let t = http(proxy_targets, "application/cloudevents-batch+json", b);
                self.measure(t, load, limit, &watched).await
            }
            Kind::BridgeSingle | Kind::BridgeBatch => {
                let b = bodies(units, per, mk, bridge_records)?;
                let t = http(bridge_target()?, "application/vnd.kafka.json.v2+json", b);
                self.measure(t, load, limit, &watched).await
            }
            Kind::Direct => {
                let records = records(units, mk)?;
                let t = Direct {
                    producer: self.direct.clone(),
                    topic: self.topic.clone(),
                    records,
                };
                self.measure(t, load, limit, &watched).await
            }
            Kind::Client => {
                let t = ClientPublish {
                    client: self.client.clone(),
                    scenario: tag.to_owned(),
                    source: self.source.clone(),
                    units,
                };
                self.measure(t, load, limit, &watched).await
            }
            Kind::Wrk => {
                self.wrk(self.in_flight(plan), limit.as_secs_f64(), tag, &watched)
                    .await?
            }
        })
    }
}

/// Runs the plan and reports it.
pub async fn run(b: ProduceBench) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(b.single_concurrency.max(b.batch_concurrency))
        .timeout(Duration::from_secs(30))
        .build()?;
    let state = tempfile::tempdir()?;
    let wanted = |p: &Plan| {
        (b.only.is_empty() || b.only.iter().any(|k| k == p.key))
            && (b.bridge.is_some() || !matches!(p.kind, Kind::BridgeSingle | Kind::BridgeBatch))
            && (b.wrk_script.is_some() || p.kind != Kind::Wrk)
    };
    let proxies_needed = PLANS
        .iter()
        .filter(|p| wanted(p))
        .map(|p| p.proxies)
        .max()
        .unwrap_or(0)
        .max(1);
    let mut proxies = Vec::new();
    let proxy_env: Vec<(&str, &str)> = b
        .proxy_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for n in 0..proxies_needed {
        let dlq = state.path().join(format!("dlq{n}.db"));
        proxies.push(ProxyProcess::spawn(
            &beside_current_exe("courier-proxy")?,
            &b.bootstrap,
            &format!("sqlite:{}", dlq.display()),
            &proxy_env,
            Output::Quiet,
        )?);
    }
    for p in &proxies {
        p.wait(&http, "/readyz", Duration::from_secs(60)).await?;
    }
    let service = crate::unique("bench-");
    let source = format!("/{service}");
    let topic = format!("{service}.events");
    let payload = "p".repeat(b.payload_bytes);

    // The first publish creates the topic (proxy policy: RF 3, min ISR 2); every scenario
    // then writes to it.
    let warm = http
        .post(format!("{}/v1/events", proxies[0].base))
        .header("content-type", "application/cloudevents+json")
        .body(event(&source, "warm", 0, &payload).to_string())
        .send()
        .await?;
    if warm.status() != 200 {
        bail!(
            "warm-up event answered {}: {}",
            warm.status(),
            warm.text().await?
        );
    }
    let kafka = KafkaConfig {
        bootstrap_servers: b.bootstrap.clone(),
        client_id: "courier-bench-direct".into(),
        ..KafkaConfig::default()
    };
    let direct: FutureProducer = producer_config(&kafka, &DeliveryConfig::default()).create()?;
    let client = courier::Client::builder(service.clone())
        .proxy(&proxies[0].base)
        .max_batch_events(b.batch_size)
        .max_in_flight(b.batch_concurrency)
        .buffer_capacity(b.batch_size * b.batch_concurrency * 4)
        .build()?;
    let run = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let pools = proxies
        .iter()
        .map(|p| Ok(Arc::new(Http1Pool::new(Endpoint::parse(&p.base)?.addr))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bridge_pool = match &b.bridge {
        Some((url, _)) => {
            let url = format!("{}/topics/{topic}", url.trim_end_matches('/'));
            let e = Endpoint::parse(&url)?;
            Some((Arc::new(Http1Pool::new(e.addr)), e.path))
        }
        None => None,
    };
    let floor = match PLANS.iter().any(|p| p.kind == Kind::Floor && wanted(p)) {
        true => {
            let floor = FloorProcess::start(&http).await?;
            let pool = Arc::new(Http1Pool::new(Endpoint::parse(&floor.base)?.addr));
            Some((floor, pool))
        }
        false => None,
    };
    let bench = Bench {
        b: &b,
        floor,
        pools,
        bridge_pool,
        proxies,
        source,
        topic: topic.clone(),
        payload,
        direct,
        client,
        run,
    };
    eprintln!(
        "courier-bench: topic {topic}, bootstrap {}, {} proxies, bridge {}",
        b.bootstrap,
        bench.proxies.len(),
        b.bridge.as_ref().map_or("none", |(u, _)| u.as_str())
    );

    if b.warm_secs > 0.0 {
        bench.warm_brokers().await?;
    }
    let mut rows = Vec::new();
    let max_limit = Duration::from_secs_f64(b.max_secs);
    let rate_limit = Duration::from_secs_f64(b.rate_secs);
    for round in 1..=b.rounds.max(1) {
        for plan in PLANS.iter().filter(|p| wanted(p)) {
            let per = bench.per_unit(plan.kind);
            let in_flight = bench.in_flight(plan);
            // A short unmeasured warm-up: connections opened, code paths hot.
            let tag = format!("{}-r{round}", plan.key);
            let warm_units = (2_000 / per).max(2);
            bench
                .scenario(
                    plan,
                    Load::Max {
                        concurrency: in_flight,
                    },
                    warm_units,
                    &format!("{tag}-warm"),
                    Duration::from_secs(5),
                )
                .await?;
            let mut loads = Vec::new();
            if plan.fixed_rate {
                loads.push((
                    Load::Rate {
                        events_per_sec: b.rate,
                        max_in_flight: in_flight,
                    },
                    ((b.rate * b.rate_secs) as usize).div_ceil(per),
                    rate_limit,
                ));
            }
            loads.push((
                Load::Max {
                    concurrency: in_flight,
                },
                b.events.div_ceil(per),
                max_limit,
            ));
            for (load, units, limit) in loads {
                eprintln!(
                    "[{}] round {round}: {} at {} ({} in flight, {} events/unit) ...",
                    chrono::Utc::now().format("%H:%M:%S"),
                    plan.name,
                    load.label(),
                    in_flight,
                    per
                );
                let (outcome, usage) = bench
                    .scenario(plan, load, units, &format!("{tag}-{}", load.label()), limit)
                    .await?;
                let row = Row {
                    run: bench.run.clone(),
                    round,
                    target: plan.name.to_owned(),
                    proxies: plan.proxies,
                    load: load.label(),
                    in_flight,
                    per_unit: per,
                    outcome,
                    usage,
                    load_avg: load_average(),
                };
                let o = &row.outcome;
                eprintln!(
                    "    {:.0} events/s, p50 {:.1} ms, p99 {:.1} ms, p999 {:.1} ms, {} errors, load {:.1}",
                    o.rate(),
                    o.ms(0.5),
                    o.ms(0.99),
                    o.ms(0.999),
                    o.errors,
                    row.load_avg
                );
                if let Some(csv) = &b.csv {
                    append_csv(csv, std::slice::from_ref(&row))?;
                }
                rows.push(row);
            }
        }
    }
    bench.client.shutdown().await;
    let flushed = bench.direct.clone();
    tokio::task::spawn_blocking(move || flushed.flush(Duration::from_secs(10))).await??;

    let summary = medians(&rows);
    println!();
    if !b.proxy_env.is_empty() {
        let settings: Vec<String> = b
            .proxy_env
            .iter()
            .map(|(k, v)| format!("`{k}={v}`"))
            .collect();
        println!(
            "The proxies ran with {} (not their defaults).\n",
            settings.join(", ")
        );
    }
    println!("{}", markdown(&summary));
    println!("{}", goals(&summary, b.rate));
    println!("{}", cross_check(&summary));
    println!("{}", against_floor(&summary, b.rate));
    if let Some(dir) = &b.svg_dir {
        write_charts(dir, &summary, b.rate)?;
        eprintln!("charts written to {}", dir.display());
    }
    let failed: u64 = rows.iter().map(|r| r.outcome.errors).sum();
    if failed > 0 {
        bail!("{failed} events were not acknowledged");
    }
    Ok(())
}
