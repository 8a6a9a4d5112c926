//! The deployment files agree with the code and with each other, checked
//! without servers: every metric the dashboard and the alert rules name is
//! one the code exports; every alert has its runbook section; the compose
//! file has the services the stack needs, each process scraped by
//! Prometheus on the port it serves. Where Docker Compose is installed,
//! `docker compose config` must accept the file too. (The queries
//! themselves run against a real Prometheus in `prometheus.rs`.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use fraudflow::metrics::events::{ModelInForce, Scraped};
use fraudflow::metrics::{Exposed, Metrics};
use yaml_rust2::{Yaml, YamlLoader};

fn infra(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("infra")
        .join(path)
}

fn yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(infra(path)).unwrap();
    let mut docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs.len(), 1, "{path}");
    docs.remove(0)
}

/// Every family name the code exports, a Kafka run's included.
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::for_process(Exposed {
        process: 0,
        workers: 1,
        kafka: true,
    });
    // The two families without series until something happens: the
    // version in force, and a partition's lag.
    metrics.emit(ModelInForce {
        version: "v",
        first: true,
        unix_seconds: 0.0,
    });
    metrics.emit(Scraped {
        kafka: Some((true, &[(0, 0)])),
        outbox: Some(0),
    });
    metrics
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect()
}

/// The alert rules' and recording rules' expressions, by name.
fn rules() -> Vec<(String, String, bool)> {
    let doc = yaml("prometheus/alerts.yml");
    let mut out = Vec::new();
    for group in doc["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let alert = rule["alert"].as_str();
            let name = alert.or(rule["record"].as_str()).unwrap().to_string();
            out.push((
                name,
                rule["expr"].as_str().unwrap().to_string(),
                alert.is_some(),
            ));
        }
    }
    out
}

#[test]
fn every_metric_the_dashboard_and_the_rules_read_is_one_the_code_exports() {
    let exported = exported();
    let dashboard = std::fs::read_to_string(infra("grafana/dashboards/fraudflow.json")).unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut exprs = Vec::new();
    let mut panels = vec![&dashboard];
    while let Some(p) = panels.pop() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
            assert_eq!(t["datasource"]["uid"], "prometheus", "{t}");
        }
        panels.extend(p["panels"].as_array().into_iter().flatten());
    }
    let recorded: BTreeSet<String> = rules().into_iter().filter(|r| !r.2).map(|r| r.0).collect();
    exprs.extend(rules().into_iter().map(|r| r.1));
    let mut read = BTreeSet::new();
    for e in &exprs {
        for name in fraudflow::demo::readiness::names_in(e) {
            assert!(
                exported.contains(&name) || recorded.contains(&name),
                "{name} (in {e}) is not exported"
            );
            read.insert(name);
        }
    }
    // Nothing is exported that no panel or rule shows.
    let unread: Vec<_> = exported.difference(&read).collect();
    assert!(unread.is_empty(), "never read: {unread:?}");
}

#[test]
fn every_alert_has_a_severity_a_summary_and_its_runbook_section() {
    let doc = yaml("prometheus/alerts.yml");
    let operations =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    let mut alerts = 0;
    for group in doc["groups"].as_vec().unwrap() {
        for rule in group["rules"].as_vec().unwrap() {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            alerts += 1;
            let severity = rule["labels"]["severity"].as_str();
            assert!(matches!(severity, Some("warning" | "critical")), "{name}");
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name}");
            let runbook = rule["annotations"]["runbook_url"].as_str().unwrap();
            let anchor = name.to_lowercase();
            assert!(
                runbook.ends_with(&format!("docs/operations.md#{anchor}")),
                "{name}"
            );
            assert!(
                operations.contains(&format!("\n### {name}\n")),
                "{name}: no section"
            );
        }
    }
    assert!(alerts >= 9, "{alerts} alerts");
}

/// Runs `command`, asserting that it succeeded; returns its output.
fn succeeded(command: &mut Command) -> std::process::Output {
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{command:?} failed: {stderr}");
    out
}

/// A service's `command`, as one string.
fn command(service: &Yaml) -> String {
    let words = service["command"].as_vec().unwrap();
    let words: Vec<&str> = words.iter().map(|w| w.as_str().unwrap()).collect();
    words.join(" ")
}

/// `docker compose config` must accept the file where Docker Compose is
/// installed (this machine's docker has no compose plugin: the structure
/// the test checks is then all that is checked).
fn compose_config_where_compose_is() {
    let compose_ok = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if compose_ok {
        succeeded(
            Command::new("docker")
                .args(["compose", "-f"])
                .arg(infra("docker-compose.yml"))
                .args(["config", "-q"]),
        );
    }
}

#[test]
fn the_compose_stack_has_kafka_in_kraft_mode_prometheus_grafana_and_two_processes_scraped() {
    compose_config_where_compose_is();
    let compose = yaml("docker-compose.yml");
    let services = &compose["services"];
    let kafka = &services["kafka"]["environment"];
    assert_eq!(
        kafka["KAFKA_PROCESS_ROLES"].as_str(),
        Some("broker,controller")
    );
    assert!(
        services["zookeeper"].is_badvalue(),
        "no ZooKeeper in KRaft mode"
    );
    for s in ["prometheus", "grafana", "models"] {
        assert!(!services[s].is_badvalue(), "{s} is missing");
    }
    assert!(infra("Dockerfile").exists());
    // Two processes of one cluster, each scraped on its port: --listen's
    // port + its index.
    let scrape = yaml("prometheus/prometheus.yml");
    let job = scrape["scrape_configs"]
        .as_vec()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("fraudflow"))
        .unwrap();
    let targets = job["static_configs"][0]["targets"].as_vec().unwrap();
    let targets: Vec<&str> = targets.iter().map(|t| t.as_str().unwrap()).collect();
    for p in 0..2u16 {
        let name = format!("fraudflow-{p}");
        let service = &services[name.as_str()];
        let run = command(service);
        assert!(run.contains(&format!("-n 2 -p {p}")), "{run}");
        assert!(run.contains("--listen 0.0.0.0:8080"), "{run}");
        assert!(
            targets.contains(&format!("{name}:{}", 8080 + p).as_str()),
            "{targets:?}"
        );
    }
    let datasource = yaml("grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        datasource["datasources"][0]["uid"].as_str(),
        Some("prometheus")
    );
}

/// The StatefulSet's fraudflow container.
fn container(statefulset: &Yaml) -> &Yaml {
    let containers = statefulset["spec"]["template"]["spec"]["containers"]
        .as_vec()
        .unwrap();
    containers
        .iter()
        .find(|c| c["name"].as_str() == Some("fraudflow"))
        .unwrap()
}

/// A named port of a list of container or service ports.
fn port(ports: &Yaml, name: &str, key: &str) -> i64 {
    let ports = ports.as_vec().unwrap();
    let port = ports.iter().find(|p| p["name"].as_str() == Some(name));
    port.unwrap_or_else(|| panic!("no port {name}"))[key]
        .as_i64()
        .unwrap()
}

/// The kustomization's generated ConfigMap: its literals, and the files it
/// is made of.
fn config_map() -> (Vec<(String, String)>, Vec<String>) {
    let kustomization = yaml("k8s/kustomization.yaml");
    let generator = &kustomization["configMapGenerator"][0];
    assert_eq!(generator["name"].as_str(), Some("fraudflow"));
    let list = |key: &str| -> Vec<String> {
        let items = generator[key].as_vec().unwrap();
        items
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect()
    };
    let literals = list("literals")
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    (literals, list("files"))
}

/// What pod `fraudflow-INDEX` of a namespace `ns` runs: its container's
/// command run by `sh` with the container's environment, the `fraudflow`
/// it execs replaced by a stub that writes down its arguments (and
/// `getent` by one that finds every name). Returns the arguments and the
/// hostfile the command wrote.
fn pod_command(statefulset: &Yaml, index: usize, ns: &str) -> (Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let stub = |name: &str, body: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        Command::new("chmod").arg("+x").arg(&path).status().unwrap();
    };
    stub("getent", "exit 0");
    stub("fraudflow", "printf '%s\\n' \"$@\" > \"$ARGS_OUT\"");
    let c = container(statefulset);
    let words: Vec<&str> = c["command"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(&words[..2], ["sh", "-c"]);
    let mut command = Command::new("sh");
    command.arg("-c").arg(words[2]).env_clear();
    let (literals, _) = config_map();
    for var in c["env"].as_vec().unwrap() {
        let from = &var["valueFrom"];
        let value = match (
            var["value"].as_str(),
            from["fieldRef"]["fieldPath"].as_str(),
        ) {
            (Some(v), _) => v.to_string(),
            (None, Some("metadata.namespace")) => ns.to_string(),
            _ if from["secretKeyRef"]["optional"].as_bool() == Some(true) => continue,
            _ => {
                let key = from["configMapKeyRef"]["key"].as_str().unwrap();
                literals.iter().find(|l| l.0 == key).unwrap().1.clone()
            }
        };
        command.env(var["name"].as_str().unwrap(), value);
    }
    let (hosts, args) = (dir.path().join("hosts"), dir.path().join("args"));
    let path = format!("{}:/usr/bin:/bin", dir.path().display());
    succeeded(
        command
            .env("PATH", path)
            .env("HOSTNAME", format!("fraudflow-{index}"))
            .env("FRAUDFLOW_HOSTFILE", &hosts)
            .env("ARGS_OUT", &args),
    );
    let lines = |p: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(p).unwrap();
        text.lines().map(String::from).collect()
    };
    (lines(&args), lines(&hosts))
}

/// The value that follows `flag` in `args`.
fn flag<'a>(args: &'a [String], flag: &str) -> &'a str {
    let at = args.iter().position(|a| a == flag);
    &args[at.unwrap_or_else(|| panic!("no {flag} in {args:?}")) + 1]
}

/// Every flag `fraudflow run --help` lists.
fn run_flags() -> BTreeSet<String> {
    let out = crate::common::fraudflow(&["run", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    help.split_whitespace()
        .filter(|w| w.starts_with('-'))
        .map(|w| {
            w.trim_end_matches(',')
                .split(['=', '<'])
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[test]
fn each_k8s_pod_is_the_process_of_its_ordinal_in_a_cluster_of_replicas() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let service = yaml("k8s/service.yaml");
    let name = statefulset["metadata"]["name"].as_str().unwrap();
    let domain = statefulset["spec"]["serviceName"].as_str().unwrap();
    assert_eq!(service["metadata"]["name"].as_str(), Some(domain));
    // Headless, and naming pods before they are ready: a process is ready
    // only once it has found the others by these names.
    assert_eq!(service["spec"]["clusterIP"].as_str(), Some("None"));
    assert_eq!(
        service["spec"]["publishNotReadyAddresses"].as_bool(),
        Some(true)
    );
    let labels = &statefulset["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_hash().unwrap() {
        assert_eq!(&labels[k.as_str().unwrap()], v);
    }
    let replicas = statefulset["spec"]["replicas"].as_i64().unwrap() as usize;
    let c = container(&statefulset);
    let timely = port(&c["ports"], "timely", "containerPort");
    assert_eq!(port(&service["spec"]["ports"], "timely", "port"), timely);
    let http = port(&c["ports"], "http", "containerPort");
    let accepted = run_flags();
    for index in 0..replicas {
        let (args, hosts) = pod_command(&statefulset, index, "ns");
        let expected: Vec<String> = (0..replicas)
            .map(|i| format!("{name}-{i}.{domain}.ns.svc.cluster.local:{timely}"))
            .collect();
        assert_eq!(hosts, expected, "one line per replica");
        assert_eq!(args[0], "run");
        assert_eq!(flag(&args, "-n"), replicas.to_string());
        assert_eq!(flag(&args, "-p"), index.to_string());
        for a in args.iter().filter(|a| a.starts_with('-')) {
            assert!(accepted.contains(a), "`fraudflow run --help` lists no {a}");
        }
        // Process P listens on --listen's port + P: every pod on `http`.
        let listen: std::net::SocketAddr = flag(&args, "--listen").parse().unwrap();
        assert_eq!(i64::from(listen.port()) + index as i64, http, "pod {index}");
    }
}

#[test]
fn the_k8s_ports_probes_scrape_and_resources_agree_with_live_toml() {
    let statefulset = yaml("k8s/statefulset.yaml");
    let service = yaml("k8s/service.yaml");
    let spec = &statefulset["spec"];
    let c = container(&statefulset);
    let http = port(&c["ports"], "http", "containerPort");
    assert_eq!(port(&service["spec"]["ports"], "http", "port"), http);
    let scrape = &spec["template"]["metadata"]["annotations"];
    assert_eq!(scrape["prometheus.io/scrape"].as_str(), Some("true"));
    assert_eq!(
        scrape["prometheus.io/port"].as_str(),
        Some(http.to_string().as_str())
    );
    assert_eq!(scrape["prometheus.io/path"].as_str(), Some("/metrics"));
    for (probe, path) in [
        ("startupProbe", "/health"),
        ("livenessProbe", "/health"),
        ("readinessProbe", "/ready"),
    ] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"].as_str(), Some(path), "{probe}");
        assert_eq!(get["port"].as_str(), Some("http"), "{probe}");
    }
    // timely's cluster is fixed at start: the pods start and go together,
    // and a template change never rolls one pod at a time.
    assert_eq!(spec["podManagementPolicy"].as_str(), Some("Parallel"));
    assert_eq!(spec["updateStrategy"]["type"].as_str(), Some("OnDelete"));
    // No -w: the file's [cluster] workers run, a core requested for each,
    // and no more workers in all than raw-events has partitions to read.
    let (args, _) = pod_command(&statefulset, 0, "ns");
    assert!(
        !args.iter().any(|a| a == "-w" || a == "--workers"),
        "{args:?}"
    );
    let file = fraudflow::settings::DataflowFile::load(&infra("k8s/live.toml")).unwrap();
    let workers = file.cluster.workers;
    let requests = &c["resources"]["requests"];
    assert_eq!(requests["cpu"].as_str(), Some(workers.to_string().as_str()));
    assert!(requests["memory"].as_str().is_some());
    let replicas = spec["replicas"].as_i64().unwrap() as usize;
    let partitions = file.source.kafka.unwrap().partitions.raw_events as usize;
    assert!(
        replicas * workers <= partitions,
        "{replicas} pods of {workers} workers, {partitions} partitions"
    );
}

#[test]
fn the_k8s_config_map_is_dataflows_live_toml() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let original = std::fs::read(root.join("dataflows/live.toml")).unwrap();
    let copy = std::fs::read(infra("k8s/live.toml")).unwrap();
    assert!(
        copy == original,
        "infra/k8s/live.toml differs from dataflows/live.toml"
    );
    let (literals, files) = config_map();
    assert_eq!(files, ["live.toml"]);
    assert!(literals.iter().any(|l| l.0 == "brokers"), "{literals:?}");
    // The pod reads the file where the config map is mounted.
    let statefulset = yaml("k8s/statefulset.yaml");
    let volumes = statefulset["spec"]["template"]["spec"]["volumes"]
        .as_vec()
        .unwrap();
    let settings = volumes
        .iter()
        .find(|v| !v["configMap"].is_badvalue())
        .unwrap();
    assert_eq!(settings["configMap"]["name"].as_str(), Some("fraudflow"));
    let item = &settings["configMap"]["items"][0];
    assert_eq!(item["key"].as_str(), Some("live.toml"));
    let volume = settings["name"].as_str().unwrap();
    let mounts = container(&statefulset)["volumeMounts"].as_vec().unwrap();
    let mount = mounts
        .iter()
        .find(|m| m["name"].as_str() == Some(volume))
        .unwrap();
    let (args, _) = pod_command(&statefulset, 0, "ns");
    let read = format!(
        "{}/{}",
        mount["mountPath"].as_str().unwrap(),
        item["path"].as_str().unwrap()
    );
    assert_eq!(args[1], read);
    kustomize_where_kubectl_is();
}

/// `kubectl kustomize` must render the folder where kubectl is installed,
/// the generated config map's hashed name put in every reference to it.
fn kustomize_where_kubectl_is() {
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        return;
    }
    let out = succeeded(Command::new("kubectl").arg("kustomize").arg(infra("k8s")));
    let docs = YamlLoader::load_from_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "ConfigMap",
        "Service",
        "StatefulSet",
        "PersistentVolumeClaim",
        "Job",
    ] {
        assert!(kinds.contains(kind), "{kind} not rendered: {kinds:?}");
    }
    let map = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("ConfigMap"))
        .unwrap();
    let hashed = map["metadata"]["name"].as_str().unwrap();
    assert!(hashed.starts_with("fraudflow-"), "{hashed}");
    let set = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("StatefulSet"))
        .unwrap();
    let env = container(set)["env"].as_vec().unwrap();
    let brokers = env
        .iter()
        .find(|e| e["name"].as_str() == Some("KAFKA_BROKERS"))
        .unwrap();
    assert_eq!(
        brokers["valueFrom"]["configMapKeyRef"]["name"].as_str(),
        Some(hashed)
    );
}
