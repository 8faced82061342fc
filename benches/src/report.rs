//! Statistics and output: percentiles, Jain's index, the `RESULT`/`RATIO`
//! line format (benches/README.md), and the parent's summary table.

use std::fmt::Write as _;

/// Prints one machine-readable figure: `RESULT <W> <runtime> <metric>=<value>`.
pub fn emit(workload: &str, runtime: &str, metric: &str, value: f64) {
    println!("{}", result_line(workload, runtime, metric, value));
}

pub fn result_line(workload: &str, runtime: &str, metric: &str, value: f64) -> String {
    format!("RESULT {workload} {runtime} {metric}={}", fmt_value(value))
}

/// A human-readable remark from a child, shown under the parent's table.
pub fn note(msg: &str) {
    println!("NOTE {msg}");
}

/// How far a child got (tasks spawned), so the parent can report it if the
/// child dies.
pub fn progress(n: u64) {
    println!("PROGRESS {n}");
}

/// Parses a `RESULT` line into (workload, runtime, metric, value).
pub fn parse_result(line: &str) -> Option<(String, String, String, f64)> {
    let mut parts = line.split_whitespace();
    if parts.next()? != "RESULT" {
        return None;
    }
    let w = parts.next()?.to_string();
    let rt = parts.next()?.to_string();
    let (metric, value) = parts.next()?.split_once('=')?;
    Some((w, rt, metric.to_string(), value.parse().ok()?))
}

/// Integers print as integers, other values with 0 to 3 decimals by
/// magnitude (trailing zeros trimmed), tiny values in exponent form.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if v.fract() == 0.0 && a < 1e15 {
        return format!("{}", v as i64);
    }
    if a != 0.0 && a < 0.01 {
        return format!("{v:.3e}");
    }
    let s = if a >= 100_000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    };
    // Only decimals are trimmed: `{:.0}` has no point, and trimming its
    // zeros divided a value such as 1,424,893,100 by 100 (W6 read 99 %
    // overhead in some runs).
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod fmt_tests {
    use super::fmt_value;

    #[test]
    fn values_keep_their_magnitude() {
        assert_eq!(fmt_value(1_424_893_100.4), "1424893100");
        assert_eq!(fmt_value(1_493_023_940.0), "1493023940");
        assert_eq!(fmt_value(250.50), "250.5");
        assert_eq!(fmt_value(12.0), "12");
        assert_eq!(fmt_value(3.140), "3.14");
        assert_eq!(fmt_value(100_000.2), "100000");
    }
}

/// Median of unsorted values (mean of the two middle ones for even counts).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    assert!(n > 0, "median of nothing");
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile (`q` in 0..=1) of *sorted* values.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of nothing");
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Jain's fairness index: (Σx)² / (n·Σx²); 1 = perfectly fair, 1/n = one
/// hog got everything.
pub fn jain(xs: &[f64]) -> f64 {
    let sum: f64 = xs.iter().sum();
    let sq: f64 = xs.iter().map(|x| x * x).sum();
    if sq == 0.0 {
        return 0.0;
    }
    sum * sum / (xs.len() as f64 * sq)
}

/// Emits lateness p50/p99/max (ms) and the wake-up count for a probe.
pub fn emit_lateness(workload: &str, runtime: &str, lateness_ms: &[f64], with_wakeups: bool) {
    let mut v = lateness_ms.to_vec();
    v.sort_by(f64::total_cmp);
    if with_wakeups {
        emit(workload, runtime, "wakeups", v.len() as f64);
    }
    if v.is_empty() {
        note("the probe never woke up");
        return;
    }
    emit(workload, runtime, "lateness_p50_ms", percentile(&v, 0.50));
    emit(workload, runtime, "lateness_p99_ms", percentile(&v, 0.99));
    emit(workload, runtime, "lateness_max_ms", *v.last().unwrap());
}

/// All values of one (runtime, metric) of a workload, one per repetition.
pub struct Series {
    pub runtime: String,
    pub metric: String,
    pub values: Vec<f64>,
}

/// The parent's collected figures for one workload.
#[derive(Default)]
pub struct WorkloadResults {
    pub series: Vec<Series>,
    /// (runtime, remark), deduplicated, in arrival order.
    pub notes: Vec<(String, String)>,
}

impl WorkloadResults {
    pub fn push(&mut self, runtime: &str, metric: &str, value: f64) {
        match self
            .series
            .iter_mut()
            .find(|s| s.runtime == runtime && s.metric == metric)
        {
            Some(s) => s.values.push(value),
            None => self.series.push(Series {
                runtime: runtime.to_string(),
                metric: metric.to_string(),
                values: vec![value],
            }),
        }
    }

    pub fn note(&mut self, runtime: &str, msg: &str) {
        let entry = (runtime.to_string(), msg.to_string());
        if !self.notes.contains(&entry) {
            self.notes.push(entry);
        }
    }

    pub fn median(&self, runtime: &str, metric: &str) -> Option<f64> {
        let s = self
            .series
            .iter()
            .find(|s| s.runtime == runtime && s.metric == metric)?;
        Some(median(&s.values))
    }

    /// The table (median, min, max, n), the notes, the `RESULT` lines (medians)
    /// and the `RATIO` lines (coroutines / each peer on `ratio_metric`, then
    /// coroutines / threads on each of `extra_ratios`, naming the metric).
    pub fn render(
        &self,
        workload: &str,
        title: &str,
        ratio_metric: Option<&str>,
        extra_ratios: &[&str],
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n== {workload} {title} ==");
        let _ = writeln!(
            out,
            "{:<11} {:<16} {:>13} {:>13} {:>13} {:>3}",
            "runtime", "metric", "median", "min", "max", "n"
        );
        for s in &self.series {
            let min = s.values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = s.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let _ = writeln!(
                out,
                "{:<11} {:<16} {:>13} {:>13} {:>13} {:>3}",
                s.runtime,
                s.metric,
                fmt_value(median(&s.values)),
                fmt_value(min),
                fmt_value(max),
                s.values.len()
            );
        }
        for (rt, msg) in &self.notes {
            let _ = writeln!(out, "  note ({rt}): {msg}");
        }
        for s in &self.series {
            let _ = writeln!(
                out,
                "{}",
                result_line(workload, &s.runtime, &s.metric, median(&s.values))
            );
        }
        if let Some(metric) = ratio_metric {
            if let Some(ours) = self.median("coroutines", metric) {
                for peer in ["may", "tokio", "threads"] {
                    if let Some(theirs) = self.median(peer, metric) {
                        if theirs > 0.0 {
                            let _ = writeln!(
                                out,
                                "RATIO {workload} coroutines/{peer}={}",
                                fmt_ratio(ours / theirs)
                            );
                        }
                    }
                }
            }
        }
        for metric in extra_ratios {
            if let (Some(ours), Some(theirs)) = (
                self.median("coroutines", metric),
                self.median("threads", metric),
            ) {
                if theirs > 0.0 {
                    let _ = writeln!(
                        out,
                        "RATIO {workload} {metric} coroutines/threads={}",
                        fmt_ratio(ours / theirs)
                    );
                }
            }
        }
        out
    }
}

fn fmt_ratio(r: f64) -> String {
    if r >= 10.0 {
        format!("{r:.1}")
    } else if r >= 0.1 {
        format!("{r:.2}")
    } else {
        format!("{r:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert!((jain(&[1.0, 1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((jain(&[1.0, 0.0, 0.0, 0.0]) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn result_lines_round_trip() {
        let line = result_line("W1", "coroutines", "ns_per_yield", 9.8);
        assert_eq!(line, "RESULT W1 coroutines ns_per_yield=9.8");
        let (w, rt, m, v) = parse_result(&line).unwrap();
        assert_eq!(
            (w.as_str(), rt.as_str(), m.as_str(), v),
            ("W1", "coroutines", "ns_per_yield", 9.8)
        );
        assert_eq!(fmt_value(100000.0), "100000");
        assert_eq!(fmt_value(2950.14), "2950.1");
        assert_eq!(fmt_value(0.25), "0.25");
        assert_eq!(fmt_value(1_998_705_867.6), "1998705868");
    }
}
