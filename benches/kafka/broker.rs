//! The brokers the bench measures against, all on 127.0.0.1: tansu, started
//! here and killed when dropped, or librdkafka's mock cluster in this
//! process; and the topics of one measurement.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fraudflow::kafka::topics::{ensure_topics, TopicSpec};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

type Error = Box<dyn std::error::Error>;

/// A broker to measure against.
pub enum Broker {
    /// tansu with its in-memory storage.
    Tansu { child: Child, brokers: String },
    /// librdkafka's mock cluster, the one here that does transactions.
    Mock(MockCluster<'static, DefaultProducerContext>),
    /// One already running, at these addresses.
    Given(String),
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Broker::Tansu { child, .. } = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Broker {
    /// tansu on a free port, in memory; answering when this returns.
    pub fn tansu() -> Result<Broker, Error> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_binary()?)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let broker = Broker::Tansu {
            child,
            brokers: format!("127.0.0.1:{port}"),
        };
        broker.wait_answering()?;
        Ok(broker)
    }

    pub fn mock() -> Result<Broker, Error> {
        Ok(Broker::Mock(MockCluster::new(1)?))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Broker::Tansu { .. } => "tansu 0.6 (memory)",
            Broker::Mock(_) => "librdkafka mock cluster",
            Broker::Given(_) => "given broker",
        }
    }

    pub fn brokers(&self) -> String {
        match self {
            Broker::Tansu { brokers, .. } | Broker::Given(brokers) => brokers.clone(),
            Broker::Mock(m) => m.bootstrap_servers(),
        }
    }

    /// At most how many events to preload: the mock cluster finds a
    /// message by scanning its log, so reading slows with its length.
    pub fn most_events(&self) -> usize {
        match self {
            Broker::Mock(_) => 50_000,
            _ => usize::MAX,
        }
    }

    /// Whether this broker commits transactions (tansu 0.6 refuses EndTxn).
    pub fn does_transactions(&self) -> bool {
        !matches!(self, Broker::Tansu { .. })
    }

    fn wait_answering(&self) -> Result<(), Error> {
        let client: BaseConsumer = fraudflow::kafka::client_config(&self.brokers()).create()?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client.fetch_metadata(None, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("the broker at {} did not answer in 30 s", self.brokers()).into())
    }
}

/// The tansu binary, found as the tests find it.
fn tansu_binary() -> Result<PathBuf, Error> {
    crate::tansu_bin::find().ok_or_else(|| {
        format!(
            "no tansu at $TANSU, ~/.cargo/bin/tansu or on PATH: {}; or set \
             FRAUDFLOW_BENCH_BROKERS to use a running broker",
            crate::tansu_bin::INSTALL
        )
        .into()
    })
}

/// The topics of one measurement, named by its prefix so that no two
/// measurements share one: the input (8 partitions, as `raw-events`) and
/// the three outputs (4, 4 and 2).
pub struct Topics {
    pub input: String,
    pub anomalies: String,
    pub metrics: String,
    pub dead_letter: String,
}

impl Topics {
    /// Makes the topics (the mock cluster does not take CreateTopics).
    pub fn create(broker: &Broker, prefix: &str) -> Result<Topics, Error> {
        let topics = Topics {
            input: format!("{prefix}-raw-events"),
            anomalies: format!("{prefix}-anomalies"),
            metrics: format!("{prefix}-metrics"),
            dead_letter: format!("{prefix}-dead-letter"),
        };
        let specs = [
            TopicSpec::new(&topics.input, 8),
            TopicSpec::new(&topics.anomalies, 4),
            TopicSpec::new(&topics.metrics, 4),
            TopicSpec::new(&topics.dead_letter, 2),
        ];
        match broker {
            Broker::Mock(m) => {
                for spec in &specs {
                    m.create_topic(&spec.name, spec.partitions, 1)?;
                }
            }
            _ => {
                ensure_topics(&broker.brokers(), &specs, Duration::from_secs(30))?;
            }
        }
        Ok(topics)
    }

    /// The outputs, with their partition counts.
    pub fn outputs(&self) -> [(&str, i32); 3] {
        [
            (&self.anomalies, 4),
            (&self.metrics, 4),
            (&self.dead_letter, 2),
        ]
    }
}
