//! `edge-idp clients`: the OAuth client registry an operator manages from the command line.

use crate::helpers::*;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// `edge-idp clients <args>` on the database in `dir`: exit code, stdout, stderr.
fn clients(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = server_command();
    cmd.arg("clients")
        .args(args)
        .env("DATA_DIR", dir)
        .env("MFA_ENCRYPTION_KEY", MASTER_KEY);
    let out = output_within(cmd, Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(dir: &Path, args: &[&str]) -> Value {
    let (code, out, err) = clients(dir, args);
    assert_eq!(code, 0, "clients {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_are_created_listed_rotated_and_deleted_and_only_secret_hashes_are_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let web = json_of(
        dir,
        &[
            "create",
            "--name",
            "Web app",
            "--redirect-uri",
            "https://app.example/callback",
            "--redirect-uri",
            "http://127.0.0.1:8080/cb",
            "--post-logout-redirect-uri",
            "https://app.example/",
            "--json",
        ],
    );
    let web_id = web["client_id"].as_str().unwrap().to_owned();
    let secret = web["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 43, "256 bits of secret");
    let spa = json_of(
        dir,
        &[
            "create",
            "--name",
            "Single-page app",
            "--public",
            "--redirect-uri",
            "https://spa.example/cb",
            "--json",
        ],
    );
    assert!(
        spa["client_secret"].is_null(),
        "a public client has no secret"
    );
    let spa_id = spa["client_id"].as_str().unwrap().to_owned();

    let list = json_of(dir, &["list", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2);
    let by_id = |id: &str| list.iter().find(|c| c["client_id"] == id).unwrap().clone();
    let (w, p) = (by_id(&web_id), by_id(&spa_id));
    assert_eq!(w["public"], false);
    assert_eq!(
        w["redirect_uris"],
        serde_json::json!(["https://app.example/callback", "http://127.0.0.1:8080/cb"])
    );
    assert_eq!(
        w["grant_types"],
        serde_json::json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        w["scopes"],
        serde_json::json!(["openid", "profile", "email", "offline_access"])
    );
    assert_eq!(p["public"], true);
    assert_eq!(p["require_pkce"], true, "PKCE for every public client");
    let text = serde_json::to_string(&list).unwrap();
    assert!(!text.contains(&secret), "a listing never shows a secret");

    // Only the secret's SHA-256 is stored.
    let stored = |id: String| async move {
        let db = direct_db(dir).await;
        let mut rows = db
            .conn
            .query(
                "SELECT secret_hash FROM oauth_clients WHERE client_id = ?1",
                [id],
            )
            .await
            .unwrap();
        rows.next()
            .await
            .unwrap()
            .unwrap()
            .get::<Option<Vec<u8>>>(0)
            .unwrap()
    };
    let hash = |s: &str| edge_idp_actors::crypto::sha256(s.as_bytes()).to_vec();
    assert_eq!(stored(web_id.clone()).await, Some(hash(&secret)));
    assert_eq!(stored(spa_id.clone()).await, None);

    let rotated = json_of(dir, &["rotate-secret", &web_id, "--json"]);
    let new_secret = rotated["client_secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert_eq!(stored(web_id.clone()).await, Some(hash(&new_secret)));
    let (code, _, err) = clients(dir, &["rotate-secret", &spa_id]);
    assert_eq!(code, 1);
    assert!(err.contains("public client"), "{err}");

    let (code, out, _) = clients(dir, &["delete", &spa_id]);
    assert_eq!(code, 0);
    assert!(out.contains("deleted"));
    let (code, _, err) = clients(dir, &["delete", &spa_id]);
    assert_eq!(code, 1);
    assert!(err.contains("no client with that client_id"), "{err}");
    assert_eq!(
        json_of(dir, &["list", "--json"]).as_array().unwrap().len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_a_careful_provider_refuses_are_refused_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    for (args, says) in [
        (
            &[
                "create",
                "--name",
                "x",
                "--redirect-uri",
                "http://app.example/cb",
            ][..],
            "loopback",
        ),
        (
            &[
                "create",
                "--name",
                "x",
                "--redirect-uri",
                "https://app.example/cb#f",
            ],
            "fragment",
        ),
        (
            &[
                "create",
                "--name",
                "x",
                "--redirect-uri",
                "https://*.example/cb",
            ],
            "wildcard",
        ),
        (&["create", "--name", "x"], "at least one"),
        (
            &[
                "create",
                "--name",
                "x",
                "--grant",
                "password",
                "--redirect-uri",
                "https://a.example/",
            ],
            "no implicit or password grant",
        ),
        (
            &[
                "create",
                "--name",
                "x",
                "--public",
                "--grant",
                "client_credentials",
            ],
            "needs a secret",
        ),
        (
            &[
                "create",
                "--name",
                " ",
                "--redirect-uri",
                "https://a.example/",
            ],
            "--name",
        ),
    ] {
        let (code, out, err) = clients(tmp.path(), args);
        assert_eq!(code, 1, "{args:?} accepted: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    // A client for machines only needs no redirect URI.
    let m = json_of(
        tmp.path(),
        &[
            "create",
            "--name",
            "Batch job",
            "--grant",
            "client_credentials",
            "--json",
        ],
    );
    assert!(m["client_secret"].is_string());
}
