//! The soak: minutes of mixed traffic at moderate load against a server of its own, watching
//! for what only time shows: memory that creeps, file descriptors or threads that leak, actors
//! that die and are not replaced.
//!
//! The mix, per worker and in turn: refresh ×8, me ×8, login ×2, signup, jwks (a session's
//! day: mostly refreshes and Bearer calls, a few password checks). Every second the server's
//! RSS, open descriptors, threads and running actors are sampled. The first half of the run is
//! warm-up: the caches fill as the signups grow the database (SQLite keeps up to 2 MiB of pages
//! per pooled connection; the verified-token, profile and session caches fill with the
//! clients' entries), tokio's blocking pool reaches the threads the load needs, and the
//! allocator settles; the first 5-minute runs rose 11 MiB and 4 threads in their first half and
//! then stayed within 3 MiB and 0 threads. After it, the figures must stay flat: RSS within
//! 10 % (and 4 MiB) of its post-warm-up value, descriptors and threads within 4, the same
//! actors running and none restarted, and no request failed. A leak keeps growing through the
//! second half; a cache does not.

use crate::client::Http;
use crate::scenarios::{load, Flow, Prepared, Scenario};
use crate::{start_server, tempfile_dir, wait_ready, Args, Proc};
use std::time::{Duration, Instant};

const MIX: [Scenario; 20] = {
    use Scenario::*;
    [
        Refresh, Me, Refresh, Me, Login, Refresh, Me, Refresh, Me, Signup, Refresh, Me, Refresh,
        Me, Login, Refresh, Me, Refresh, Me, Jwks,
    ]
};

/// One sample of the server process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at_s: f64,
    rss_mib: f64,
    /// Of which anonymous (heap, stacks): where caches and leaks live. The rest is the mapped
    /// binary and SQLite's shared WAL index.
    anon_mib: f64,
    fds: usize,
    threads: usize,
    actors: f64,
    restarts: f64,
}

fn proc_sample(pid: u32) -> Option<(f64, f64, usize, usize)> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    let rss = field("VmRSS:")? / 1024.0;
    let anon = field("RssAnon:")? / 1024.0;
    let threads = field("Threads:")? as usize;
    Some((rss, anon, fds, threads))
}

/// Sum of a metric family's samples in the Prometheus text at `base`.
async fn metric_sum(http: &Http, base: &str, family: &str) -> Result<f64, String> {
    let (status, body) = http.get(&format!("{base}/metrics"), None).await?;
    if status != 200 {
        return Err(format!("/metrics answered {status}"));
    }
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| l.starts_with(family))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Runs the soak for `args.soak` seconds; `Ok(false)` when something grew or failed.
pub async fn run(args: &Args, http: &Http) -> Result<bool, String> {
    if args.url.is_some() {
        return Err(
            "--soak starts its own server (it reads the process's figures): drop --url".into(),
        );
    }
    let data = tempfile_dir()?;
    let (server, base) = start_server(args, &data)?;
    wait_ready(http, &base).await?;
    let pid = server.as_ref().map(Proc::pid).ok_or("no server process")?;
    let prepared = Prepared::new(http, &base, args).await?;
    let dur = Duration::from_secs_f64(args.soak);
    eprintln!(
        "soak: {:.0} s of mixed traffic, {} connections",
        args.soak, args.concurrency
    );

    let sampler = {
        let (http, base) = (http.clone(), base.clone());
        tokio::spawn(async move {
            let start = Instant::now();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            while start.elapsed() < dur {
                tick.tick().await;
                let Some((rss_mib, anon_mib, fds, threads)) = proc_sample(pid) else {
                    break;
                };
                let actors = metric_sum(&http, &base, "edge_idp_actors_running").await;
                let restarts = metric_sum(&http, &base, "edge_idp_actor_restarts_total").await;
                samples.push(Sample {
                    at_s: start.elapsed().as_secs_f64(),
                    rss_mib,
                    anon_mib,
                    fds,
                    threads,
                    actors: actors.unwrap_or(-1.0),
                    restarts: restarts.unwrap_or(-1.0),
                });
            }
            samples
        })
    };
    let c = args.concurrency;
    let (h, b, p) = (http.clone(), base.clone(), prepared.clone());
    let stats = load(c, dur, move |w, i| {
        let (http, base, p) = (h.clone(), b.clone(), p.clone());
        async move {
            match MIX[(i as usize + w) % MIX.len()]
                .once(&http, &base, &p, w, c, i)
                .await
            {
                Ok(Flow::Exhausted) => Ok(Flow::Done),
                other => other,
            }
        }
    })
    .await;
    let samples = sampler.await.map_err(|e| e.to_string())?;
    drop(server);
    let _ = std::fs::remove_dir_all(&data);

    let warm = samples
        .iter()
        .find(|s| s.at_s >= dur.as_secs_f64() / 2.0)
        .copied()
        .ok_or("too few samples (run longer)")?;
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at_s >= warm.at_s).collect();
    let last = **after.last().ok_or("no samples")?;
    let max = |f: fn(&Sample) -> f64| after.iter().map(|s| f(s)).fold(f64::MIN, f64::max);
    let rss_max = max(|s| s.rss_mib);
    let fds_max = max(|s| s.fds as f64);
    let threads_max = max(|s| s.threads as f64);
    let rss_flat = rss_max <= (warm.rss_mib * 1.10).max(warm.rss_mib + 4.0);
    let fds_flat = fds_max <= warm.fds as f64 + 4.0;
    let threads_flat = threads_max <= warm.threads as f64 + 4.0;
    let actors_flat = after.iter().all(|s| s.actors == warm.actors) && warm.actors > 0.0;
    let no_restarts = last.restarts == 0.0;
    println!(
        "soak: {} requests, {:.1}/s, {} errors{}",
        stats.count,
        stats.rps,
        stats.errors,
        stats
            .first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!(
        "{:>7} {:>10} {:>10} {:>5} {:>8} {:>7} {:>9}",
        "t s", "RSS MiB", "anon MiB", "fds", "threads", "actors", "restarts"
    );
    let every = (samples.len() / 12).max(1);
    for s in samples.iter().step_by(every).chain(std::iter::once(&last)) {
        println!(
            "{:>7.0} {:>10.1} {:>10.1} {:>5} {:>8} {:>7} {:>9}",
            s.at_s, s.rss_mib, s.anon_mib, s.fds, s.threads, s.actors, s.restarts
        );
    }
    println!(
        "after warm-up ({:.0} s): RSS {:.1} → max {:.1} MiB {}, fds {} → max {} {}, threads {} → max {} {}, actors {} {}, restarts {} {}",
        warm.at_s,
        warm.rss_mib,
        rss_max,
        verdict(rss_flat),
        warm.fds,
        fds_max,
        verdict(fds_flat),
        warm.threads,
        threads_max,
        verdict(threads_flat),
        warm.actors,
        verdict(actors_flat),
        last.restarts,
        verdict(no_restarts),
    );
    if stats.errors > 0 || stats.count == 0 {
        return Ok(false);
    }
    if !(rss_flat && fds_flat && threads_flat && actors_flat && no_restarts) {
        return Err("the soak saw growth after warm-up (GREW above)".into());
    }
    Ok(true)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "flat"
    } else {
        "GREW"
    }
}
