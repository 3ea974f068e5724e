//! Storage faults: another process holding the database's write lock, and a full disk. Writes
//! must turn into 503 `unavailable` (never a 500 or a hang), reads keep working, nothing is
//! corrupted, and writes work again once the fault is gone, without a restart.

use crate::helpers::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// Polls `f` until it is true; fails after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn signup_status(app: &TestApp, email: &str) -> (u16, Value) {
    let r = app
        .post(
            "/auth/signup",
            &json!({"email": email, "password": PASSWORD}),
        )
        .await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_holding_the_write_lock_makes_writes_503_and_reads_keep_working() {
    let app = spawn_with(Opts::default().arg("--actor-timeout-ms", 500)).await;
    app.signup("lock-a@example.com").await;
    let login = app.login("lock-a@example.com").await;
    let access = login["access_token"].as_str().unwrap().to_owned();

    // Another process (Python's sqlite3, not this one) takes the write lock and keeps it
    // until its stdin closes.
    let mut holder = Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN IMMEDIATE')\n\
             print('locked', flush=True)\n\
             sys.stdin.read()\n\
             c.execute('ROLLBACK')\n",
        )
        .arg(app.dir.join("edge-idp.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");

    // Writes: 503 unavailable, within the ask timeout or SQLite's 5 s busy wait.
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        app.post(
            "/auth/signup",
            &json!({"email": "lock-b@example.com", "password": PASSWORD}),
        ),
    )
    .await
    .expect("signup hung on a locked database");
    assert_problem(r, 503, "unavailable").await;
    let r = tokio::time::timeout(
        Duration::from_secs(15),
        app.refresh(login["refresh_token"].as_str().unwrap()),
    )
    .await
    .expect("refresh hung on a locked database");
    assert_problem(r, 503, "unavailable").await;
    // Reads do not wait for the writer (WAL).
    assert_eq!(app.get_as("/auth/me", &access).await.status(), 200);
    assert_eq!(app.get("/.well-known/jwks.json").await.status(), 200);

    // The other process lets go: writes work again, same server. (The refused signup may have
    // gone through after all, once its SQLite wait ended: its client was told 503 and would
    // retry into 409. So the signup here is another account's.)
    drop(holder.stdin.take());
    assert!(holder.wait().unwrap().success());
    eventually(Duration::from_secs(20), "signup after the lock", || async {
        signup_status(&app, "lock-c@example.com").await.0 == 201
    })
    .await;
    let r = app.refresh(login["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        r.status(),
        200,
        "the chain goes on after the lock (unused, or replayed within the grace window)"
    );
    app.login("lock-c@example.com").await;
    integrity_ok(&app.dir).await;
}

/// A tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(PathBuf, Option<tempfile::TempDir>);

impl SmallDisk {
    /// A `size`-byte filesystem, or `None` (after saying why) when mounting is not allowed here.
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Self(dir.path().to_owned(), Some(dir))),
            other => {
                let why = format!("{other:?}");
                assert!(
                    std::env::var_os("CI").is_none(),
                    "CI must be able to mount a tmpfs for the disk-full test: {why}"
                );
                eprintln!("SKIPPED disk-full test: cannot mount a tmpfs here (needs root): {why}");
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        self.1.take();
    }
}

/// Fills the filesystem holding `path` with a file until it refuses a byte more.
fn fill(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    loop {
        if f.write_all(&chunk).and_then(|_| f.sync_all()).is_err() {
            break;
        }
    }
    // Byte by byte into what a chunk could not use.
    while f.write_all(&[0]).and_then(|_| f.sync_all()).is_ok() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_writes_503_without_corruption_and_they_resume_when_space_returns() {
    let Some(disk) = SmallDisk::mount("16m") else {
        return;
    };
    let data = disk.0.join("data");
    let app = spawn_with(
        Opts {
            data_dir: Some(data.clone()),
            ..Default::default()
        }
        .arg("--actor-timeout-ms", 2000),
    )
    .await;
    app.signup("full-a@example.com").await;
    let login = app.login("full-a@example.com").await;
    let access = login["access_token"].as_str().unwrap().to_owned();

    let filler = disk.0.join("filler");
    fill(&filler);
    // Signups until the database cannot grow: each is 201 or 503, never a 500 or a hang.
    let mut refused = 0;
    for i in 0..2000 {
        let (status, body) = tokio::time::timeout(
            Duration::from_secs(15),
            signup_status(&app, &format!("full-{i}@example.com")),
        )
        .await
        .expect("signup hung on a full disk");
        match status {
            201 => {}
            503 => {
                assert_eq!(body["code"], "unavailable", "{body}");
                refused += 1;
                if refused >= 3 {
                    break;
                }
            }
            other => panic!("signup on a full disk answered {other}: {body}"),
        }
    }
    assert!(refused >= 3, "the disk never filled up");
    // Reads still answer.
    assert_eq!(app.get_as("/auth/me", &access).await.status(), 200);

    // Space comes back: writes resume on the same server.
    std::fs::remove_file(&filler).unwrap();
    eventually(
        Duration::from_secs(20),
        "signup after space returned",
        || async { signup_status(&app, "full-after@example.com").await.0 == 201 },
    )
    .await;
    app.login("full-after@example.com").await;
    assert_eq!(
        app.refresh(login["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    let dir = app.stop().await;
    integrity_ok(&dir).await;
    drop(disk);
}
