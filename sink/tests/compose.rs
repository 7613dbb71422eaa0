//! Static checks of what cannot run here: docker-compose.yml, the Dockerfile and Grafana's
//! provisioning. They parse the files and check that services, healthchecks, dependencies,
//! mounts and the datasource uid fit together and point at files that exist.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value;
use streamwatch_sink::grafana::panel_queries;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

fn yaml(relative: &str) -> Value {
    let mut value: Value =
        serde_norway::from_str(&read(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"));
    value.apply_merge().unwrap(); // `<<: *anchor`
    value
}

fn compose() -> Value {
    yaml("docker-compose.yml")
}

fn services(compose: &Value) -> &serde_norway::Mapping {
    compose["services"].as_mapping().expect("services")
}

fn str_of(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// `environment:` as a map or a list of `KEY=value`.
fn env(service: &Value, key: &str) -> Option<String> {
    match &service["environment"] {
        Value::Mapping(map) => map.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            other => serde_norway::to_string(other).unwrap().trim().to_owned(),
        }),
        Value::Sequence(items) => items
            .iter()
            .filter_map(Value::as_str)
            .find_map(|item| item.strip_prefix(&format!("{key}=")).map(str::to_owned)),
        _ => None,
    }
}

fn command(service: &Value) -> Vec<String> {
    match &service["command"] {
        Value::Sequence(items) => items.iter().map(|v| str_of(v).to_owned()).collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn the_stack_has_every_service() {
    let compose = compose();
    let names: BTreeSet<&str> = services(&compose).keys().map(str_of).collect();
    let expected: BTreeSet<&str> = [
        "kafka",
        "topic-init",
        "db",
        "adminer",
        "grafana",
        "producer",
        "scorer",
        "monitor",
        "sink",
    ]
    .into();
    assert_eq!(names, expected);
}

#[test]
fn kafka_runs_in_kraft_mode_and_topics_are_created() {
    let compose = compose();
    let kafka = &compose["services"]["kafka"];
    assert!(str_of(&kafka["image"]).starts_with("apache/kafka:"));
    let roles = env(kafka, "KAFKA_PROCESS_ROLES").unwrap();
    assert!(
        roles.contains("broker") && roles.contains("controller"),
        "{roles}"
    );
    assert!(env(kafka, "KAFKA_ZOOKEEPER_CONNECT").is_none());
    assert!(env(kafka, "KAFKA_ADVERTISED_LISTENERS")
        .unwrap()
        .contains("kafka:9092"));

    let init = serde_norway::to_string(&compose["services"]["topic-init"]["command"]).unwrap();
    for topic in ["trips:", "trips.scored:", "metrics:", "deadletter:"] {
        assert!(init.contains(topic), "topic-init does not create {topic}");
    }
    assert!(
        init.contains("--if-not-exists"),
        "topic-init must be rerunnable"
    );
}

#[test]
fn healthchecks_and_dependencies_fit_together() {
    let compose = compose();
    let services = services(&compose);
    for required in ["kafka", "db", "sink"] {
        let test = &services[required]["healthcheck"]["test"];
        assert!(!test.is_null(), "{required} has no healthcheck");
    }
    for (name, service) in services {
        let name = str_of(name);
        let Some(depends) = service["depends_on"].as_mapping() else {
            assert!(
                service["depends_on"].is_null(),
                "{name}: use the long depends_on form with conditions"
            );
            continue;
        };
        for (target, spec) in depends {
            let target = str_of(target);
            let upstream = services
                .get(target)
                .unwrap_or_else(|| panic!("{name} depends on unknown service {target}"));
            match str_of(&spec["condition"]) {
                "service_started" => {}
                "service_healthy" => {
                    assert!(
                        !upstream["healthcheck"].is_null(),
                        "{name} waits for {target} to be healthy, which has no healthcheck"
                    )
                }
                "service_completed_successfully" => assert_eq!(
                    str_of(&upstream["restart"]),
                    "no",
                    "{target} must be one-shot for {name} to wait for its completion"
                ),
                other => panic!("{name} -> {target}: unknown condition {other:?}"),
            }
        }
    }
    let sink = &services["sink"]["depends_on"];
    assert_eq!(str_of(&sink["db"]["condition"]), "service_healthy");
    assert_eq!(
        str_of(&sink["topic-init"]["condition"]),
        "service_completed_successfully"
    );
    assert_eq!(
        str_of(&services["topic-init"]["depends_on"]["kafka"]["condition"]),
        "service_healthy"
    );
}

#[test]
fn mounts_volumes_and_networks_exist() {
    let compose = compose();
    let declared_volumes: BTreeSet<&str> = compose["volumes"]
        .as_mapping()
        .map(|m| m.keys().map(str_of).collect())
        .unwrap_or_default();
    let declared_networks: BTreeSet<&str> = compose["networks"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(str_of)
        .collect();
    assert!(declared_networks.contains("front-tier") && declared_networks.contains("back-tier"));
    let mut bind_mounts = 0;
    for (name, service) in services(&compose) {
        let name = str_of(name);
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let spec = str_of(volume);
            let source = spec.split(':').next().unwrap();
            if source.starts_with("./") || source.starts_with("../") {
                bind_mounts += 1;
                assert!(
                    root().join(source).exists(),
                    "{name} mounts {source}, which is not in the repository"
                );
            } else {
                assert!(
                    declared_volumes.contains(source),
                    "{name} uses undeclared volume {source}"
                );
            }
        }
        for network in service["networks"].as_sequence().into_iter().flatten() {
            assert!(
                declared_networks.contains(str_of(network)),
                "{name}: undeclared network {network:?}"
            );
        }
        if let Some(build) = service["build"].as_mapping() {
            let context = root().join(str_of(&build["context"]));
            assert!(context.is_dir(), "{name}: build context missing");
            assert!(
                context.join(str_of(&build["dockerfile"])).is_file(),
                "{name}: Dockerfile missing"
            );
        }
    }
    assert_eq!(bind_mounts, 2, "grafana's provisioning and dashboards");
}

#[test]
fn the_pipeline_services_run_the_image_binaries() {
    let compose = compose();
    let dockerfile = read("Dockerfile");
    for name in ["producer", "scorer", "monitor", "sink"] {
        let service = &compose["services"][name];
        assert_eq!(
            str_of(&service["build"]["dockerfile"]),
            "Dockerfile",
            "{name}"
        );
        assert_eq!(
            command(service).first().map(String::as_str),
            Some(name),
            "{name} runs its own binary"
        );
        assert!(
            dockerfile.contains(&format!("target/release/{name}")),
            "the image lacks {name}"
        );
        assert_eq!(
            env(service, "KAFKA_BROKERS").as_deref(),
            Some("kafka:9092"),
            "{name}"
        );
        let networks = serde_norway::to_string(&service["networks"]).unwrap();
        assert!(networks.contains("back-tier"), "{name} must reach kafka");
    }
    // Files the services read from the image (copied from data/ and models/) must exist.
    for name in ["producer", "scorer", "monitor", "sink"] {
        for arg in command(&compose["services"][name]) {
            if arg.starts_with("data/") || arg.starts_with("models/") {
                assert!(
                    root().join(&arg).is_file(),
                    "{name} reads {arg}, which is not in the repository"
                );
            }
        }
    }
    let producer = command(&compose["services"]["producer"]);
    assert!(
        producer
            .iter()
            .any(|a| a == "data/green_tripdata_2022-02.parquet"),
        "{producer:?}"
    );
    let url = env(&compose["services"]["sink"], "DATABASE_URL").unwrap();
    assert!(url.contains("@db:5432/streamwatch"), "{url}");
    let db = &compose["services"]["db"];
    assert_eq!(env(db, "POSTGRES_DB").as_deref(), Some("streamwatch"));
    assert!(
        url.contains(&format!(":{}@", env(db, "POSTGRES_PASSWORD").unwrap())),
        "sink and db disagree on the password"
    );
}

#[test]
fn the_dockerfile_copies_what_exists() {
    let dockerfile = read("Dockerfile");
    let copies: Vec<&str> = dockerfile
        .lines()
        .filter_map(|line| line.trim().strip_prefix("COPY "))
        .filter(|args| !args.starts_with("--from"))
        .collect();
    assert!(copies.len() >= 3, "{copies:?}");
    for args in copies {
        let parts: Vec<&str> = args.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, which is not in the repository"
            );
        }
    }
    let ignored = read(".dockerignore");
    assert!(
        ignored.lines().any(|l| l.trim() == "target/"),
        "the build context must not carry target/"
    );
}

#[test]
fn grafana_is_provisioned_with_a_fixed_datasource_uid() {
    let compose = compose();
    let grafana = &compose["services"]["grafana"];
    let mounts: Vec<(String, String)> = grafana["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| {
            let mut parts = str_of(v).split(':');
            (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect();
    let target_of = |source: &str| {
        mounts
            .iter()
            .find(|(s, _)| s == source)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("grafana does not mount {source}"))
    };
    assert_eq!(
        target_of("./grafana/provisioning"),
        "/etc/grafana/provisioning"
    );

    let providers = yaml("grafana/provisioning/dashboards/dashboards.yaml");
    let provider = &providers["providers"][0];
    assert_eq!(str_of(&provider["type"]), "file");
    assert_eq!(
        str_of(&provider["options"]["path"]),
        target_of("./grafana/dashboards")
    );

    let sources = yaml("grafana/provisioning/datasources/postgres.yaml");
    let source = &sources["datasources"][0];
    assert_eq!(str_of(&source["uid"]), "streamwatch-postgres");
    assert_eq!(str_of(&source["type"]), "grafana-postgresql-datasource");
    assert_eq!(str_of(&source["jsonData"]["sslmode"]), "disable");
    // Every ${NAME} the file expands must be set in Grafana's environment.
    let text = read("grafana/provisioning/datasources/postgres.yaml");
    let settings: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect();
    for piece in settings.split("${").skip(1) {
        let name = piece.split('}').next().unwrap();
        assert!(
            env(grafana, name).is_some(),
            "grafana's environment lacks {name}"
        );
    }
    assert_eq!(
        env(grafana, "POSTGRES_HOST").as_deref(),
        Some("${POSTGRES_HOST:-db:5432}")
    );

    let dashboard = read("grafana/dashboards/data-drift.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let expected =
        serde_json::json!({"type": "grafana-postgresql-datasource", "uid": "streamwatch-postgres"});
    let panels = json["panels"].as_array().unwrap();
    let titles: Vec<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for course in [
        "Prediction Drift",
        "Number of Drifted Columns",
        "Share of missing values",
    ] {
        assert!(
            titles.contains(&course),
            "missing the course panel {course}"
        );
    }
    for panel in panels {
        assert_eq!(panel["datasource"], expected, "panel {}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"], expected, "panel {}", panel["title"]);
            assert!(
                target["rawSql"].is_string() && target["format"].is_string(),
                "panel {}",
                panel["title"]
            );
        }
    }
    let queries = panel_queries(&dashboard).unwrap();
    assert_eq!(queries.len(), panels.len());
    for query in queries
        .iter()
        .filter(|q| q.panel_title != "Drift per column and day")
    {
        assert_eq!(query.format, "time_series", "{}", query.panel_title);
        assert!(
            query.sql.contains("$__timeFilter("),
            "{}",
            query.panel_title
        );
    }
}
