//! Supervision under fault: panics and stalls injected into each actor kind while clients keep
//! logging in, refreshing and calling `/auth/me`.
//!
//! What must hold, for every kind: every request gets an answer (none hangs: each is given 10 s,
//! twenty times the ask timeout here), no request waits on an actor's mailbox (a stall costs
//! no request anything; a panic is restarted and counted), and afterwards every client's
//! refresh chain still works.

use crate::helpers::*;
use edge_idp_actors::{ActorKind, Fault};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Ask timeout of these servers.
const ASK_MS: u64 = 500;
/// How long any one request may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(10);
/// Clients running at once.
const CLIENTS: usize = 6;

/// One client of the background load: its account and its refresh chain.
struct Client {
    email: String,
    refresh: String,
    access: String,
}

/// What the background load saw: answers by `"<route> <status>"`, and hangs.
#[derive(Default, Debug)]
struct Seen {
    answers: BTreeMap<String, u64>,
    hangs: u64,
    unexpected: Vec<String>,
}

/// Every actor kind.
const KINDS: [ActorKind; 2] = ActorKind::ALL;

async fn fault_server() -> TestApp {
    spawn_with(
        Opts::default()
            .arg("--actor-timeout-ms", ASK_MS)
            .arg("--rate-limit-login", "1000000/60")
            .arg("--rate-limit-refresh", "1000000/60"),
    )
    .await
}

async fn clients(app: &TestApp, tag: &str) -> Vec<Client> {
    let mut out = Vec::new();
    for i in 0..CLIENTS {
        let email = format!("{tag}-{i}@example.com");
        app.signup(&email).await;
        let l = app.login(&email).await;
        out.push(Client {
            email,
            refresh: l["refresh_token"].as_str().unwrap().to_owned(),
            access: l["access_token"].as_str().unwrap().to_owned(),
        });
    }
    out
}

/// Runs the clients' loops until `stop`: login, refresh (following the chain, retrying the same
/// token after a 503), `/auth/me`, JWKS.
fn start_load(
    app: &TestApp,
    clients: Vec<Client>,
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<(Client, Seen)>> {
    clients
        .into_iter()
        .map(|mut c| {
            let (http, base, stop) = (app.http.clone(), app.base.clone(), stop.clone());
            let rounds = rounds.clone();
            tokio::spawn(async move {
                let mut seen = Seen::default();
                while !stop.load(Ordering::Acquire) {
                    for step in ["login", "refresh", "me", "jwks"] {
                        let req = match step {
                            "login" => http
                                .post(format!("{base}/auth/login"))
                                .json(&json!({"email": c.email, "password": PASSWORD})),
                            "refresh" => http
                                .post(format!("{base}/auth/refresh"))
                                .json(&json!({"refresh_token": c.refresh})),
                            "me" => http.get(format!("{base}/auth/me")).bearer_auth(&c.access),
                            _ => http.get(format!("{base}/.well-known/jwks.json")),
                        };
                        let r = match tokio::time::timeout(HANG, req.send()).await {
                            Err(_) => {
                                seen.hangs += 1;
                                continue;
                            }
                            Ok(Err(e)) => {
                                seen.unexpected.push(format!("{step}: {e}"));
                                continue;
                            }
                            Ok(Ok(r)) => r,
                        };
                        let status = r.status().as_u16();
                        *seen.answers.entry(format!("{step} {status}")).or_default() += 1;
                        let body: Value = r.json().await.unwrap_or(Value::Null);
                        match status {
                            200 if step == "refresh" => {
                                c.refresh = body["refresh_token"].as_str().unwrap().to_owned();
                                c.access = body["access_token"].as_str().unwrap().to_owned();
                            }
                            200 => {}
                            503 if body["code"] == "unavailable" => {}
                            _ => seen.unexpected.push(format!("{step} {status}: {body}")),
                        }
                    }
                    rounds.fetch_add(1, Ordering::AcqRel);
                }
                (c, seen)
            })
        })
        .collect()
}

/// Stops the load and checks what it saw; answers the 503 count and the clients.
async fn finish_load(
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(Client, Seen)>>,
) -> (u64, Vec<Client>) {
    stop.store(true, Ordering::Release);
    let (mut unavailable, mut out) = (0, Vec::new());
    for t in tasks {
        let (c, seen) = t.await.unwrap();
        assert_eq!(seen.hangs, 0, "requests hung: {seen:?}");
        assert!(seen.unexpected.is_empty(), "unexpected answers: {seen:?}");
        unavailable += seen
            .answers
            .iter()
            .filter(|(k, _)| k.ends_with(" 503"))
            .map(|(_, n)| n)
            .sum::<u64>();
        out.push(c);
    }
    (unavailable, out)
}

/// Each client's chain still rotates, and its access token still works.
async fn chains_still_work(app: &TestApp, clients: &[Client]) {
    for c in clients {
        let r = app.refresh(&c.refresh).await;
        assert_eq!(r.status(), 200, "{}'s refresh chain broke", c.email);
        assert_eq!(app.get_as("/auth/me", &c.access).await.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_actor_holds_up_no_request_and_answers_again_without_a_restart() {
    let app = fault_server().await;
    for kind in KINDS {
        let cs = clients(&app, &format!("stall-{}", kind.name())).await;
        let probe_email = cs[0].email.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let load = start_load(&app, cs, stop.clone(), Arc::default());
        // Far longer than the ask timeout, so that a request waiting on it would surely fail.
        app.actors
            .inject(kind, Fault::Stall(Duration::from_secs(3)));
        assert!(
            app.actors
                .ping(kind, Duration::from_millis(ASK_MS))
                .await
                .is_err(),
            "{kind:?} answered while stalled"
        );
        // Nothing on a request's path waits on an actor: a login (signing from the key
        // snapshot, rate limits without a mailbox) succeeds during the stall.
        app.login(&probe_email).await;
        assert_eq!(app.get("/.well-known/jwks.json").await.status(), 200);
        // The stall ends by itself: the actor answers again without a restart.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while app
            .actors
            .ping(kind, Duration::from_millis(ASK_MS))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind:?} never came back"
            );
        }
        let (unavailable, cs) = finish_load(stop, load).await;
        assert_eq!(
            unavailable, 0,
            "{kind:?} stalled, and requests waited on it"
        );
        chains_still_work(&app, &cs).await;
        assert_eq!(app.actors.restarts(kind), 0, "a stall is not a crash");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_actor_under_load_is_restarted_counted_and_nothing_hangs() {
    let app = fault_server().await;
    for kind in KINDS {
        let cs = clients(&app, &format!("panic-{}", kind.name())).await;
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let load = start_load(&app, cs, stop.clone(), rounds.clone());
        let before = app.actors.restarts(kind);
        app.actors.inject_panic(kind);
        restarted(&app, kind, before + 1).await;
        // The load goes on past the restart: two more full rounds per client.
        let target = rounds.load(Ordering::Acquire) + 2 * CLIENTS as u64;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while rounds.load(Ordering::Acquire) < target {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the load stalled after the restart"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (_, cs) = finish_load(stop, load).await;
        chains_still_work(&app, &cs).await;
        let metrics = app.get("/metrics").await.text().await.unwrap();
        let line = format!("edge_idp_actor_restarts_total{{actor=\"{}\"}}", kind.name());
        let counted: u64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{line} missing from /metrics"));
        assert!(counted > before, "{line} = {counted}");
    }
}
