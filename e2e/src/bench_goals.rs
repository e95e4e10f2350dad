//! How `courier-bench --mode produce` judges and draws its run: the median round of each
//! scenario, the project's goals checked against them, and the SVG charts.

use crate::bench_plans::plan_name;
use crate::bench_report::{BarChart, Row};

/// The median round of one scenario. At the maximum, the round with the median rate; at a
/// fixed rate, where every round offers the same load and the rate says nothing, the round
/// with the median CPU per event (the gateway's: the proxy's, else the bridge's, else the
/// direct producer's own).
fn median_round(rows: &[&Row]) -> Option<Row> {
    let mut v: Vec<&Row> = rows.to_vec();
    let fixed_rate = v.first().is_some_and(|r| r.load != "max");
    if fixed_rate && v.iter().all(|r| r.gateway_cpu_us_per_event().is_some()) {
        let cpu = |r: &Row| r.gateway_cpu_us_per_event().unwrap_or(f64::MAX);
        v.sort_by(|a, b| cpu(a).total_cmp(&cpu(b)));
    } else {
        v.sort_by(|a, b| a.outcome.rate().total_cmp(&b.outcome.rate()));
    }
    v.get(v.len().saturating_sub(1) / 2).map(|r| (*r).clone())
}

/// The rows to chart and judge: per (target, load), the median round (see
/// [`median_round`]).
pub fn medians(rows: &[Row]) -> Vec<Row> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in rows {
        let k = (r.target.clone(), r.load.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.iter()
        .filter_map(|(t, l)| {
            let same: Vec<&Row> = rows
                .iter()
                .filter(|r| &r.target == t && &r.load == l)
                .collect();
            median_round(&same)
        })
        .collect()
}

fn find<'a>(rows: &'a [Row], target: &str, load: &str) -> Option<&'a Row> {
    rows.iter().find(|r| r.target == target && r.load == load)
}

/// The project's goals, judged on `rows`.
pub fn goals(rows: &[Row], rate: f64) -> String {
    let fixed = format!("{rate:.0}/s");
    let row = |key: &str, load: &str| find(rows, plan_name(key), load);
    let max_rate = |key: &str| row(key, "max").map(|r| r.outcome.rate());
    let mut out = String::from("goals:\n");
    let mut line = |what: String, ok: Option<bool>| {
        let verdict = match ok {
            Some(true) => "reached",
            Some(false) => "NOT reached",
            None => "not measured",
        };
        out.push_str(&format!("  {what}: {verdict}\n"));
    };
    let single_cpu = row("proxy-single", &fixed).and_then(|r| r.cpu_us_per_event("proxy"));
    line(
        format!(
            "proxy CPU per single-event request <= 30 µs at {fixed}, realistic events (measured {:.1} µs)",
            single_cpu.unwrap_or(0.0)
        ),
        single_cpu.map(|us| us <= 30.0),
    );
    let batch_cpu = row("proxy-batch", "max").and_then(|r| r.cpu_us_per_event("proxy"));
    line(
        format!(
            "proxy CPU per event in batches <= 5 µs (measured {:.1} µs)",
            batch_cpu.unwrap_or(0.0)
        ),
        batch_cpu.map(|us| us <= 5.0),
    );
    let single = [
        "proxy-single",
        "proxy-single-1k",
        "proxy-single-4k",
        "wrk-single",
        "wrk-single-1k",
        "wrk-single-4k",
    ]
    .iter()
    .filter_map(|k| max_rate(k).map(|r| (r, plan_name(k))))
    .max_by(|a, b| a.0.total_cmp(&b.0));
    line(
        format!(
            "single-event POSTs >= 20,000 events/s at the best concurrency, realistic events (measured {:.0}, {})",
            single.map_or(0.0, |s| s.0),
            single.map_or("", |s| s.1)
        ),
        single.map(|s| s.0 >= 20_000.0),
    );
    let (batch, direct) = (max_rate("proxy-batch"), max_rate("direct"));
    let best_batch = ["proxy-batch", "proxy-batch-64"]
        .iter()
        .filter_map(|k| max_rate(k).map(|r| (r, plan_name(k))))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    let ratio = best_batch.zip(direct).map(|((b, _), d)| b / d);
    line(
        format!(
            "batched POSTs >= 50 % of the direct producer at the best concurrency, same records (measured {:.0} %, {})",
            100.0 * ratio.unwrap_or(0.0),
            best_batch.map_or("", |b| b.1)
        ),
        ratio.map(|r| r >= 0.5),
    );
    let bridge = max_rate("bridge-batch");
    let times = batch.zip(bridge).map(|(b, s)| b / s);
    line(
        format!(
            "batched POSTs >= 5x the Strimzi bridge, batched (measured {:.1}x)",
            times.unwrap_or(0.0)
        ),
        times.map(|t| t >= 5.0),
    );
    let rss = ["proxy-single", "proxy-batch", "client"]
        .iter()
        .filter_map(|k| row(k, &fixed))
        .filter_map(|r| r.usage.get("proxy").map(|u| u.rss_peak_mib))
        .reduce(f64::max);
    line(
        format!(
            "proxy RSS <= 100 MiB at {fixed}, unique ids (peak {:.0} MiB)",
            rss.unwrap_or(0.0)
        ),
        rss.map(|m| m <= 100.0),
    );
    let client = max_rate("client");
    let share = client.zip(batch).map(|(c, b)| c / b);
    line(
        format!(
            "client >= 90 % of batched POSTs (measured {:.0} %)",
            100.0 * share.unwrap_or(0.0)
        ),
        share.map(|s| s >= 0.9),
    );
    out
}

/// Whether courier-bench's own load generator kept up: its single-event figures beside
/// `wrk`'s at the same connection counts. Within 15 % they agree; otherwise the summary says
/// which one reached more, and that figure is the proxy's, not the lower one.
pub fn cross_check(rows: &[Row]) -> String {
    let mut out = String::from(
        "load generator cross-check (courier-bench vs wrk, same proxy, same connections):\n",
    );
    for (own, wrk) in [
        ("proxy-single", "wrk-single"),
        ("proxy-single-1k", "wrk-single-1k"),
        ("proxy-single-4k", "wrk-single-4k"),
    ] {
        let (Some(a), Some(b)) = (
            find(rows, plan_name(own), "max"),
            find(rows, plan_name(wrk), "max"),
        ) else {
            continue;
        };
        let (ra, rb) = (a.outcome.rate(), b.outcome.rate());
        let cpu = |r: &Row| {
            r.cpu_us_per_event("proxy")
                .map_or_else(String::new, |us| format!(", proxy {us:.1} µs CPU/event"))
        };
        let gap = (ra - rb).abs() / ra.max(rb).max(1.0);
        let verdict = if gap <= 0.15 {
            format!("agree within {:.0} %", 100.0 * gap)
        } else if rb > ra {
            format!(
                "DISAGREE: wrk reached {:.0} % more; courier-bench's generator was the limit",
                100.0 * (rb / ra.max(1.0) - 1.0)
            )
        } else {
            format!(
                "DISAGREE: courier-bench reached {:.0} % more than wrk; wrk was the limit",
                100.0 * (ra / rb.max(1.0) - 1.0)
            )
        };
        out.push_str(&format!(
            "  {} connections: courier-bench {ra:.0}/s{}, wrk {rb:.0}/s{}: {verdict}\n",
            a.in_flight,
            cpu(a),
            cpu(b)
        ));
    }
    out
}

/// The proxy's single events beside the HTTP floor (the proxy's HTTP server with no event
/// path) at the same loads: how much of a request's CPU is the request itself on this
/// machine, and how much the proxy's own work.
pub fn against_floor(rows: &[Row], rate: f64) -> String {
    let mut out = String::new();
    for load in [format!("{rate:.0}/s"), "max".to_owned()] {
        let (Some(proxy), Some(floor)) = (
            find(rows, plan_name("proxy-single"), &load),
            find(rows, plan_name("floor-single"), &load),
        ) else {
            continue;
        };
        let (Some(p), Some(f)) = (
            proxy.cpu_us_per_event("proxy"),
            floor.cpu_us_per_event("proxy"),
        ) else {
            continue;
        };
        if out.is_empty() {
            out.push_str(
                "HTTP floor (the proxy's HTTP server answering without an event path, same requests and connections):\n",
            );
        }
        out.push_str(&format!(
            "  at {load}: floor {:.0}/s, {f:.1} µs CPU per request; proxy {:.0}/s, {p:.1} µs: the event path adds {:.1} µs ({:.0} % of the proxy's)\n",
            floor.outcome.rate(),
            proxy.outcome.rate(),
            p - f,
            100.0 * (p - f) / p.max(f64::MIN_POSITIVE)
        ));
    }
    out
}

/// The charts of a run: throughput at the maximum, latency at the fixed rate and at the
/// maximum, CPU and memory per process at the fixed rate.
pub fn write_charts(dir: &std::path::Path, rows: &[Row], rate: f64) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let fixed = format!("{rate:.0}/s");
    let targets: Vec<String> = {
        let mut t: Vec<String> = Vec::new();
        for r in rows {
            if !t.contains(&r.target) {
                t.push(r.target.clone());
            }
        }
        t
    };
    let value = |load: &str, f: &dyn Fn(&Row) -> Option<f64>| -> Vec<Option<f64>> {
        targets
            .iter()
            .map(|t| find(rows, t, load).and_then(f))
            .collect()
    };
    let at = |load: &str| -> Vec<String> {
        targets
            .iter()
            .filter(|t| find(rows, t, load).is_some())
            .cloned()
            .collect()
    };
    let only = |load: &str, v: Vec<Option<f64>>| -> Vec<Option<f64>> {
        targets
            .iter()
            .zip(v)
            .filter(|(t, _)| find(rows, t, load).is_some())
            .map(|(_, v)| v)
            .collect()
    };
    // One bar group per process group, for the fixed-rate scenarios.
    let usage_chart = |file: &'static str,
                       title: String,
                       unit: &str,
                       of: &dyn Fn(&crate::bench_procs::Usage) -> f64| {
        (
            file,
            BarChart {
                title,
                unit: unit.into(),
                categories: at(&fixed),
                series: crate::bench_report::GROUPS
                    .iter()
                    .map(|g| {
                        let v = value(&fixed, &|r| r.usage.get(g).map(of));
                        ((*g).to_owned(), only(&fixed, v))
                    })
                    .collect(),
                log: false,
            },
        )
    };
    let charts = [
        (
            "throughput.svg",
            BarChart {
                title: "Events/s at the maximum (acknowledged by Kafka, acks=all)".into(),
                unit: "events/s".into(),
                categories: targets.clone(),
                series: vec![("events/s".into(), value("max", &|r| Some(r.outcome.rate())))],
                log: false,
            },
        ),
        (
            "latency-fixed-rate.svg",
            BarChart {
                title: format!("Latency at {fixed} offered (from when each request was due)"),
                unit: "milliseconds (log scale)".into(),
                categories: at(&fixed),
                series: ["p50", "p99", "p999"]
                    .iter()
                    .zip([0.5, 0.99, 0.999])
                    .map(|(n, q)| {
                        (
                            (*n).to_owned(),
                            only(&fixed, value(&fixed, &|r| Some(r.outcome.ms(q)))),
                        )
                    })
                    .collect(),
                log: true,
            },
        ),
        (
            "latency-max.svg",
            BarChart {
                title: "Latency at the maximum".into(),
                unit: "milliseconds (log scale)".into(),
                categories: targets.clone(),
                series: ["p50", "p99", "p999"]
                    .iter()
                    .zip([0.5, 0.99, 0.999])
                    .map(|(n, q)| ((*n).to_owned(), value("max", &|r| Some(r.outcome.ms(q)))))
                    .collect(),
                log: true,
            },
        ),
        usage_chart(
            "cpu-fixed-rate.svg",
            format!("CPU at {fixed} offered, % of one core (2 cores = 200 %)"),
            "% of one core",
            &|u| u.cpu_pct,
        ),
        usage_chart(
            "rss-fixed-rate.svg",
            format!("Peak resident memory at {fixed} offered"),
            "MiB",
            &|u| u.rss_peak_mib,
        ),
    ];
    for (file, chart) in charts {
        std::fs::write(dir.join(file), chart.svg())?;
    }
    Ok(())
}
