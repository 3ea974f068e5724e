//! `edge-idp-bench`: load scenarios against a real edge-idp process, each figure set against a
//! physical bound measured in the same run on the same machine.
//!
//! Why a separate process: the server's peak RSS is one of the figures, and a load generator in
//! the same process would blur it. The bench starts the server as a child (itself, re-executed
//! with `__server`), and the hello-world warp baseline the same way (`__hello`), so both are
//! measured from outside under the same client.
//!
//! Bounds: login is Argon2-bound (`login ÷ hashes/s`), refresh is RS256-bound (`refresh ÷
//! signatures/s`), `jwks` and `me` are HTTP-bound (`÷ hello-world req/s`). `--smoke` runs every
//! scenario briefly with cheap Argon2 and fails on any error; `cargo test` runs it.
//!
//! A shared VM's speed drifts: the bounds of one run, measured minutes apart, moved by up to
//! 30 %, enough to put a ratio above 1. So each scenario's ratio is to its own bound measured
//! just before and just after it (half the duration each, their mean), with the server idle
//! in between; the bounds at the start of the run are reported as well.

mod client;
mod dataset;
mod scenarios;
mod soak;

use clap::Parser;
use client::Http;
use scenarios::{Prepared, Scenario};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Command line of the bench.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "edge-idp-bench",
    about = "Load benchmark of edge-idp with physical baselines"
)]
pub struct Args {
    /// Seconds, small counts, cheap Argon2; exits non-zero on any error. What CI runs.
    #[arg(long)]
    pub smoke: bool,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds per scenario and per baseline.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "signup,login,login_mfa,refresh,me,jwks"
    )]
    pub scenarios: Vec<Scenario>,
    /// Target a running server instead of starting one (no RSS figures then; its rate limits
    /// must allow the load).
    #[arg(long)]
    pub url: Option<String>,
    /// Start the server on this libSQL primary (`http://…` of a sqld, `libsql://…`) instead
    /// of a fresh local file: remote mode's figures. The primary should be empty.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Start the server as an embedded replica of this libSQL primary (a fresh local file synced
    /// from it): the replica mode's figures. Not with `--database-url`.
    #[arg(long)]
    pub sync_url: Option<String>,
    /// `DATABASE_AUTH_TOKEN` for `--database-url` or `--sync-url`.
    #[arg(long, default_value = "")]
    pub database_auth_token: String,
    /// Also write the results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Argon2 memory cost, KiB (the server's default).
    #[arg(long, default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
    /// Argon2 iterations (the server's default).
    #[arg(long, default_value_t = 2)]
    pub argon2_iterations: u32,
    /// Accounts prepared for login and me.
    #[arg(long, default_value_t = 64)]
    pub users: usize,
    /// Accounts with MFA prepared for login_mfa. Replay protection lets an account log in with
    /// TOTP about once per 30 s step, so at N logins/s a run of T s needs about N×T of them.
    #[arg(long, default_value_t = 900)]
    pub mfa_users: usize,
    /// Before the scenarios, fill the database with this many extra accounts (with
    /// organizations and one session each), e.g. 1000000.
    #[arg(long, default_value_t = 0)]
    pub dataset_users: u64,
    /// ... and this many refresh-token rows over their sessions, e.g. 10000000.
    #[arg(long, default_value_t = 0)]
    pub dataset_tokens: u64,
    /// After the scenarios, offer logins at this multiple of the login figure (of the Argon2
    /// bound when login was not run) as an open loop, and report served and shed answers;
    /// 0 skips it.
    #[arg(long, default_value_t = 2.0)]
    pub overload: f64,
    /// Instead of the scenarios: this many seconds of mixed traffic at `--concurrency`, watching
    /// the server's RSS, descriptors, threads and actors for growth (e.g. 300 with 4).
    #[arg(long, default_value_t = 0.0)]
    pub soak: f64,
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("__server") => return child::server(&argv[2..]),
        Some("__hello") => return child::hello(&argv[2..]),
        _ => {}
    }
    let mut args = Args::parse();
    if args.smoke {
        args.concurrency = args.concurrency.min(4);
        args.duration = args.duration.min(1.0);
        args.argon2_memory_kib = 1024;
        args.argon2_iterations = 1;
        args.users = args.users.min(8);
        args.mfa_users = args.mfa_users.min(24);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("edge-idp-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("edge-idp-bench: some requests failed (see the errors column)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("edge-idp-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.0.id()
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn spawn_self(mode: &str, args: &[String]) -> Result<Proc, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = Command::new(exe)
        .arg(mode)
        .args(args)
        // The bench decides the server's settings; the caller's environment must not (a
        // REDIS_URL, say, would move rate limiting out of the process).
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start {mode}: {e}"))?;
    Ok(Proc(child))
}

/// `VmRSS` and `VmHWM` (peak) of a process, MiB.
fn rss(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak RSS counter (Linux `clear_refs` 5), so each scenario reports its own peak.
fn reset_peak(pid: u32) {
    let _ = std::fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// Requests/s of a hello-world warp route in a child process, under the bench's client.
async fn hello_world(http: &Http, c: usize, dur: Duration) -> Result<scenarios::Stats, String> {
    let port = free_port()?;
    let _p = spawn_self("__hello", &[port.to_string()])?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(http, &base).await?;
    Ok(scenarios::hello(http, &base, c, dur).await)
}

/// The bound that limits scenario `s`, measured now for `dur`.
async fn bound_now(
    s: Scenario,
    args: &Args,
    http: &Http,
    cores: usize,
    dur: Duration,
) -> Result<f64, String> {
    match s {
        Scenario::Login | Scenario::LoginMfa | Scenario::Signup => {
            scenarios::argon2_per_sec(args.argon2_memory_kib, args.argon2_iterations, cores, dur)
        }
        Scenario::Refresh => scenarios::rs256_per_sec(cores, dur),
        Scenario::Me | Scenario::Jwks => Ok(hello_world(http, args.concurrency, dur).await?.rps),
    }
}

async fn wait_ready(http: &Http, base: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = http.get(&format!("{base}/healthz"), None).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{base} did not become healthy in 30 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let dur = Duration::from_secs_f64(args.duration);
    let http = Http::new(args.concurrency);
    eprintln!(
        "machine: {} cores, {}; concurrency {}, {:.1} s per figure",
        cores,
        cpu_model(),
        args.concurrency,
        args.duration
    );
    if args.soak > 0.0 {
        return soak::run(&args, &http).await;
    }

    // Physical bounds first, on an idle machine.
    eprintln!(
        "baseline: Argon2id m={} KiB t={} p=1 on {cores} threads",
        args.argon2_memory_kib, args.argon2_iterations
    );
    let hashes =
        scenarios::argon2_per_sec(args.argon2_memory_kib, args.argon2_iterations, cores, dur)?;
    eprintln!("baseline: RS256 signatures (aws-lc-rs, key parsed once) on {cores} threads");
    let signs = scenarios::rs256_per_sec(cores, dur)?;
    eprintln!("baseline: hello-world warp route");
    let hello = hello_world(&http, args.concurrency, dur).await?;

    // The server.
    let data = tempfile_dir()?;
    let (mut server, base) = start_server(&args, &data)?;
    wait_ready(&http, &base).await?;
    let pid = server.as_ref().map(Proc::pid);
    let mut seeded = None;
    if args.dataset_users > 0 && args.url.is_none() {
        eprintln!(
            "dataset: {} accounts, {} refresh-token rows",
            args.dataset_users, args.dataset_tokens
        );
        let phc = scenarios::phc(args.argon2_memory_kib, args.argon2_iterations)?;
        let took = dataset::seed(
            &data.join("edge-idp.db"),
            args.dataset_users,
            args.dataset_tokens,
            &phc,
        )
        .await?;
        eprintln!("dataset: written in {took:.1?}");
        seeded = Some(took.as_secs_f64());
    }
    // Settle, then read the idle footprint.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = pid.and_then(rss).map(|r| r.0);

    eprintln!(
        "preparing {} accounts and {} with MFA",
        args.users,
        if args.scenarios.contains(&Scenario::LoginMfa) {
            args.mfa_users
        } else {
            0
        }
    );
    let prepared = Prepared::new(&http, &base, &args).await?;

    let mut rows = Vec::new();
    let mut ok = true;
    let mut login_rps = None;
    for s in &args.scenarios {
        if let Some(pid) = pid {
            reset_peak(pid);
        }
        let before = bound_now(*s, &args, &http, cores, dur / 2).await?;
        eprintln!("scenario: {}", s.name());
        let stats = s
            .run(&http, &base, &prepared, args.concurrency, dur)
            .await?;
        // Peak: the most the scenario needed, including what the one before left allocated (the
        // hashing threads give their memory back after two idle seconds). At end: what serving
        // this scenario alone holds, once it has run for the whole duration.
        let (end, peak) = pid.and_then(rss).unzip();
        let after = bound_now(*s, &args, &http, cores, dur / 2).await?;
        let bound = (before + after) / 2.0;
        let bound_name = match s {
            Scenario::Login | Scenario::LoginMfa | Scenario::Signup => "argon2 hashes/s",
            Scenario::Refresh => "RS256 signs/s",
            Scenario::Me | Scenario::Jwks => "hello-world req/s",
        };
        ok &= stats.errors == 0 && stats.count > 0;
        if *s == Scenario::Login {
            login_rps = Some(stats.rps);
        }
        rows.push(json!({
            "scenario": s.name(),
            "requests": stats.count,
            "req_per_s": stats.rps,
            "p50_ms": stats.p50_ms,
            "p99_ms": stats.p99_ms,
            "errors": stats.errors,
            "exhausted": stats.exhausted,
            "first_error": stats.first_error,
            "peak_rss_mib": peak,
            "end_rss_mib": end,
            "bound": bound_name,
            "bound_per_s": bound,
            "bound_before_per_s": before,
            "bound_after_per_s": after,
            "ratio_to_bound": stats.rps / bound,
        }));
    }
    let mut overload = serde_json::Value::Null;
    let mut burst = serde_json::Value::Null;
    if args.overload > 0.0 {
        let sustainable = login_rps.unwrap_or(hashes);
        let rate = sustainable * args.overload;
        if let Some(pid) = pid {
            reset_peak(pid);
        }
        eprintln!(
            "overload: logins offered at {rate:.0}/s ({}x {sustainable:.0}/s)",
            args.overload
        );
        let o = scenarios::overload(&http, &base, &prepared, rate, dur).await;
        ok &= o.errors == 0 && o.served > 0;
        // A burst of what the machine hashes in 2.5 s, sent at once (every overload request
        // has its answer by now, so no hash is left waiting): served up to `HASH_MAX_WAIT_MS`
        // of waiting, the rest shed.
        let n = (sustainable * 2.5).round().max(1.0) as usize;
        eprintln!("burst: {n} logins at once");
        let b = scenarios::burst(&http, &base, &prepared, n).await;
        ok &= b.errors == 0 && b.served > 0;
        burst = json!({
            "logins": n,
            "served": b.served,
            "shed": b.shed,
            "errors": b.errors,
            "first_error": b.first_error,
            "served_p50_ms": b.served_ms[0],
            "served_p99_ms": b.served_ms[1],
            "served_max_ms": b.served_ms[2],
            "shed_p50_ms": b.shed_ms[0],
            "shed_max_ms": b.shed_ms[2],
        });
        overload = json!({
            "factor": args.overload,
            "offered_per_s": o.offered_per_s,
            "sent": o.sent,
            "served": o.served,
            "served_per_s": o.served as f64 / dur.as_secs_f64(),
            "shed": o.shed,
            "errors": o.errors,
            "first_error": o.first_error,
            "served_p50_ms": o.served_ms[0],
            "served_p99_ms": o.served_ms[1],
            "served_max_ms": o.served_ms[2],
            "shed_p50_ms": o.shed_ms[0],
            "shed_p99_ms": o.shed_ms[1],
            "shed_max_ms": o.shed_ms[2],
            "peak_rss_mib": pid.and_then(rss).map(|r| r.1),
        });
    }
    // Cold start on the database the scenarios filled, with the measured server stopped.
    let mut cold = serde_json::Value::Null;
    if args.url.is_none() {
        drop(server.take());
        let runs = if args.smoke { 3 } else { 10 };
        eprintln!("cold start: {runs} starts on the existing database");
        let t = cold_start(&args, &data, runs)?;
        cold = json!({
            "runs": runs,
            "median_ms": t[t.len() / 2],
            "min_ms": t[0],
            "max_ms": t[t.len() - 1],
        });
    }
    let report = json!({
        "machine": {"cores": cores, "cpu": cpu_model()},
        "settings": {
            "database": match (&args.database_url, &args.sync_url) {
                (Some(_), _) => "remote",
                (None, Some(_)) => "replica",
                (None, None) => "file",
            },
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "argon2_memory_kib": args.argon2_memory_kib,
            "argon2_iterations": args.argon2_iterations,
            "smoke": args.smoke,
        },
        "baselines": {
            "argon2_hashes_per_s": hashes,
            "rs256_signs_per_s": signs,
            "hello_world_req_per_s": hello.rps,
            "hello_world_p99_ms": hello.p99_ms,
        },
        "idle_rss_mib": idle_rss,
        "dataset": {
            "users": args.dataset_users,
            "refresh_tokens": args.dataset_tokens,
            "seconds_to_write": seeded,
        },
        "scenarios": rows,
        "overload": overload,
        "burst": burst,
        "cold_start": cold,
    });
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(
            path,
            serde_json::to_string_pretty(&report).unwrap_or_default(),
        )
        .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data);
    Ok(ok)
}

/// The server under test: the one at `--url`, or a child process on a fresh database in `data`.
fn start_server(args: &Args, data: &std::path::Path) -> Result<(Option<Proc>, String), String> {
    Ok(match &args.url {
        Some(url) => (None, url.trim_end_matches('/').to_owned()),
        None => {
            let port = free_port()?;
            let p = spawn_self("__server", &server_args(args, data, port))?;
            (Some(p), format!("http://127.0.0.1:{port}"))
        }
    })
}

/// The arguments of a server child on `data` at `port`.
fn server_args(args: &Args, data: &std::path::Path, port: u16) -> Vec<String> {
    {
        {
            // 32 bytes, URL-safe base64: a throwaway key for a throwaway database.
            let key = "YmVuY2gtb25seS1tYXN0ZXIta2V5LTAwMDAwMDAwMDA";
            let mut sargs: Vec<String> = vec![
                "--listen-addr".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                data.display().to_string(),
                "--issuer".into(),
                format!("http://127.0.0.1:{port}"),
                "--mfa-encryption-key".into(),
                key.into(),
                "--argon2-memory-kib".into(),
                args.argon2_memory_kib.to_string(),
                "--argon2-iterations".into(),
                args.argon2_iterations.to_string(),
            ];
            for flag in [
                "--rate-limit-login",
                "--rate-limit-signup",
                "--rate-limit-refresh",
            ] {
                sargs.push(flag.into());
                sargs.push("100000000/60".into());
            }
            if let Some(url) = &args.database_url {
                sargs.push("--database-url".into());
                sargs.push(url.clone());
            }
            if let Some(url) = &args.sync_url {
                sargs.push("--database-sync-url".into());
                sargs.push(url.clone());
            }
            if args.database_url.is_some() || args.sync_url.is_some() {
                sargs.push("--database-auth-token".into());
                sargs.push(args.database_auth_token.clone());
            }
            sargs
        }
    }
}

/// Cold start: `runs` times, a new server process on the existing database in `data`, timed
/// from its spawn to the first `200` of `/healthz`, polled over a fresh connection every
/// millisecond. Milliseconds, sorted.
fn cold_start(args: &Args, data: &std::path::Path, runs: usize) -> Result<Vec<f64>, String> {
    use std::io::{Read, Write};
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let port = free_port()?;
        let sargs = server_args(args, data, port);
        let started = Instant::now();
        let _server = spawn_self("__server", &sargs)?;
        loop {
            if started.elapsed() > Duration::from_secs(30) {
                return Err("cold start: no /healthz answer within 30 s".into());
            }
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                let _ =
                    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut buf = [0u8; 16];
                if c.read(&mut buf)
                    .is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.1 200"))
                {
                    times.push(started.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times)
}

fn tempfile_dir() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("edge-idp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn print_table(r: &serde_json::Value) {
    let b = &r["baselines"];
    println!(
        "baselines: argon2 {:.1} hashes/s | RS256 {:.0} signs/s | hello-world {:.0} req/s | idle RSS {}",
        b["argon2_hashes_per_s"].as_f64().unwrap_or(0.0),
        b["rs256_signs_per_s"].as_f64().unwrap_or(0.0),
        b["hello_world_req_per_s"].as_f64().unwrap_or(0.0),
        r["idle_rss_mib"].as_f64().map_or("n/a".into(), |m| format!("{m:.1} MiB")),
    );
    println!(
        "{:<10} {:>9} {:>10} {:>9} {:>9} {:>7} {:>17} {:>18} {:>7}",
        "scenario",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "RSS peak/end MiB",
        "bound",
        "ratio"
    );
    let mib = |v: &serde_json::Value| v.as_f64().map_or("n/a".into(), |m| format!("{m:.1}"));
    for s in r["scenarios"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:>9} {:>10.1} {:>9.2} {:>9.2} {:>7} {:>17} {:>18} {:>7.2}",
            s["scenario"].as_str().unwrap_or(""),
            s["requests"].as_u64().unwrap_or(0),
            s["req_per_s"].as_f64().unwrap_or(0.0),
            s["p50_ms"].as_f64().unwrap_or(0.0),
            s["p99_ms"].as_f64().unwrap_or(0.0),
            s["errors"].as_u64().unwrap_or(0),
            format!("{} / {}", mib(&s["peak_rss_mib"]), mib(&s["end_rss_mib"])),
            s["bound"].as_str().unwrap_or(""),
            s["ratio_to_bound"].as_f64().unwrap_or(0.0),
        );
        if let Some(e) = s["first_error"].as_str() {
            println!("           first error: {e}");
        }
        if s["exhausted"] == true {
            println!("           ran out of unused TOTP steps: a lower bound (raise --mfa-users)");
        }
    }
    let o = &r["overload"];
    if !o.is_null() {
        let f = |k: &str| o[k].as_f64().unwrap_or(0.0);
        println!(
            "overload: {:.0} logins/s offered ({}x) for {} sent: {} served ({:.1}/s, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms), {} shed with 503/429 (p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms), {} errors, peak RSS {}",
            f("offered_per_s"),
            f("factor"),
            f("sent"),
            f("served"),
            f("served_per_s"),
            f("served_p50_ms"),
            f("served_p99_ms"),
            f("served_max_ms"),
            f("shed"),
            f("shed_p50_ms"),
            f("shed_p99_ms"),
            f("shed_max_ms"),
            f("errors"),
            o["peak_rss_mib"].as_f64().map_or("n/a".into(), |m| format!("{m:.1} MiB")),
        );
        if let Some(e) = o["first_error"].as_str() {
            println!("          first error: {e}");
        }
    }
    let b = &r["burst"];
    if !b.is_null() {
        let f = |k: &str| b[k].as_f64().unwrap_or(0.0);
        println!(
            "burst: {:.0} logins at once: {} served (p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms), {} shed (p50 {:.1} ms, max {:.0} ms), {} errors",
            f("logins"),
            f("served"),
            f("served_p50_ms"),
            f("served_p99_ms"),
            f("served_max_ms"),
            f("shed"),
            f("shed_p50_ms"),
            f("shed_max_ms"),
            f("errors"),
        );
        if let Some(e) = b["first_error"].as_str() {
            println!("       first error: {e}");
        }
    }
    let c = &r["cold_start"];
    if !c.is_null() {
        let f = |k: &str| c[k].as_f64().unwrap_or(0.0);
        println!(
            "cold start (spawn to /healthz 200 on an existing database, {} runs): median {:.1} ms, min {:.1} ms, max {:.1} ms",
            f("runs"),
            f("median_ms"),
            f("min_ms"),
            f("max_ms"),
        );
    }
}

/// The child processes: the server under test and the hello-world baseline.
mod child {
    use super::ExitCode;
    use clap::Parser;
    use warp::Filter;

    /// The real server, as `edge-idp serve` runs it, with `args` as its command line.
    pub fn server(args: &[String]) -> ExitCode {
        let cli = match edge_idp::cli::Cli::try_parse_from(
            std::iter::once("edge-idp".to_owned()).chain(args.iter().cloned()),
        ) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("bench server: {e}");
                return ExitCode::from(2);
            }
        };
        let config = cli.config;
        edge_idp::ops::telemetry::init(config.log_format);
        let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        else {
            return ExitCode::FAILURE;
        };
        let result: Result<(), String> = rt.block_on(async {
            let (key, _) = config.resolve_master_key().map_err(|e| e.to_string())?;
            let settings = config.validate(key).map_err(|e| e.to_string())?;
            let app = edge_idp::startup::Application::build(settings)
                .await
                .map_err(|e| e.to_string())?;
            app.run_until_stopped().await.map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bench server: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// A hello-world warp route on the port in `args[0]`: the HTTP ceiling of this machine.
    pub fn hello(args: &[String]) -> ExitCode {
        let Some(port) = args.first().and_then(|p| p.parse::<u16>().ok()) else {
            return ExitCode::from(2);
        };
        let Ok(rt) = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        else {
            return ExitCode::FAILURE;
        };
        rt.block_on(async move {
            let hello = warp::path!("healthz").map(|| "ok");
            warp::serve(hello).run(([127, 0, 0, 1], port)).await;
        });
        ExitCode::SUCCESS
    }
}
