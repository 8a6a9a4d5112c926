//! The HTTP API of a live run, on a tokio runtime of its own threads (never
//! the timely workers'): `POST /events`, `GET /health`, `GET /ready`,
//! `POST /models/reload`, `POST /feedback`, `GET /metrics`. It hands events to the dataflow through the live
//! input, ticks the event-time clock, and on SIGTERM or Ctrl-C stops
//! accepting and closes the input, so the dataflow drains and ends.

mod events;
pub mod feedback;
pub mod reload;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;

use crate::metrics::events::Scraped;
use crate::sinks::file::live::LiveStats;
use crate::sources::kafka::KafkaInput;
use crate::sources::live::LiveInput;
use reload::ModelReloader;

/// How long open requests may go on after SIGTERM before the input closes
/// regardless.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a request's body may take to arrive.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request's body was not taken.
enum BodyRefused {
    /// Over the limit (413), declared so or found so while reading.
    TooLarge,
    /// Not all there within [`BODY_TIMEOUT`] (408).
    TooSlow,
}

/// How long a body whose `Content-Length` is over the limit is read before
/// it is refused: an honest client has sent past the limit by then (and is
/// refused by size, having written its body); one that declared more than
/// it sends is not waited for the whole [`BODY_TIMEOUT`].
const DECLARED_OVER_WAIT: Duration = Duration::from_secs(1);

/// Reads a request's body of at most `limit` bytes within [`BODY_TIMEOUT`]
/// (within [`DECLARED_OVER_WAIT`] when its `Content-Length` is over the
/// limit). Refusing such a body before reading any of it made a client
/// still writing it see its connection reset rather than the 413.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, BodyRefused> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let over = declared.is_some_and(|n| n > limit as u64);
    let wait = if over {
        DECLARED_OVER_WAIT
    } else {
        BODY_TIMEOUT
    };
    match tokio::time::timeout(wait, to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(BodyRefused::TooLarge),
        Err(_) if over => Err(BodyRefused::TooLarge),
        Err(_) => Err(BodyRefused::TooSlow),
    }
}

/// What the handlers share.
pub struct ServeState {
    /// The live input: events over HTTP come in through it; it closes the
    /// run. A Kafka run has one too (its watermark hub) and takes no
    /// events over HTTP.
    pub input: Arc<LiveInput>,
    /// A Kafka run's source: its health is the run's.
    pub kafka: Option<Arc<KafkaInput>>,
    pub stats: Arc<LiveStats>,
    /// On process 0 only: where new model versions come from.
    pub models: Option<Arc<ModelReloader>>,
    /// The version scoring now, as this process knows it (the dataflow
    /// writes the versions the learner promotes).
    pub model_version: Arc<std::sync::Mutex<String>>,
    /// Labels of `POST /feedback`, when the dataflow learns from them.
    pub labels: Option<Arc<crate::dataflow::feedback::live::LiveLabels>>,
    /// A Kafka run's: labels go to the `feedback` topic through it (or its
    /// outbox), and reach the dataflow from there.
    pub publisher: Option<Arc<crate::kafka::publish::Publisher>>,
    /// Set by `POST /flush` for the learner (process 0's) to fit what it
    /// has buffered.
    pub flush: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// When set, `POST /feedback` and `POST /flush` need
    /// `Authorization: Bearer` this.
    pub api_token: Option<String>,
    pub workers: usize,
    pub process: usize,
    pub processes: usize,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// This process's metrics, served on `GET /metrics` (`None`: off).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Events handed to the dataflow, and dead letters among them.
    pub events_in: AtomicU64,
    pub rejected: AtomicU64,
}

/// A running server: stop it, then join it.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<watch::Sender<bool>>,
    thread: std::thread::JoinHandle<std::io::Result<()>>,
}

/// Stops a server from another thread, as SIGTERM would: it stops
/// accepting and closes the input, so the dataflow drains and ends.
#[derive(Clone)]
pub struct Stopper(Arc<watch::Sender<bool>>);

impl Stopper {
    pub fn stop(&self) {
        let _ = self.0.send(true);
    }
}

impl Server {
    /// Binds `addr` (errors come back here, before any worker starts) and
    /// serves on a thread of its own until SIGTERM, Ctrl-C or `stop`; then
    /// closes the live input. The clock ticks the input every `tick` (a
    /// Kafka run's time follows its data alone: `None`).
    pub fn start(
        addr: SocketAddr,
        state: Arc<ServeState>,
        tick: Option<Duration>,
    ) -> std::io::Result<Server> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fraudflow:http")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("fraudflow:serve".into())
            .spawn(move || runtime.block_on(serve(listener, state, tick, stopped)))?;
        Ok(Server {
            addr,
            stop: Arc::new(stop),
            thread,
        })
    }

    /// A handle that stops this server from any thread.
    pub fn stopper(&self) -> Stopper {
        Stopper(Arc::clone(&self.stop))
    }

    /// Stops accepting (if a signal has not already) and waits for the
    /// server to close the input.
    pub fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.join()
    }

    /// Waits for the server to end (after a signal or `stop`).
    pub fn join(self) -> std::io::Result<()> {
        self.thread
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the HTTP server panicked")))
    }
}

fn router(state: Arc<ServeState>) -> Router {
    let router = if state.kafka.is_none() {
        Router::new().route("/events", post(events::post_events))
    } else {
        Router::new()
    };
    router
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/models/reload", post(reload::post_reload))
        .route("/feedback", post(feedback::post_feedback))
        .route("/flush", post(feedback::post_flush))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<ServeState>,
    tick: Option<Duration>,
    mut stopped: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let input = Arc::clone(&state.input);
    let ticker = tokio::spawn(async move {
        let Some(tick) = tick else { return };
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            input.tick(crate::clock::now_millis());
        }
    });
    let (stopping, mut stopping_rx) = watch::channel(false);
    let asked = Arc::clone(&state.input);
    let shutdown = async move {
        tokio::select! {
            _ = signal() => {}
            _ = stopped.wait_for(|s| *s) => {}
            // Another process of the run stopped (`sources::together`).
            _ = async {
                while !asked.stop_requested() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } => {}
        }
        // Still waiting for the other processes: nothing was taken, and
        // the wait would hold the process until its timeout.
        if !asked.is_started() {
            crate::pipeline::connect::stop_waiting();
        }
        let _ = stopping.send(true);
    };
    let input = Arc::clone(&state.input);
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown);
    // Requests still open after the grace period (a client that never
    // finishes its body) do not hold the drain back.
    let result = tokio::select! {
        r = server => r,
        _ = async {
            let _ = stopping_rx.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => Ok(()),
    };
    ticker.abort();
    // No more events can come: the dataflow drains what it has and ends.
    input.close();
    result
}

/// SIGTERM or Ctrl-C.
async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn health(State(state): State<Arc<ServeState>>) -> Response {
    let frontier = state.input.watermark();
    let s = &state.stats;
    let latency = s.latency();
    let kafka = state.kafka.as_deref().map(kafka_health);
    let troubled = state.kafka.as_ref().is_some_and(|k| !k.health.is_ok());
    let status = match (state.input.is_closed(), troubled) {
        (true, _) => "stopping",
        (false, true) => "degraded",
        (false, false) => "serving",
    };
    let body = json!({
        "status": status,
        "kafka": kafka,
        "workers": state.workers,
        "process": state.process,
        "processes": state.processes,
        "model_version": *state.model_version.lock().unwrap_or_else(|e| e.into_inner()),
        "frontier_ms": frontier,
        "frontier": crate::clock::format_millis(frontier as i64),
        "events_in": state.events_in.load(Ordering::Relaxed),
        "rejected": state.rejected.load(Ordering::Relaxed),
        "late": state.input.late(),
        "alerts": s.alerts.load(Ordering::Relaxed),
        "normal": s.normal.load(Ordering::Relaxed),
        "dead_letters": s.dead_letters.load(Ordering::Relaxed),
        "latency_us": latency,
        "latency_events": s.latency_count(),
    });
    Json(body).into_response()
}

/// A Kafka run's part of `/health`: what is wrong with the brokers now,
/// and what the source has read.
fn kafka_health(k: &KafkaInput) -> serde_json::Value {
    json!({
        "ok": k.health.is_ok(),
        "problems": k.health.problems(),
        "seconds_unhealthy": k.health.seconds_unhealthy(),
        "problems_reported": k.health.reports(),
        "topic": k.settings.topic,
        "partitions": k.partitions.load(Ordering::Relaxed),
        "read": k.read.load(Ordering::Relaxed),
        "late": k.late.load(Ordering::Relaxed),
        "replayed": k.replayed.load(Ordering::Relaxed),
    })
}

/// `GET /metrics`: the process's metrics in Prometheus's text format,
/// with what only a scrape reads (the brokers, the outbox) read now.
async fn metrics(State(state): State<Arc<ServeState>>) -> Response {
    let Some(metrics) = &state.metrics else {
        let error = "metrics are off in this process";
        return (StatusCode::NOT_FOUND, Json(json!({ "error": error }))).into_response();
    };
    let lags = state.kafka.as_ref().map(|k| k.health.lags());
    metrics.emit(Scraped {
        kafka: state
            .kafka
            .as_ref()
            .zip(lags.as_deref())
            .map(|(k, lags)| (k.health.is_ok(), lags)),
        outbox: state.publisher.as_ref().map(|p| p.outbox().len()),
    });
    let headers = [(
        axum::http::header::CONTENT_TYPE,
        "text/plain; version=0.0.4; charset=utf-8",
    )];
    (headers, metrics.encode()).into_response()
}

async fn ready(State(state): State<Arc<ServeState>>) -> Response {
    if state.input.is_started() && !state.input.is_closed() {
        (StatusCode::OK, Json(json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false})),
        )
            .into_response()
    }
}
