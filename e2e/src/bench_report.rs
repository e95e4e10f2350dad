//! How `courier-bench` reports a run: one [`Row`] per scenario, printed as a Markdown table,
//! appended to a CSV file, and drawn as SVG bar charts.
//!
//! The charts are plain SVG written here (horizontal grouped bars, linear or logarithmic
//! axis): a plotting crate would bring font rasterising and image dependencies into the
//! workspace for a few rectangles and labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::bench_measure::Outcome;
use crate::bench_procs::Usage;

/// The process groups reported for every scenario, in column order.
pub const GROUPS: [&str; 4] = ["proxy", "bridge", "bench", "brokers"];

/// One scenario of a run.
#[derive(Debug, Clone)]
pub struct Row {
    /// When the run started (UTC, RFC 3339), the same for every row of a run.
    pub run: String,
    /// Round of the run (1 unless `--rounds`).
    pub round: usize,
    /// What was measured, e.g. `proxy, single-event POSTs`.
    pub target: String,
    /// Proxy processes sharing the load (0 where no proxy is involved).
    pub proxies: usize,
    /// `max` or the offered rate.
    pub load: String,
    /// Units (requests, records) in flight at most.
    pub in_flight: usize,
    /// Events per unit.
    pub per_unit: usize,
    /// The measurement.
    pub outcome: Outcome,
    /// CPU and memory per process group.
    pub usage: BTreeMap<&'static str, Usage>,
    /// The machine's 1-minute load average at the end of the scenario.
    pub load_avg: f64,
}

impl Row {
    fn usage(&self, group: &str) -> Option<Usage> {
        self.usage.get(group).copied()
    }

    /// CPU time `group` spent per acknowledged event, microseconds (from `/proc`: user +
    /// system time of its processes over the scenario, divided by the events).
    pub fn cpu_us_per_event(&self, group: &str) -> Option<f64> {
        let u = self.usage(group)?;
        let acknowledged = self.outcome.events.saturating_sub(self.outcome.errors);
        (acknowledged > 0).then(|| {
            u.cpu_pct / 100.0 * self.outcome.elapsed.as_secs_f64() * 1e6 / acknowledged as f64
        })
    }

    /// The CPU per event of what the scenario measures: the proxy's where one is involved,
    /// else the bridge's, else the benchmark process's own (the direct producer runs in it).
    pub fn gateway_cpu_us_per_event(&self) -> Option<f64> {
        ["proxy", "bridge", "bench"]
            .iter()
            .find(|g| self.usage.contains_key(**g))
            .and_then(|g| self.cpu_us_per_event(g))
    }
}

/// The CSV header, matching [`csv_line`].
pub fn csv_header() -> String {
    let mut h = String::from(
        "run,round,target,proxies,load,in_flight,events_per_unit,events,errors,secs,events_per_s,p50_ms,p99_ms,p999_ms",
    );
    for g in GROUPS {
        let _ = write!(h, ",{g}_cpu_pct,{g}_rss_mib");
    }
    h.push_str(",load_avg_1m,cpu_us_per_event");
    h
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One CSV line for `row` (no trailing newline).
pub fn csv_line(row: &Row) -> String {
    let o = &row.outcome;
    let mut l = format!(
        "{},{},{},{},{},{},{},{},{},{:.3},{:.0},{:.2},{:.2},{:.2}",
        row.run,
        row.round,
        csv_field(&row.target),
        row.proxies,
        row.load,
        row.in_flight,
        row.per_unit,
        o.events,
        o.errors,
        o.elapsed.as_secs_f64(),
        o.rate(),
        o.ms(0.50),
        o.ms(0.99),
        o.ms(0.999),
    );
    for g in GROUPS {
        match row.usage(g) {
            Some(u) => {
                let _ = write!(l, ",{:.0},{:.0}", u.cpu_pct, u.rss_peak_mib);
            }
            None => l.push_str(",,"),
        }
    }
    let _ = write!(l, ",{:.2}", row.load_avg);
    match row.gateway_cpu_us_per_event() {
        Some(us) => {
            let _ = write!(l, ",{us:.1}");
        }
        None => l.push(','),
    }
    l
}

/// Appends `rows` to the CSV file at `path`, writing the header first if the file is new.
pub fn append_csv(path: &Path, rows: &[Row]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let new = !path.exists() || std::fs::metadata(path)?.len() == 0;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new {
        writeln!(f, "{}", csv_header())?;
    }
    for r in rows {
        writeln!(f, "{}", csv_line(r))?;
    }
    Ok(())
}

fn group_cell(u: Option<Usage>) -> String {
    match u {
        Some(u) => format!("{:.0} % / {:.0}", u.cpu_pct, u.rss_peak_mib),
        None => String::new(),
    }
}

/// `rows` as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut t = String::from(
        "| scenario | proxies | load | events/s | CPU µs / event | p50 ms | p99 ms | p999 ms | errors | proxy CPU / RSS MiB | bridge CPU / RSS MiB | bench CPU / RSS MiB | brokers CPU / RSS MiB | load avg |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let o = &r.outcome;
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.0} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.1} |",
            r.target,
            r.proxies,
            r.load,
            o.rate(),
            r.gateway_cpu_us_per_event()
                .map_or_else(String::new, |us| format!("{us:.1}")),
            o.ms(0.50),
            o.ms(0.99),
            o.ms(0.999),
            o.errors,
            group_cell(r.usage("proxy")),
            group_cell(r.usage("bridge")),
            group_cell(r.usage("bench")),
            group_cell(r.usage("brokers")),
            r.load_avg,
        );
    }
    t
}

/// A horizontal grouped bar chart: one group of bars per category, one bar per series.
#[derive(Debug, Clone)]
pub struct BarChart {
    /// Title above the chart.
    pub title: String,
    /// Unit of the values, under the axis.
    pub unit: String,
    /// One label per group of bars.
    pub categories: Vec<String>,
    /// `(name, one value per category)`; `None` draws no bar.
    pub series: Vec<(String, Vec<Option<f64>>)>,
    /// Logarithmic axis (for latencies spanning decades).
    pub log: bool,
}

const COLOURS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn short(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl BarChart {
    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        // A series without a single value (a process not running) gets no legend entry.
        let series: Vec<&(String, Vec<Option<f64>>)> = self
            .series
            .iter()
            .filter(|(_, v)| v.iter().any(Option::is_some))
            .collect();
        let (label_w, plot_w, right) = (300.0, 520.0, 70.0);
        let bar_h = 14.0;
        let gap = 10.0;
        let top = 40.0 + 18.0 * series.len().div_ceil(3) as f64;
        let group_h = bar_h * series.len().max(1) as f64 + gap;
        let height = top + group_h * self.categories.len() as f64 + 50.0;
        let width = label_w + plot_w + right;
        let values = series.iter().flat_map(|(_, v)| v.iter().flatten());
        let max = values.clone().copied().fold(0.0_f64, f64::max).max(1e-9);
        let min_pos = values
            .copied()
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let (lo, hi) = if self.log {
            let lo = 10f64.powf(min_pos.min(max).log10().floor());
            (lo, 10f64.powf(max.log10().ceil()).max(lo * 10.0))
        } else {
            let step = nice_step(max);
            (0.0, (max / step).ceil() * step)
        };
        let x = |v: f64| -> f64 {
            let f = if self.log {
                (v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10())
            } else {
                (v - lo) / (hi - lo)
            };
            label_w + plot_w * f.clamp(0.0, 1.0)
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(
            s,
            r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#,
            escape(&self.title)
        );
        for (k, (name, _)) in series.iter().enumerate() {
            let (lx, ly) = (10.0 + 280.0 * (k % 3) as f64, 38.0 + 18.0 * (k / 3) as f64);
            let _ = writeln!(
                s,
                r#"<rect x="{lx}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
                ly - 10.0,
                COLOURS[k % COLOURS.len()],
                lx + 16.0,
                ly,
                escape(name)
            );
        }
        // Grid and axis labels.
        let plot_bottom = height - 45.0;
        let ticks: Vec<f64> = if self.log {
            let mut t = Vec::new();
            let mut v = lo;
            while v <= hi * 1.0001 {
                t.push(v);
                v *= 10.0;
            }
            t
        } else {
            let step = nice_step(max);
            (0..=((hi - lo) / step).round() as usize)
                .map(|i| lo + step * i as f64)
                .collect()
        };
        for t in ticks {
            let tx = x(t);
            let _ = writeln!(
                s,
                r##"<line x1="{tx:.1}" y1="{top}" x2="{tx:.1}" y2="{plot_bottom}" stroke="#ddd"/><text x="{tx:.1}" y="{}" text-anchor="middle">{}</text>"##,
                plot_bottom + 15.0,
                short(t)
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            label_w + plot_w / 2.0,
            plot_bottom + 35.0,
            escape(&self.unit)
        );
        for (c, cat) in self.categories.iter().enumerate() {
            let gy = top + group_h * c as f64;
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                label_w - 8.0,
                gy + (group_h - gap) / 2.0 + 4.0,
                escape(cat)
            );
            for (k, (_, vals)) in series.iter().enumerate() {
                let Some(Some(v)) = vals.get(c) else { continue };
                let by = gy + bar_h * k as f64;
                let w = x(*v) - label_w;
                let _ = writeln!(
                    s,
                    r#"<rect x="{label_w}" y="{by:.1}" width="{w:.1}" height="{}" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                    bar_h - 2.0,
                    COLOURS[k % COLOURS.len()],
                    label_w + w + 3.0,
                    by + bar_h - 4.0,
                    short(*v)
                );
            }
        }
        s.push_str("</svg>\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_targets_with_commas() {
        assert_eq!(csv_field("proxy, batched"), "\"proxy, batched\"");
        assert_eq!(csv_field("direct"), "direct");
    }

    #[test]
    fn chart_draws_one_bar_per_value() {
        let chart = BarChart {
            title: "t".into(),
            unit: "events/s".into(),
            categories: vec!["a".into(), "b <c>".into()],
            series: vec![("max".into(), vec![Some(10.0), None])],
            log: false,
        };
        let svg = chart.svg();
        assert_eq!(svg.matches("<rect x=\"300\"").count(), 1);
        assert!(svg.contains("b &lt;c&gt;"));
        let log = BarChart { log: true, ..chart }.svg();
        assert!(log.ends_with("</svg>\n"));
    }
}
