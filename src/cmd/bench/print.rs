//! `fraudflow bench`'s figures for people, one line a run, each with the
//! load average just before it (a busy machine explains a slow figure).

use fraudflow::bench::scaling::{imbalance, Scaling, IMBALANCE_LIMIT};
use fraudflow::bench::{BacktestFigures, BenchReport, ChildRun, LiveFigures, PeerComparison};
use fraudflow::eval::Latency;

use crate::cmd::grouped;

pub fn report(r: &BenchReport) {
    let m = &r.machine;
    outln!(
        "machine: {} cores, {}, {}",
        m.cores,
        m.cpu.as_deref().unwrap_or("CPU unknown"),
        m.memory_kib
            .map_or("memory unknown".to_string(), |k| format!(
                "{:.1} GiB",
                gib(k)
            ))
    );
    match (r.input.rows, &r.input.generated) {
        (Some(rows), Some(run)) => outln!(
            "input: {} rows generated (seed {}) into {}; {}",
            grouped(rows),
            r.input.seed.unwrap_or(0),
            r.input.path,
            child(run)
        ),
        _ => outln!("input: {}", r.input.path),
    }
    if let Some(run) = &r.training {
        outln!("training: {}", child(run));
    }
    for b in &r.backtest {
        backtest(b);
    }
    if let Some(s) = &r.scaling {
        scaling(s, r.machine.cores);
    }
    if let Some(l) = &r.live {
        live(l);
    }
    if let Some(p) = &r.peer {
        peer(p);
    }
}

fn backtest(b: &BacktestFigures) {
    outln!(
        "backtest -w {}: {} events in {:.2} s: {:.0} events/s; read to routed {}; {}",
        b.workers,
        grouped(b.events),
        b.seconds,
        b.events_per_second,
        latency(b.latency_us),
        child(&b.run)
    );
}

/// The scaling table, then each backtest's busy time per worker.
fn scaling(s: &Scaling, cores: usize) {
    outln!(
        "scaling on {cores} cores (backtest: events/s of the dataflow, from report.json; \
         features: events/s process start to exit)"
    );
    outln!(
        "{:>7}  {:>16} {:>8} {:>10}  {:>16} {:>8} {:>10}  {:>9}",
        "workers",
        "backtest ev/s",
        "speedup",
        "efficiency",
        "features ev/s",
        "speedup",
        "efficiency",
        "peak RSS"
    );
    for (row, (b, f)) in s.rows.iter().zip(s.growth()) {
        outln!(
            "{:>7}  {:>16} {:>7.2}x {:>9.0} %  {:>16} {:>7.2}x {:>9.0} %  {:>9}",
            row.backtest.workers,
            grouped(row.backtest.events_per_second.round() as u64),
            b.speedup,
            100.0 * b.efficiency,
            grouped(row.features.events_per_second.round() as u64),
            f.speedup,
            100.0 * f.efficiency,
            mb(row.backtest.run.peak_rss_kib)
        );
    }
    if s.rounds.iter().any(|r| r.backtest.len() > 1) {
        rounds(s);
    }
    for row in s.rows.iter().filter(|r| r.busy.len() > 1) {
        let each: Vec<String> = row
            .busy
            .iter()
            .map(|w| {
                let share = 100.0 * w.busy_s / w.wall_s.max(1e-9);
                format!(
                    "worker {} {:.2} s of {:.2} s ({share:.0} %)",
                    w.worker, w.busy_s, w.wall_s
                )
            })
            .collect();
        outln!(
            "backtest -w {} busy: {}",
            row.backtest.workers,
            each.join(", ")
        );
        if let Some(over) = imbalance(&row.busy) {
            let verdict = if over <= IMBALANCE_LIMIT { "yes" } else { "NO" };
            outln!(
                "  no worker more than {:.0} % busier than the mean: {verdict} (the busiest: {:+.1} %)",
                100.0 * IMBALANCE_LIMIT,
                100.0 * over
            );
        }
    }
}

/// Every round's events a second, in turn, under the table of medians.
fn rounds(s: &Scaling) {
    let each = |rates: &[f64]| {
        let rates: Vec<String> = rates.iter().map(|r| grouped(r.round() as u64)).collect();
        rates.join(" / ")
    };
    outln!(
        "each row: the backtest (its peak RSS and busy times too) from its count's median \
         backtest round, the features from its median features round; every round, in turn:"
    );
    for r in &s.rounds {
        outln!(
            "  -w {}: backtest {}; features {}",
            r.workers,
            each(&r.backtest),
            each(&r.features)
        );
    }
}

fn live(l: &LiveFigures) {
    outln!(
        "live -w {} at {} events/s: sent {} events in {:.2} s: {:.0} events/s; \
         receipt to written {} over {} events; POST round trip {}; server {}",
        l.workers,
        grouped(l.rate),
        grouped(l.sent),
        l.seconds,
        l.events_per_second,
        latency(l.latency_us),
        grouped(l.latency_events),
        latency(l.round_trip_us),
        child(&l.run)
    );
}

fn peer(p: &PeerComparison) {
    let f = &p.features;
    outln!(
        "features -w {}: {} events, {:.0} events/s process start to exit; {}",
        f.workers,
        grouped(f.events),
        f.events_per_second,
        child(&f.run)
    );
    let k = &p.peer;
    outln!(
        "{} -p {}: {} rows in, {} out, {:.1} s process start to end: {:.0} events/s; \
         job running {}; CPU {} (JVM and python); peak RSS {} (both, sampled); load before {}",
        k.name,
        k.parallelism,
        grouped(k.rows_in),
        grouped(k.rows_out),
        k.process_total_s,
        k.events_per_second,
        k.job_running_s
            .map_or("-".to_string(), |s| format!("{s:.1} s")),
        seconds(k.cpu_s),
        mb(k.peak_rss_kib),
        load(k.run.load_before)
    );
    if let Some(line) = &k.cpu_line {
        outln!("  {line}");
    }
    outln!(
        "ratio, events/s process start to exit, fraudflow over {}: features {:.1}x{}",
        k.name,
        p.features_ratio,
        p.backtest_ratio
            .map_or(String::new(), |r| format!(", whole backtest {r:.1}x"))
    );
    let times = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.1}x"));
    outln!(
        "ratio, CPU seconds for the input, {} over fraudflow: features {}, whole backtest {}",
        k.name,
        times(p.features_cpu_ratio),
        times(p.backtest_cpu_ratio)
    );
}

fn latency(l: Option<Latency>) -> String {
    let ms = |us: u64| us as f64 / 1e3;
    l.map_or("-".to_string(), |l| {
        format!(
            "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max)
        )
    })
}

fn child(run: &ChildRun) -> String {
    format!(
        "wall {:.2} s, CPU {}, peak RSS {}, load before {}",
        run.wall_s,
        seconds(run.cpu_s),
        mb(run.peak_rss_kib),
        load(run.load_before)
    )
}

fn mb(kib: Option<u64>) -> String {
    kib.map_or("-".to_string(), |k| {
        format!("{:.0} MB", k as f64 * 1.024 / 1e3)
    })
}

fn gib(kib: u64) -> f64 {
    kib as f64 / (1024.0 * 1024.0)
}

fn seconds(s: Option<f64>) -> String {
    s.map_or("-".to_string(), |s| format!("{s:.2} s"))
}

fn load(l: Option<f64>) -> String {
    l.map_or("-".to_string(), |l| format!("{l:.2}"))
}
