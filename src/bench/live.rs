//! The live HTTP path measured: a `fraudflow run` server as a child
//! process, driven at a fixed rate by [`super::load`], stopped with
//! SIGTERM, its peak memory read as it is reaped.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use super::child::{self, Running};
use super::load::{self, LoadSettings};
use super::{load_average, BenchError, ChildRun, LiveFigures};

/// How long a server may take to answer `GET /ready`.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// How long a server may take to drain and exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// What the live run needs.
pub struct LiveSettings {
    /// The `fraudflow` executable.
    pub exe: PathBuf,
    /// The dataflow file the server runs (an HTTP source).
    pub dataflow: PathBuf,
    /// The models directory.
    pub models: PathBuf,
    /// Where the server's JSON lines, standard output and error go.
    pub out: PathBuf,
    pub port: u16,
    pub workers: usize,
    pub rate: u64,
    pub seconds: u64,
    pub batch: u64,
}

/// Starts the server, waits until it is ready, drives it, stops it.
pub fn measure(s: &LiveSettings) -> Result<LiveFigures, BenchError> {
    let url = format!("http://127.0.0.1:{}", s.port);
    let mut command = Command::new(&s.exe);
    command
        .arg("--quiet")
        .arg("run")
        .arg(&s.dataflow)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", s.port))
        .arg("--models")
        .arg(&s.models)
        .arg("--out")
        .arg(s.out.join("sinks"))
        .arg("-w")
        .arg(s.workers.to_string());
    let load_before = load_average();
    let mut server = child::spawn(command, &s.out, "live-server")?;
    wait_ready(&mut server, &url)?;
    let report = load::drive(&LoadSettings {
        url,
        rate: s.rate,
        seconds: s.seconds,
        batch: s.batch,
        seed: 1,
    });
    // A server that fell over explains a failed load better than the load
    // error does.
    server.check_alive()?;
    let report = report?;
    let finished = server.terminate(STOP_LIMIT)?;
    Ok(LiveFigures {
        workers: s.workers,
        rate: s.rate,
        sent: report.sent,
        seconds: report.elapsed_s,
        events_per_second: report.events_per_second(),
        latency_us: report.server_latency_us,
        latency_events: report.latency_events,
        round_trip_us: report.round_trip_us,
        run: ChildRun::of(&finished, load_before),
    })
}

/// Polls `GET /ready` until it answers 200; a server that exits meanwhile
/// is reported with its standard error.
fn wait_ready(server: &mut Running, url: &str) -> Result<(), BenchError> {
    let agent = ureq::Agent::new_with_defaults();
    let deadline = Instant::now() + READY_LIMIT;
    let ready = format!("{url}/ready");
    loop {
        server.check_alive()?;
        if agent.get(&ready).call().is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::NotReady {
                url: ready,
                seconds: READY_LIMIT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A port on 127.0.0.1 that was free a moment ago: the server binds it
/// next (another program could take it in between; the server then fails
/// with a clear message).
pub fn free_port() -> Result<u16, BenchError> {
    let io = |cause| BenchError::Io {
        path: PathBuf::from("127.0.0.1:0"),
        cause,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    Ok(listener.local_addr().map_err(io)?.port())
}
