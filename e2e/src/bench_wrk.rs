//! `wrk` as a second, external load generator for the single-event scenarios: the same
//! kind of events (`scripts/bench/events.lua` makes them as [`crate::bench_targets::realistic_event`]
//! does), the same connection counts, so the summary can say whether courier-bench's own
//! generator kept up with the proxy or set the figure itself.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::bench_measure::Outcome;

/// Runs `wrk` against `url` with `connections` connections (two threads, one per core of
/// this machine) for `duration`, the Lua `script` making each request, `env` given to it.
/// `wrk` reports percentiles, not every latency: the outcome's histogram holds its 50th,
/// 75th, 90th and 99th percentiles with their weights (its p99.9 is wrk's p99).
pub async fn run(
    url: &str,
    connections: usize,
    duration: Duration,
    script: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<Outcome> {
    let secs = duration.as_secs().max(1);
    let mut command = tokio::process::Command::new("wrk");
    command
        .args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s")])
        .args(["--timeout", "30s", "--latency", "-s"])
        .arg(script)
        .arg(url)
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let output = tokio::time::timeout(duration + Duration::from_secs(60), command.output())
        .await
        .context("wrk did not finish in time")?
        .context("running wrk (scripts/setup.sh --bench installs it)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse(&text).with_context(|| format!("reading wrk's report:\n{text}"))
}

/// Reads wrk's report: requests, elapsed time, errors (non-2xx answers and socket errors)
/// and the latency percentiles.
pub fn parse(text: &str) -> anyhow::Result<Outcome> {
    let mut requests = None;
    let mut elapsed = None;
    let mut errors = 0u64;
    let mut percentiles = Vec::new();
    for line in text.lines().map(str::trim) {
        // "123456 requests in 20.01s, 45.67MB read"
        if let Some((n, rest)) = line.split_once(" requests in ") {
            requests = n.trim().parse::<u64>().ok();
            elapsed = rest
                .split(',')
                .next()
                .and_then(|d| duration(d.trim()))
                .map(Duration::from_secs_f64);
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 12"
            errors += rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some((q, v)) = line.split_once('%')
            && let Ok(q) = q.parse::<u32>()
            && let Some(ms) = duration(v.trim()).map(|s| s * 1000.0)
        {
            percentiles.push((q, ms));
        }
    }
    let requests = requests.context("no request count")?;
    let elapsed = elapsed.context("no elapsed time")?;
    let mut latency_us = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3)?;
    let acknowledged = requests.saturating_sub(errors);
    // Weights of wrk's 50/75/90/99 percentile lines: the share of requests at or below each
    // and above the previous one.
    let mut below = 0.0;
    for (q, ms) in &percentiles {
        let share = f64::from(*q) / 100.0 - below;
        below = f64::from(*q) / 100.0;
        let n = (share * acknowledged as f64).round() as u64;
        latency_us.saturating_record_n((ms * 1000.0).max(1.0) as u64, n);
    }
    if let Some((_, ms)) = percentiles.last() {
        let rest = acknowledged.saturating_sub(latency_us.len());
        latency_us.saturating_record_n((ms * 1000.0).max(1.0) as u64, rest);
    }
    Ok(Outcome {
        events: requests,
        errors,
        elapsed,
        latency_us,
    })
}

/// `1.50ms`, `20.01s`, `850.00us`, `1.02m` as seconds.
fn duration(s: &str) -> Option<f64> {
    let (n, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1e6,
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 20s test @ http://127.0.0.1:8080/v1/events
  2 threads and 256 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    24.12ms    8.30ms 281.28ms   90.00%
    Req/Sec     5.12k   400.00     6.00k    70.00%
  Latency Distribution
     50%   24.12ms
     75%   28.00ms
     90%   33.50ms
     99%   39.30ms
  204000 requests in 20.00s, 45.67MB read
  Socket errors: connect 0, read 0, write 0, timeout 4
  Non-2xx or 3xx responses: 6
Requests/sec:  10200.00
Transfer/sec:      2.28MB
";

    #[test]
    fn reads_what_wrk_prints() {
        let o = parse(REPORT).unwrap();
        assert_eq!(o.events, 204_000);
        assert_eq!(o.errors, 10);
        assert_eq!(o.elapsed, Duration::from_secs(20));
        assert!((o.rate() - 10_199.5).abs() < 1.0, "{}", o.rate());
        assert!((o.ms(0.5) - 24.12).abs() < 0.1, "{}", o.ms(0.5));
        assert!((o.ms(0.99) - 39.3).abs() < 0.1, "{}", o.ms(0.99));
        assert_eq!(o.latency_us.len(), 204_000 - 10);
    }

    #[test]
    fn a_report_without_counts_is_an_error() {
        assert!(parse("unable to connect to 127.0.0.1:1 Connection refused").is_err());
    }
}
