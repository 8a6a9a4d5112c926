//! Timely's own flags: `-w N` threads per process, `-n P -p I` (and `-h
//! hostfile`) for several processes.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use fraudflow::pipeline::harness::CONNECT_TIMEOUT;
use fraudflow::pipeline::Cluster;
use fraudflow::settings::limits;

#[derive(clap::Args, Clone, Debug)]
pub struct TimelyArgs {
    /// Worker threads per process [default: 1, or the dataflow file's].
    #[arg(short = 'w', long = "workers")]
    pub workers: Option<usize>,
    /// Number of processes.
    #[arg(short = 'n', long = "processes", default_value_t = 1)]
    pub processes: usize,
    /// This process's index, from 0.
    #[arg(short = 'p', long = "process", default_value_t = 0)]
    pub process: usize,
    /// File with one `host:port` a line, one line per process; without it,
    /// processes listen on localhost:2101 and up.
    #[arg(short = 'h', long = "hostfile")]
    pub hostfile: Option<PathBuf>,
    /// Seconds to wait for every process to connect before giving up
    /// [default: 30, or the dataflow file's].
    #[arg(long)]
    pub connect_timeout: Option<u64>,
}

impl TimelyArgs {
    /// Checks the flags and turns them into the pipeline's cluster.
    /// Worker threads per process.
    pub fn workers(&self) -> usize {
        self.workers.unwrap_or(1)
    }

    pub fn connect_timeout_given(&self) -> bool {
        self.connect_timeout.is_some()
    }

    pub fn cluster(&self) -> anyhow::Result<Cluster> {
        let workers = self.workers();
        if self.connect_timeout == Some(0) {
            bail!("--connect-timeout must be at least 1 second, got 0");
        }
        if workers == 0 {
            bail!("-w must be at least 1, got 0");
        }
        // Each count is judged on its own first: `-n 0` once said "-p must
        // be below -n", blaming a flag that was never given.
        if self.processes == 0 {
            bail!("-n must be at least 1, got 0");
        }
        let all_local = self.hostfile.is_none();
        limits::check_cluster(workers, self.processes, all_local).map_err(|err| match err {
            limits::LimitError::Workers { .. } => anyhow!("-w {workers}: {err}"),
            limits::LimitError::Processes { .. } => anyhow!("-n {}: {err}", self.processes),
            limits::LimitError::LocalTotal { .. } => {
                anyhow!("-w {workers} -n {}: {err}", self.processes)
            }
        })?;
        if self.process >= self.processes {
            bail!(
                "-p is an index from 0, so it must be below -n: got -p {} with -n {}",
                self.process,
                self.processes
            );
        }
        let addresses = self.addresses()?;
        Ok(Cluster {
            workers,
            process: self.process,
            addresses,
            connect_timeout: self
                .connect_timeout
                .map_or(CONNECT_TIMEOUT, std::time::Duration::from_secs),
        })
    }

    /// One address per process. A hostfile is read and checked whenever it
    /// is given: with `-n 1` it was once ignored unread, so a hostfile of
    /// three hosts ran one process without a word.
    fn addresses(&self) -> anyhow::Result<Vec<String>> {
        let Some(path) = &self.hostfile else {
            return Ok(match self.processes {
                1 => vec![String::new()],
                n => (0..n).map(|i| format!("localhost:{}", 2101 + i)).collect(),
            });
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading hostfile {}", path.display()))?;
        let mut addresses = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            // Checked here, each named: timely refuses a bad one without
            // saying which, or (another process's) only by never reaching it.
            let port = line.rsplit_once(':').filter(|(host, _)| !host.is_empty());
            if !port.is_some_and(|(_, p)| p.parse::<u16>().is_ok_and(|p| p > 0)) {
                bail!(
                    "the hostfile {}, line {}: {line:?} is not host:port (a port from 1 to 65535)",
                    path.display(),
                    number + 1
                );
            }
            addresses.push(line.to_string());
        }
        if addresses.len() != self.processes {
            bail!(
                "the hostfile {} names {} processes, but -n is {}",
                path.display(),
                addresses.len(),
                self.processes
            );
        }
        // A single process connects to nobody: it needs no address.
        Ok(if self.processes == 1 {
            vec![String::new()]
        } else {
            addresses
        })
    }
}
