//! Timely's own flags: `-w N` threads per process, `-n P -p I` (and `-h
//! hostfile`) for several processes.

use std::path::PathBuf;

use anyhow::{bail, Context};

#[derive(clap::Args, Clone, Debug)]
pub struct TimelyArgs {
    /// Worker threads per process.
    #[arg(short = 'w', long = "workers", default_value_t = 1)]
    pub workers: usize,
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
}

impl TimelyArgs {
    /// Checks the flags and turns them into timely's configuration.
    pub fn config(&self) -> anyhow::Result<timely::Config> {
        if self.workers == 0 {
            bail!("-w must be at least 1, got 0");
        }
        if self.processes == 0 || self.process >= self.processes {
            bail!(
                "-p must be below -n: got -p {} with -n {}",
                self.process,
                self.processes
            );
        }
        let communication = if self.processes == 1 {
            timely::CommunicationConfig::Process(self.workers)
        } else {
            let addresses = match &self.hostfile {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading hostfile {}", path.display()))?;
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from)
                        .collect::<Vec<_>>()
                }
                None => (0..self.processes)
                    .map(|i| format!("localhost:{}", 2101 + i))
                    .collect(),
            };
            if addresses.len() != self.processes {
                bail!(
                    "the hostfile names {} processes, but -n is {}",
                    addresses.len(),
                    self.processes
                );
            }
            timely::CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses,
                report: false,
                zerocopy: false,
            }
        };
        Ok(timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        })
    }
}
