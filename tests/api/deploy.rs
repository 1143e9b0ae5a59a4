//! The deployment files, checked statically (no Docker engine runs here): the compose file
//! parses and sets only configuration keys the broker knows, and the Dockerfile builds the same
//! binary `cargo build --release` does, to run as a non-root user with a health check.

use std::collections::HashMap;
use std::path::Path;

use secrecy::ExposeSecret;
use serde_yaml::Value;
use token_broker::config::Settings;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// Replaces `${VAR}`, `${VAR:-default}` and `${VAR:?message}` with a value of the right shape.
fn interpolate(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${…}") + start;
        let inner = &rest[start + 2..end];
        let name = inner.split([':', '-', '?']).next().unwrap();
        out.push_str(&match name {
            n if n.contains("KEY") => token_broker::crypto::generate_key()
                .expose_secret()
                .to_owned(),
            n if n.contains("JWT") => "a-caller-jwt-secret-of-at-least-32-bytes".to_owned(),
            _ => "secret".to_owned(),
        });
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_compose_file_sets_only_known_config_keys() {
    let compose: Value =
        serde_yaml::from_str(&repo("docker-compose.yml")).expect("docker-compose.yml parses");
    let services = compose["services"].as_mapping().expect("services");
    let mut brokers = 0;
    for (name, service) in services {
        let Some(env) = service["environment"].as_mapping() else {
            continue;
        };
        let vars: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().unwrap().to_owned(),
                    interpolate(v.as_str().unwrap_or_default()),
                )
            })
            .filter(|(k, _)| k.starts_with("TOKEN_BROKER__"))
            .collect();
        if vars.is_empty() {
            continue;
        }
        brokers += 1;
        let settings = Settings::load_with_env(Path::new("config"), None, Some(vars))
            .unwrap_or_else(|e| panic!("service {name:?}: {e}"));
        assert!(
            !settings.crypto.keys.is_empty(),
            "{name:?} brings its own encryption key"
        );
        assert!(!settings.auth.hs256_secret.expose_secret().is_empty());
        let url = settings.database.url.expose_secret();
        assert!(
            url.starts_with("postgres://") || url.starts_with("mysql://"),
            "{url}"
        );
    }
    assert_eq!(brokers, 2, "the PostgreSQL service and the MySQL variant");
    // Secrets come from the environment, never from the file.
    let text = repo("docker-compose.yml");
    assert!(!text.contains("BEGIN PRIVATE KEY"));
    for line in text
        .lines()
        .filter(|l| l.contains("SECRET") || l.contains("KEY") || l.contains("PASSWORD"))
    {
        if let Some((_, value)) = line.split_once(':') {
            let value = value.trim();
            assert!(
                value.is_empty()
                    || value.contains("${")
                    || !value.starts_with('"')
                    || value == "\"1\""
                    || value == "\"k1\"",
                "a literal secret in docker-compose.yml: {line}"
            );
        }
    }
}

#[test]
fn the_image_config_default_is_the_checked_in_one() {
    // The image sets host and port through the environment; both are real keys.
    let vars = HashMap::from([
        (
            "TOKEN_BROKER__SERVER__HOST".to_owned(),
            "0.0.0.0".to_owned(),
        ),
        ("TOKEN_BROKER__SERVER__PORT".to_owned(), "8080".to_owned()),
    ]);
    Settings::load_with_env(Path::new("config"), None, Some(vars)).unwrap();
}

#[test]
fn the_dockerfile_builds_the_release_binary_and_runs_it_unprivileged() {
    let dockerfile = repo("Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage build");
    assert!(
        dockerfile.contains("cargo build --release --locked --bin token-broker"),
        "the image builds what `cargo build --release` builds"
    );
    assert!(dockerfile.contains("target/release/token-broker"));
    let user = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER line");
    assert!(
        !user.contains("root") && user.trim() != "USER 0",
        "runs as non-root: {user}"
    );
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(
        dockerfile.contains("TOKEN_BROKER__SERVER__HOST=0.0.0.0"),
        "the container listens beyond its own loopback"
    );
    assert!(dockerfile.contains("/healthz"));
    // Everything the build stage copies exists in the repository.
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(source).exists(),
                "Dockerfile copies {source}, which is not in the repository"
            );
        }
    }
    // The build stage gets every input of the binary: sources, migrations (embedded) and config
    // (embedded defaults).
    for needed in ["Cargo.toml", "Cargo.lock", "src", "migrations", "config"] {
        assert!(
            dockerfile.contains(&format!("COPY {needed}"))
                || dockerfile.contains(&format!(" {needed} ")),
            "the build stage copies {needed}"
        );
    }
}
