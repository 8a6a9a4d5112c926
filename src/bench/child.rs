//! One measured run as a child process, and its own peak memory.
//!
//! Each run the benchmark measures is a process of its own: the peak
//! resident set the kernel reports for a process covers its whole life, so
//! runs made one after another in one process would each report the
//! largest before them. A child's is read when it is reaped (`wait4`'s
//! `ru_maxrss`), so no sampling can miss a short peak; with it come the
//! CPU seconds it used, which say more than its wall time on a machine
//! that other work shares. Its standard output
//! and error go to files beside the run's outputs, and a child that fails
//! is reported with the end of its standard error.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;

/// How often a waiting parent looks at its child.
const POLL: Duration = Duration::from_millis(20);
/// Bytes of a failed child's standard error quoted in the error.
const TAIL_BYTES: usize = 2_000;

/// A child process being measured.
pub struct Running {
    name: String,
    child: std::process::Child,
    stdout: PathBuf,
    stderr: PathBuf,
    started: Instant,
    reaped: bool,
}

/// How a child ended.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Seconds from spawning it to reaping it.
    pub wall_s: f64,
    /// Its peak resident set in KiB, and the CPU seconds it used (user
    /// and system); `None` where the system does not say.
    pub peak_rss_kib: Option<u64>,
    pub cpu_s: Option<f64>,
    /// Where its standard output went.
    pub stdout: PathBuf,
}

/// Starts `command` as the child `name`, its standard output and error
/// written to `dir/NAME.stdout` and `dir/NAME.stderr`.
pub fn spawn(mut command: Command, dir: &Path, name: &str) -> Result<Running, BenchError> {
    let stdout = dir.join(format!("{name}.stdout"));
    let stderr = dir.join(format!("{name}.stderr"));
    let create = |path: &Path| {
        File::create(path).map_err(|cause| BenchError::Io {
            path: path.to_path_buf(),
            cause,
        })
    };
    command
        .stdin(Stdio::null())
        .stdout(create(&stdout)?)
        .stderr(create(&stderr)?);
    let child = command.spawn().map_err(|cause| BenchError::Spawn {
        name: name.to_string(),
        program: command.get_program().to_string_lossy().into_owned(),
        cause,
    })?;
    Ok(Running {
        name: name.to_string(),
        child,
        stdout,
        stderr,
        started: Instant::now(),
        reaped: false,
    })
}

impl Running {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reaps the child if it has ended: its status and peak memory.
    fn try_reap(&mut self) -> Result<Option<(ExitStatus, Usage)>, BenchError> {
        let ended = reap(&mut self.child, false).map_err(|cause| BenchError::Wait {
            name: self.name.clone(),
            cause,
        })?;
        self.reaped |= ended.is_some();
        Ok(ended)
    }

    /// Whether the child still runs; an ended child is an error that
    /// quotes its standard error (it was meant to keep running).
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.try_reap()? {
            None => Ok(()),
            Some((status, _)) => Err(self.failure(format!("ended early ({status})"))),
        }
    }

    /// Waits for the child to end by itself, at most `limit`; a child
    /// that ends in failure, or runs past `limit` (it is then killed), is an
    /// error that quotes its standard error.
    pub fn wait(mut self, limit: Duration) -> Result<Finished, BenchError> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((status, usage)) = self.try_reap()? {
                if !status.success() {
                    return Err(self.failure(format!("failed ({status})")));
                }
                return Ok(self.finished(usage));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = reap(&mut self.child, true);
                self.reaped = true;
                let limit = limit.as_secs();
                return Err(self.failure(format!("ran past {limit} s and was killed")));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Asks the child to stop (SIGTERM) and waits up to `grace` for it to
    /// exit with success.
    pub fn terminate(self, grace: Duration) -> Result<Finished, BenchError> {
        signal_term(&self.child);
        self.wait(grace)
    }

    fn finished(&self, usage: Usage) -> Finished {
        Finished {
            wall_s: self.started.elapsed().as_secs_f64(),
            peak_rss_kib: usage.peak_rss_kib,
            cpu_s: usage.cpu_s,
            stdout: self.stdout.clone(),
        }
    }

    fn failure(&self, how: String) -> BenchError {
        BenchError::Child {
            name: self.name.clone(),
            how,
            stderr: self.stderr.clone(),
            tail: tail(&self.stderr),
        }
    }
}

impl Drop for Running {
    /// A child left behind by an error is killed and reaped, never left
    /// running (a server would keep its port).
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = reap(&mut self.child, true);
        }
    }
}

/// The last [`TAIL_BYTES`] of a file, from a line start where one is near.
fn tail(path: &Path) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let mut from = bytes.len().saturating_sub(TAIL_BYTES);
    if from > 0 {
        if let Some(nl) = bytes[from..].iter().position(|&b| b == b'\n') {
            from += nl + 1;
        }
    }
    String::from_utf8_lossy(&bytes[from..])
        .trim_end()
        .to_string()
}

/// What a reaped child used.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    peak_rss_kib: Option<u64>,
    cpu_s: Option<f64>,
}

/// Reaps `child` if it ended (or, with `block`, once it ends): its status
/// and, on Linux, its usage from `wait4`.
#[cfg(target_os = "linux")]
fn reap(
    child: &mut std::process::Child,
    block: bool,
) -> std::io::Result<Option<(ExitStatus, Usage)>> {
    use std::os::unix::process::ExitStatusExt;
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data; zeroed is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: pid is our own unreaped child; both pointers are to live locals.
        let got = unsafe { libc::wait4(pid, &mut status, flags, &mut usage) };
        match got {
            0 => return Ok(None),
            -1 => {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
            _ => {
                let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
                let used = Usage {
                    peak_rss_kib: u64::try_from(usage.ru_maxrss).ok(),
                    cpu_s: Some(seconds(usage.ru_utime) + seconds(usage.ru_stime)),
                };
                return Ok(Some((ExitStatus::from_raw(status), used)));
            }
        }
    }
}

/// Elsewhere the status alone: memory and CPU are not known.
#[cfg(not(target_os = "linux"))]
fn reap(
    child: &mut std::process::Child,
    block: bool,
) -> std::io::Result<Option<(ExitStatus, Usage)>> {
    let status = if block {
        Some(child.wait()?)
    } else {
        child.try_wait()?
    };
    Ok(status.map(|s| (s, Usage::default())))
}

#[cfg(target_os = "linux")]
fn signal_term(child: &std::process::Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with our own unreaped child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// Elsewhere nothing is sent: the child runs out its grace and is killed,
/// which [`Running::terminate`] reports as a failure.
#[cfg(not(target_os = "linux"))]
fn signal_term(child: &std::process::Child) {
    let _ = child;
}
