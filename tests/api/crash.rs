//! Crash safety: SIGKILL the server in the middle of traffic, several rounds, on one data
//! folder. After each kill the database passes `PRAGMA integrity_check`, every signup the clients
//! saw acknowledged can log in, every refresh token the clients last received still works
//! (once: its predecessor is then reuse), and no acknowledged write is lost.

use crate::helpers::*;
use crate::multiprocess::{post, start};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the clients saw acknowledged.
#[derive(Default)]
struct Acked {
    accounts: Vec<String>,
    /// Per session: the token before the last one (if any) and the last one received.
    sessions: Vec<(Option<String>, String)>,
}

async fn traffic(base: String, acked: Arc<Mutex<Acked>>, worker: usize, round: usize) {
    for i in 0.. {
        let email = format!("c{round}-{worker}-{i}@example.com");
        let Ok(r) = post_quiet(
            &base,
            "/auth/signup",
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        else {
            return;
        };
        // A request the kill cut off is an error above; an answer is the contract's or a bug.
        assert_eq!(r.status(), 201, "signup of {email} before the kill");
        acked.lock().unwrap().accounts.push(email.clone());
        let Ok(r) = post_quiet(
            &base,
            "/auth/login",
            json!({"email": email, "password": PASSWORD}),
        )
        .await
        else {
            return;
        };
        let Ok(t) = r.json::<Value>().await else {
            return;
        };
        let mut current = t["refresh_token"].as_str().unwrap().to_owned();
        let slot = {
            let mut a = acked.lock().unwrap();
            a.sessions.push((None, current.clone()));
            a.sessions.len() - 1
        };
        for _ in 0..3 {
            let Ok(r) = post_quiet(&base, "/auth/refresh", json!({"refresh_token": current})).await
            else {
                return;
            };
            let Ok(t) = r.json::<Value>().await else {
                return;
            };
            let next = t["refresh_token"]
                .as_str()
                .unwrap_or_else(|| panic!("a refresh before the kill answered {t}"));
            acked.lock().unwrap().sessions[slot] = (Some(current.clone()), next.to_owned());
            current = next.to_owned();
        }
    }
}

async fn post_quiet(
    base: &str,
    path: &str,
    body: Value,
) -> Result<reqwest::Response, reqwest::Error> {
    client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_traffic_loses_no_acknowledged_write_and_reuses_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let acked = Arc::new(Mutex::new(Acked::default()));
        let mut server = start(tmp.path(), 10);
        let workers: Vec<_> = (0..4)
            .map(|w| tokio::spawn(traffic(server.base.clone(), acked.clone(), w, round)))
            .collect();
        // Once traffic is flowing, a different point in it each round (and each run): 50 to
        // 560 ms later.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while acked.lock().unwrap().sessions.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no traffic was acknowledged"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 2;
        tokio::time::sleep(Duration::from_millis(50 + jitter)).await;
        server.kill();
        // A worker stops at its first failed request (the kill); a panic in one is a failure.
        for w in workers {
            w.await.expect("a traffic worker panicked");
        }
        integrity_ok(tmp.path()).await;

        // A rotation in flight at the kill (committed, its answer never seen) leaves the client
        // holding a used token, which the restarted server must answer as a grace replay. The
        // longest grace there is (5 min), so that a slow restart cannot turn it into reuse.
        let server = start(tmp.path(), 300);
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        eprintln!(
            "round {round}: {} accounts and {} sessions acknowledged before SIGKILL",
            acked.accounts.len(),
            acked.sessions.len()
        );
        for email in &acked.accounts {
            let r = post(
                &server.base,
                "/auth/login",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
            assert_eq!(
                r.status(),
                200,
                "round {round}: acknowledged signup {email} lost"
            );
        }
        for (previous, last) in &acked.sessions {
            let r = post(
                &server.base,
                "/auth/refresh",
                json!({"refresh_token": last}),
            )
            .await;
            assert_eq!(
                r.status(),
                200,
                "round {round}: the last acknowledged refresh token no longer works"
            );
            if let Some(previous) = previous {
                let r = post(
                    &server.base,
                    "/auth/refresh",
                    json!({"refresh_token": previous}),
                )
                .await;
                assert_eq!(
                    r.status(),
                    401,
                    "round {round}: a rotated token was usable again"
                );
            }
        }
        drop(server);
    }
}
