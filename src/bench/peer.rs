//! The Apache Flink peer (`../shared/peers/flink`): the same job in Flink
//! SQL, run by its own `run_bench.sh` on the same input, after fraudflow's
//! runs and never beside them.
//!
//! The peer's script is run where it lies, not copied: it is the peer's
//! own way of timing itself. It samples the memory of the whole process
//! tree (python and the JVM it starts), which `wait4` of the python
//! process alone would miss, and waits for a quiet machine first. Its
//! printed lines are read back into [`PeerFigures`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{child, load_average, BenchError, ChildRun};

/// How long one Flink run may take, the wait for a quiet machine included.
const PEER_LIMIT: Duration = Duration::from_secs(3_600);

/// Where the peer is and how to run it.
pub struct PeerSettings {
    /// The peer's folder, holding `run_bench.sh` and `flink_job.py`.
    pub dir: PathBuf,
    /// The python of a virtual environment with `apache-flink` installed.
    pub python: PathBuf,
    /// Flink's parallelism (`-p`).
    pub parallelism: usize,
    /// Seconds the script may wait for a quiet machine (`QUIET_WAIT_S`).
    pub quiet_wait_s: u64,
}

/// What the peer's run printed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerFigures {
    pub name: String,
    pub parallelism: usize,
    /// Rows in the input, and rows in its two sinks together.
    pub rows_in: u64,
    pub rows_out: u64,
    /// Seconds from the python process's start to the job's end.
    pub process_total_s: f64,
    /// `rows_in / process_total_s`.
    pub events_per_second: f64,
    /// Seconds the job was RUNNING, from Flink's log, where it says.
    pub job_running_s: Option<f64>,
    /// Peak RSS of python and the JVM together (sampled every 0.5 s).
    pub peak_rss_kib: Option<u64>,
    /// CPU seconds of the JVM and python together, as the script reports
    /// them.
    pub cpu_s: Option<f64>,
    /// The script's line on the CPU other processes took meanwhile.
    pub cpu_line: Option<String>,
    /// The script's run, as a child of the benchmark.
    pub run: ChildRun,
}

/// Runs the peer once on `input`, its outputs under `out`.
pub fn run_flink(s: &PeerSettings, input: &Path, out: &Path) -> Result<PeerFigures, BenchError> {
    let script = s.dir.join("run_bench.sh");
    if !script.is_file() {
        return Err(BenchError::Output {
            path: script,
            problem: "the Flink peer's script is not there (see --peer-dir)".to_string(),
        });
    }
    let mut command = Command::new("bash");
    command
        .arg(&script)
        .arg(input)
        .arg(out.join("flink"))
        .arg(s.parallelism.to_string())
        .env("PY", &s.python)
        .env("QUIET_WAIT_S", s.quiet_wait_s.to_string())
        .current_dir(out);
    let load_before = load_average();
    let finished = child::spawn(command, out, "flink")?.wait(PEER_LIMIT)?;
    let text = std::fs::read_to_string(&finished.stdout).map_err(|cause| BenchError::Io {
        path: finished.stdout.clone(),
        cause,
    })?;
    parse(&text, s.parallelism, ChildRun::of(&finished, load_before)).map_err(|problem| {
        BenchError::Output {
            path: finished.stdout.clone(),
            problem,
        }
    })
}

/// The figures in the script's output; an error names what is missing.
fn parse(text: &str, parallelism: usize, run: ChildRun) -> Result<PeerFigures, String> {
    let line = |prefix: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map(str::trim)
    };
    let rows = line("rows:").ok_or("no `rows:` line")?;
    let count = |key: &str| {
        rows.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(format!("no {key} in `rows: {rows}`"))
    };
    let job: serde_json::Value = line("job:")
        .ok_or("no `job:` line")
        .and_then(|j| serde_json::from_str(j).map_err(|_| "`job:` is not JSON"))?;
    let total = job["process_total_s"]
        .as_f64()
        .ok_or("no process_total_s in `job:`")?;
    let rows_in = count("input=")?;
    let cpu_line = line("cpu:");
    let python_cpu = cpu_line
        .and_then(|l| l.split("python ").nth(1))
        .and_then(|v| v.split(';').next())
        .and_then(|v| v.trim().parse::<f64>().ok());
    let cpu_s = job["jvm_cpu_s_total"]
        .as_f64()
        .zip(python_cpu)
        .map(|(j, p)| j + p);
    let peak_mib = line("rss:")
        .and_then(|r| r.split('=').nth(1))
        .and_then(|v| v.trim().trim_end_matches("MiB").trim().parse::<u64>().ok());
    Ok(PeerFigures {
        name: "Apache Flink".to_string(),
        parallelism,
        rows_in,
        rows_out: count("sum=")?,
        process_total_s: total,
        events_per_second: rows_in as f64 / total.max(1e-9),
        job_running_s: job["job_running_to_finished_s"].as_f64(),
        peak_rss_kib: peak_mib.map(|m| m * 1024),
        cpu_s,
        cpu_line: cpu_line.map(str::to_string),
        run,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_lines_give_every_figure() {
        let text = "quiet-wait: 20s\n\
            job:    {\"process_total_s\": 100.0, \"job_running_to_finished_s\": 90.5, \"jvm_cpu_s_total\": 150.5}\n\
            rows:   input=1000 alerts=10 normal=990 sum=1000 OK\n\
            rss:    process-tree peak (0.5 s sampling) = 4096 MiB\n\
            cpu:    machine busy 160.0 core-s; JVM 150.5 (submit->finish 140.0); python 3.5; OTHER\n";
        let run = ChildRun {
            wall_s: 101.0,
            peak_rss_kib: None,
            cpu_s: None,
            load_before: None,
        };
        let f = parse(text, 2, run.clone()).expect("every line is there");
        assert_eq!((f.rows_in, f.rows_out), (1000, 1000));
        assert_eq!(f.events_per_second, 10.0);
        assert_eq!(f.job_running_s, Some(90.5));
        assert_eq!(f.peak_rss_kib, Some(4096 * 1024));
        assert_eq!(f.cpu_s, Some(154.0));
        let err = parse("rows: input=1 sum=1\n", 2, run).unwrap_err();
        assert_eq!(err, "no `job:` line");
    }
}
