//! Writes decided in one request: a [`Batch`] of statements run in order inside one immediate
//! transaction, each later statement conditioned in SQL on what the earlier ones did
//! (`RETURNING`, `INSERT … SELECT … WHERE`, `EXISTS` on a row only the batch could have
//! written), so that nothing is decided in this process between them and an error in any of
//! them rolls every one back.
//!
//! Why one request: a primary holds its write lock for the whole of a write transaction. An
//! interactive one (`BEGIN`, a read, the writes, `COMMIT`, each a round trip) holds it across
//! every round trip, and all writers of the fleet queue behind it: at 1 ms to the primary a
//! four-statement rotation capped the fleet near 245/s, at 10–100 ms it would cap it at 2.5–25/s.
//! Sent as one request, the lock is held only while the primary runs the statements.
//!
//! On a local file the same statements run as prepared statements inside `BEGIN IMMEDIATE` …
//! `COMMIT` on one pooled connection (there a round trip is a function call). At a primary
//! (remote mode, and an embedded replica's writes) they go as one Hrana batch in one HTTP
//! request (`POST /v3/pipeline`, a `batch` and a `close`), with libSQL's own protocol types:
//! libSQL's client sends batches only as SQL text, without parameters and without rows back,
//! which would mean either splicing values into SQL or one round trip per statement.

use super::{is_unique_violation, map_err, Conn, StoreError};
use libsql::Value;
use libsql_hrana::proto;
use std::sync::Arc;
use std::time::Duration;

/// Statements run together, in order, in one write transaction; see the module docs.
#[derive(Debug, Default)]
pub struct Batch {
    steps: Vec<Step>,
}

#[derive(Debug)]
struct Step {
    sql: &'static str,
    params: Vec<Value>,
    /// Whether the statement's rows are wanted (a `SELECT`, or `RETURNING`).
    rows: bool,
}

impl Batch {
    /// Adds a statement whose rows are not read; its outcome reports the rows it changed.
    pub fn execute(&mut self, sql: &'static str, params: Vec<Value>) -> usize {
        self.push(sql, params, false)
    }

    /// Adds a statement whose rows are read (a `SELECT`, or a write with `RETURNING`).
    pub fn query(&mut self, sql: &'static str, params: Vec<Value>) -> usize {
        self.push(sql, params, true)
    }

    fn push(&mut self, sql: &'static str, params: Vec<Value>, rows: bool) -> usize {
        self.steps.push(Step { sql, params, rows });
        self.steps.len() - 1
    }

    /// Runs the batch on a local connection: one immediate transaction, prepared statements.
    /// A unique-constraint violation is [`StoreError::Conflict`]`("unique")`.
    pub(super) async fn run_local(self, c: &Conn) -> Result<Outcome, StoreError> {
        c.begin_immediate().await?;
        let mut steps = Vec::with_capacity(self.steps.len());
        for step in self.steps {
            let stmt = c.prepared(step.sql).await?;
            let done = async {
                if step.rows {
                    let mut rows = stmt.query(step.params).await?;
                    let mut out = Vec::new();
                    while let Some(row) = rows.next().await? {
                        let values = (0..row.column_count())
                            .map(|i| row.get_value(i))
                            .collect::<Result<Vec<_>, _>>()?;
                        out.push(values);
                    }
                    Ok(StepOutcome {
                        changed: out.len() as u64,
                        rows: out,
                    })
                } else {
                    let changed = stmt.execute(step.params).await? as u64;
                    Ok(StepOutcome {
                        changed,
                        rows: Vec::new(),
                    })
                }
            }
            .await;
            stmt.reset();
            // The connection is rolled back by its operation's end (see `Db::exec`).
            steps.push(done.map_err(batch_err)?);
        }
        c.commit().await?;
        Ok(Outcome { steps })
    }
}

/// What each statement of a batch did, by the index [`Batch::execute`] or [`Batch::query`]
/// returned.
#[derive(Debug)]
pub struct Outcome {
    steps: Vec<StepOutcome>,
}

#[derive(Debug)]
struct StepOutcome {
    changed: u64,
    rows: Vec<Vec<Value>>,
}

impl Outcome {
    /// Rows changed by statement `i` (for a `RETURNING` statement, the rows it returned).
    pub fn changed(&self, i: usize) -> u64 {
        self.steps.get(i).map_or(0, |s| s.changed)
    }

    /// The rows of statement `i`.
    pub fn rows(&self, i: usize) -> &[Vec<Value>] {
        self.steps.get(i).map_or(&[], |s| &s.rows)
    }

    /// The first row of statement `i`, if it had one.
    pub fn first(&self, i: usize) -> Option<&[Value]> {
        self.rows(i).first().map(Vec::as_slice)
    }
}

fn batch_err(e: libsql::Error) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict("unique")
    } else {
        map_err(e)
    }
}

/// A Hrana-over-HTTP client for batches sent to a libSQL primary (sqld, Turso).
#[derive(Clone)]
pub(super) struct Primary {
    client: hyper014::Client<
        hyper_rustls::HttpsConnector<hyper014::client::HttpConnector>,
        hyper014::Body,
    >,
    pipeline_url: Arc<str>,
    authorization: Arc<str>,
}

impl Primary {
    /// A client for the primary at `url` (`libsql://` means TLS, as libSQL's client reads it).
    pub fn new(url: &str, token: &str) -> Result<Self, StoreError> {
        let base = match url.split_once("://") {
            Some(("libsql", rest)) => format!("https://{rest}"),
            Some(("http" | "https", _)) => url.to_owned(),
            _ => {
                return Err(StoreError::Other(format!(
                    "unsupported database URL scheme in {}",
                    super::redact_url(url)
                )))
            }
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| StoreError::Other(format!("TLS roots for the database: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: hyper014::Client::builder().build(connector),
            pipeline_url: format!("{}/v3/pipeline", base.trim_end_matches('/')).into(),
            authorization: format!("Bearer {token}").into(),
        })
    }

    /// Runs `batch` at the primary in one request, within `timeout`. The primary runs it as
    /// `BEGIN IMMEDIATE`, each statement only if the one before succeeded, `COMMIT` only if the
    /// last did, and `ROLLBACK` unless the commit succeeded.
    pub async fn run(&self, batch: Batch, timeout: Duration) -> Result<Outcome, StoreError> {
        let n = batch.steps.len() as u32;
        let wants: Vec<bool> = batch.steps.iter().map(|s| s.rows).collect();
        let mut steps = Vec::with_capacity(batch.steps.len() + 3);
        steps.push(proto::BatchStep {
            condition: None,
            stmt: proto::Stmt::new("BEGIN IMMEDIATE", false),
        });
        for (i, step) in batch.steps.into_iter().enumerate() {
            let mut stmt = proto::Stmt::new(step.sql, step.rows);
            stmt.args = step.params.into_iter().map(to_proto).collect();
            steps.push(proto::BatchStep {
                condition: Some(proto::BatchCond::Ok { step: i as u32 }),
                stmt,
            });
        }
        steps.push(proto::BatchStep {
            condition: Some(proto::BatchCond::Ok { step: n }),
            stmt: proto::Stmt::new("COMMIT", false),
        });
        steps.push(proto::BatchStep {
            condition: Some(proto::BatchCond::Not {
                cond: Box::new(proto::BatchCond::Ok { step: n + 1 }),
            }),
            stmt: proto::Stmt::new("ROLLBACK", false),
        });
        let body = proto::PipelineReqBody {
            baton: None,
            requests: vec![
                proto::StreamRequest::Batch(proto::BatchStreamReq {
                    batch: proto::Batch {
                        steps,
                        replication_index: None,
                    },
                }),
                proto::StreamRequest::Close(proto::CloseStreamReq {}),
            ],
        };
        let body = serde_json::to_string(&body)
            .map_err(|e| StoreError::Other(format!("encoding a batch: {e}")))?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut pause = Duration::from_millis(2);
        loop {
            let result = match tokio::time::timeout_at(deadline, self.post(body.clone())).await {
                Err(_) => {
                    return Err(StoreError::Unavailable(
                        "the database primary did not answer in time".into(),
                    ))
                }
                Ok(r) => r?,
            };
            // The primary's write lock stayed taken past its own wait: the batch did not begin,
            // so nothing of it ran, and it is sent again (seen about once in 2 400 rotations
            // with 16 writers on one primary) until the operation's deadline.
            let not_begun = matches!(result.step_errors.first(), Some(Some(e)) if is_busy(e));
            if not_begun && tokio::time::Instant::now() + pause < deadline {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(100));
                continue;
            }
            return outcome(result, &wants);
        }
    }

    async fn post(&self, body: String) -> Result<proto::BatchResult, StoreError> {
        let request = hyper014::Request::post(self.pipeline_url.as_ref())
            .header(hyper014::header::AUTHORIZATION, self.authorization.as_ref())
            .header(hyper014::header::CONTENT_TYPE, "application/json")
            .body(hyper014::Body::from(body))
            .map_err(|e| StoreError::Other(format!("building a batch request: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| StoreError::Unavailable(format!("http error: {e}")))?;
        let status = response.status();
        let bytes = hyper014::body::to_bytes(response.into_body())
            .await
            .map_err(|e| StoreError::Unavailable(format!("http error: {e}")))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(if status.is_server_error() {
                StoreError::Unavailable(format!("the primary answered {status}: {text}"))
            } else {
                StoreError::Other(format!("the primary answered {status}: {text}"))
            });
        }
        let body: proto::PipelineRespBody = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Other(format!("the primary's answer: {e}")))?;
        match body.results.into_iter().next() {
            Some(proto::StreamResult::Ok {
                response: proto::StreamResponse::Batch(b),
            }) => Ok(b.result),
            Some(proto::StreamResult::Error { error }) => Err(step_error(&error)),
            other => Err(StoreError::Other(format!(
                "the primary answered a batch with {other:?}"
            ))),
        }
    }
}

/// The statements' outcomes of a batch result (steps `1..=wants.len()`), or the first error.
fn outcome(result: proto::BatchResult, wants: &[bool]) -> Result<Outcome, StoreError> {
    // Step 0 is BEGIN, then the statements, then COMMIT: the first error among them is why
    // the batch was rolled back.
    let last = wants.len() + 1;
    if let Some(e) = result.step_errors.iter().take(last + 1).flatten().next() {
        return Err(step_error(e));
    }
    if !matches!(result.step_results.get(last), Some(Some(_))) {
        return Err(StoreError::Other(
            "the primary did not commit a batch".into(),
        ));
    }
    let mut steps = Vec::with_capacity(wants.len());
    for (i, _) in wants.iter().enumerate() {
        let Some(Some(r)) = result.step_results.get(i + 1) else {
            return Err(StoreError::Other(format!(
                "batch statement {i} did not run"
            )));
        };
        let rows = r
            .rows
            .iter()
            .map(|row| row.values.iter().cloned().map(from_proto).collect())
            .collect::<Result<Vec<Vec<Value>>, StoreError>>()?;
        steps.push(StepOutcome {
            changed: r.affected_row_count.max(rows.len() as u64),
            rows,
        });
    }
    Ok(Outcome { steps })
}

fn is_busy(e: &proto::Error) -> bool {
    e.code.contains("BUSY") || e.message.contains("database is locked")
}

fn step_error(e: &proto::Error) -> StoreError {
    if e.message.contains("UNIQUE constraint failed") || e.code.contains("CONSTRAINT_UNIQUE") {
        return StoreError::Conflict("unique");
    }
    // The same classes as libSQL's own errors (busy, interrupted, timed out: an outage).
    super::classify(format!("{}: {}", e.code, e.message))
}

fn to_proto(v: Value) -> proto::Value {
    match v {
        Value::Null => proto::Value::Null,
        Value::Integer(value) => proto::Value::Integer { value },
        Value::Real(value) => proto::Value::Float { value },
        Value::Text(value) => proto::Value::Text {
            value: value.into(),
        },
        Value::Blob(value) => proto::Value::Blob {
            value: value.into(),
        },
    }
}

fn from_proto(v: proto::Value) -> Result<Value, StoreError> {
    Ok(match v {
        proto::Value::Null => Value::Null,
        proto::Value::Integer { value } => Value::Integer(value),
        proto::Value::Float { value } => Value::Real(value),
        proto::Value::Text { value } => Value::Text(value.to_string()),
        proto::Value::Blob { value } => Value::Blob(value.to_vec()),
        proto::Value::None => {
            return Err(StoreError::Other(
                "the primary sent a value without a type".into(),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(errors: Vec<Option<proto::Error>>, ok: Vec<bool>) -> proto::BatchResult {
        proto::BatchResult {
            step_results: ok
                .into_iter()
                .map(|ran| {
                    ran.then(|| proto::StmtResult {
                        cols: vec![],
                        rows: vec![],
                        affected_row_count: 1,
                        last_insert_rowid: None,
                        replication_index: None,
                        rows_read: 0,
                        rows_written: 0,
                        query_duration_ms: 0.0,
                    })
                })
                .collect(),
            step_errors: errors,
            replication_index: None,
        }
    }

    #[test]
    fn a_failed_statement_or_an_uncommitted_batch_is_an_error_not_an_outcome() {
        let unique = proto::Error {
            message: "UNIQUE constraint failed: users.email".into(),
            code: "SQLITE_CONSTRAINT".into(),
        };
        // BEGIN, two statements, COMMIT, ROLLBACK.
        let failed = result(
            vec![None, Some(unique), None, None, None],
            vec![true, false, false, false, true],
        );
        assert!(matches!(
            outcome(failed, &[false, false]),
            Err(StoreError::Conflict("unique"))
        ));
        let uncommitted = result(vec![None; 5], vec![true, true, true, false, true]);
        assert!(outcome(uncommitted, &[false, false]).is_err());
        let busy = proto::Error {
            message: "database is locked".into(),
            code: "SQLITE_BUSY".into(),
        };
        let commit_failed = result(
            vec![None, None, None, Some(busy), None],
            vec![true, true, true, false, true],
        );
        assert!(matches!(
            outcome(commit_failed, &[false, false]),
            Err(StoreError::Unavailable(_))
        ));
        let done = result(vec![None; 5], vec![true, true, true, true, false]);
        assert_eq!(outcome(done, &[false, false]).unwrap().changed(1), 1);
    }
}
