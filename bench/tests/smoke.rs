//! `edge-idp-bench --smoke`: every scenario runs briefly against a real server process and
//! completes with zero errors (the bench exits non-zero otherwise). No timing is asserted.

use std::process::Command;

#[test]
fn every_scenario_completes_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("smoke.json");
    let out = Command::new(env!("CARGO_BIN_EXE_edge-idp-bench"))
        .args(["--smoke", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let names: Vec<&str> = report["scenarios"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scenario"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["signup", "login", "login_mfa", "refresh", "me", "jwks"]
    );
    for s in report["scenarios"].as_array().unwrap() {
        assert!(s["requests"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["errors"], 0, "{s}");
    }
    for b in [
        "argon2_hashes_per_s",
        "rs256_signs_per_s",
        "hello_world_req_per_s",
    ] {
        assert!(report["baselines"][b].as_f64().unwrap() > 0.0, "{b}");
    }
    let cold = &report["cold_start"];
    assert_eq!(cold["runs"], 3, "{cold}");
    assert!(cold["median_ms"].as_f64().unwrap() > 0.0, "{cold}");
}
