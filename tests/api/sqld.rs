//! A real libSQL server (sqld) per test: on a free loopback port, its data in the test's temp
//! folder, killed when dropped.
//!
//! The binary is `SQLD_BIN`, else `sqld` on `PATH`, else `../shared/tools/sqld` beside the
//! project (docs/database.md says how to get one). In CI (`CI=true`) a missing sqld fails the test;
//! elsewhere the test prints SKIPPED and returns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running sqld.
pub struct Sqld {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    db_path: PathBuf,
    jwt_key: Option<PathBuf>,
    /// Where sqld logs every request it gets (debug level), if asked to.
    log: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

/// Where the sqld binary is, if anywhere.
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SQLD_BIN") {
        return Some(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("sqld");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/sqld");
    shared.is_file().then_some(shared)
}

/// The sqld to use, or `None` (with a visible note) outside CI when there is none.
pub fn available(test: &str) -> Option<PathBuf> {
    match binary() {
        Some(b) => Some(b),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: no sqld (SQLD_BIN, PATH, ../shared/tools/sqld) and CI=true: it is required")
        }
        None => {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: no sqld binary (set SQLD_BIN or put sqld on PATH)"
            );
            None
        }
    }
}

impl Sqld {
    /// Starts sqld without authentication in a fresh temp folder.
    pub async fn start(bin: &Path) -> Sqld {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("primary.sqld");
        let mut s = Self::spawn_ready(bin, db_path, None, None).await;
        s._dir = Some(dir);
        s
    }

    /// Starts sqld as [`Sqld::start`] does, logging every request it gets ([`Sqld::requests`]).
    pub async fn start_logged(bin: &Path) -> Sqld {
        let dir = tempfile::tempdir().unwrap();
        let db_path = dir.path().join("primary.sqld");
        let log = dir.path().join("sqld.log");
        let mut s = Self::spawn_ready(bin, db_path, None, Some(log)).await;
        s._dir = Some(dir);
        s
    }

    /// The Hrana requests sqld has logged so far, one line each (with every statement of a
    /// batch), for a server started by [`Sqld::start_logged`].
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.log.as_ref().expect("a logged sqld")).unwrap();
        log.lines()
            .filter_map(|l| l.split_once("pipeline:{").map(|(_, r)| r.to_owned()))
            .collect()
    }

    /// Starts sqld that accepts only EdDSA JWTs verified with the PEM public key at `jwt_key`.
    pub async fn start_with_auth(bin: &Path, dir: &Path, jwt_key: &Path) -> Sqld {
        Self::spawn_ready(
            bin,
            dir.join("primary.sqld"),
            Some(jwt_key.to_owned()),
            None,
        )
        .await
    }

    /// Starts on a free port and waits until it answers; a port taken between the pick and the
    /// bind (the process exits) is retried with another.
    async fn spawn_ready(
        bin: &Path,
        db_path: PathBuf,
        jwt_key: Option<PathBuf>,
        log: Option<PathBuf>,
    ) -> Sqld {
        for _ in 0..5 {
            let port = crate::helpers::free_port();
            let mut s = Sqld {
                child: Self::spawn(bin, &db_path, port, jwt_key.as_deref(), log.as_deref()),
                url: format!("http://127.0.0.1:{port}"),
                port,
                db_path: db_path.clone(),
                jwt_key: jwt_key.clone(),
                log: log.clone(),
                _dir: None,
            };
            if s.wait_ready().await {
                return s;
            }
            s.kill();
        }
        panic!("sqld did not start");
    }

    fn spawn(
        bin: &Path,
        db_path: &Path,
        port: u16,
        jwt_key: Option<&Path>,
        log: Option<&Path>,
    ) -> Child {
        let mut cmd = Command::new(bin);
        cmd.arg("--db-path")
            .arg(db_path)
            .arg("--http-listen-addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--no-welcome")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let log = log.map(Path::to_owned).or_else(|| {
            std::env::var_os("SQLD_LOG_DIR").map(|d| Path::new(&d).join(format!("sqld-{port}.log")))
        });
        if let Some(log) = log {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            cmd.env("RUST_LOG", "libsql_server=debug")
                .stderr(f.try_clone().unwrap())
                .stdout(f);
        }
        if let Some(k) = jwt_key {
            cmd.arg("--auth-jwt-key-file").arg(k);
        }
        cmd.spawn().expect("sqld starts")
    }

    /// Polls `/health` until it answers (true) or the process exits or 20 s pass (false).
    async fn wait_ready(&mut self) -> bool {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(r) = http.get(format!("{}/health", self.url)).send().await {
                if r.status().is_success() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        false
    }

    /// SIGKILL: the server stops mid-traffic, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port and data (after [`Sqld::kill`]).
    pub async fn restart(&mut self, bin: &Path) {
        for _ in 0..50 {
            self.child = Self::spawn(
                bin,
                &self.db_path,
                self.port,
                self.jwt_key.as_deref(),
                self.log.as_deref(),
            );
            if self.wait_ready().await {
                return;
            }
            // The port may linger for a moment after the kill.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("sqld did not restart on port {}", self.port);
    }
}

impl Drop for Sqld {
    fn drop(&mut self) {
        self.kill();
    }
}
