//! The deployment files, read as their tools would (no Fly.io account is reachable here).

fn fly() -> (toml::Value, String) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fly.toml"))
        .expect("fly.toml");
    (text.parse().expect("fly.toml parses as TOML"), text)
}

#[test]
fn fly_toml_runs_production_on_the_edge_with_checks_volume_and_graceful_shutdown() {
    let (t, text) = fly();
    let env = &t["env"];
    assert_eq!(env["LISTEN_ADDR"].as_str(), Some("0.0.0.0:8080"));
    assert_eq!(env["CLIENT_IP_HEADER"].as_str(), Some("Fly-Client-IP"));
    assert_eq!(env["APP_ENV"].as_str(), Some("production"));
    assert!(
        env["ISSUER"]
            .as_str()
            .is_some_and(|i| i.starts_with("https://")),
        "production refuses http issuers"
    );
    let svc = &t["http_service"];
    assert_eq!(svc["internal_port"].as_integer(), Some(8080));
    let paths: Vec<&str> = svc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["/healthz", "/readyz"]);
    assert!(
        svc["concurrency"]["hard_limit"].as_integer().is_some()
            && svc["concurrency"]["soft_limit"].as_integer().is_some()
    );
    assert_eq!(t["kill_signal"].as_str(), Some("SIGTERM"));
    assert!(
        t["kill_timeout"].as_integer().is_some_and(|s| s >= 20),
        "longer than the 20 s drain"
    );
    let mount = &t["mounts"].as_array().unwrap()[0];
    assert_eq!(mount["destination"].as_str(), env["DATA_DIR"].as_str());
    for secret in ["MFA_ENCRYPTION_KEY", "DATABASE_AUTH_TOKEN", "REDIS_URL"] {
        assert!(
            env.get(secret).is_none(),
            "{secret} must be a Fly secret, not a value in fly.toml"
        );
        assert!(text.contains(secret), "fly.toml names the secret {secret}");
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_healthcheck_and_volume() {
    let d = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("Dockerfile");
    assert_eq!(d.lines().filter(|l| l.starts_with("FROM ")).count(), 2);
    assert!(d
        .lines()
        .any(|l| l.starts_with("USER ") && !l.contains("root")));
    assert!(d.contains("HEALTHCHECK") && d.contains("edge-idp\", \"healthcheck\""));
    assert!(d.contains("VOLUME [\"/var/lib/edge-idp/data\"]"));
    assert!(d.contains("--locked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_healthcheck_subcommand_reports_the_server_state() {
    let app = crate::helpers::spawn_app().await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let run = |addr: String| {
        let mut cmd = crate::helpers::server_command();
        cmd.args(["healthcheck", "--listen-addr", &addr]);
        crate::helpers::output_within(cmd, std::time::Duration::from_secs(30))
    };
    assert!(run(addr).status.success());
    // A port this test holds, whose connections are closed unanswered: no other process can
    // take it meanwhile (a port released to be "closed" could be).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in silent.incoming() {
            drop(conn);
        }
    });
    let out = run(addr);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unhealthy"));
}
