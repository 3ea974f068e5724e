//! What operators ask of the service: readiness, metrics, and the clean-up of expired rows.

use super::{App, AppError};
use edge_idp_actors::store::SessionStore;
use std::time::Duration;

/// How long a readiness probe waits for the database.
const READY_WITHIN: Duration = Duration::from_secs(2);

impl App {
    /// Ready when the database answers within two seconds and signing keys are loaded.
    pub async fn ready(&self) -> Result<(), AppError> {
        match tokio::time::timeout(READY_WITHIN, self.db.ping()).await {
            Err(_) => Err(AppError::unavailable(
                "not ready: the database does not answer",
            )),
            Ok(Err(e)) => Err(AppError::Unavailable(Box::new(e))),
            Ok(Ok(())) if self.keys.load().published.is_empty() => {
                Err(AppError::unavailable("not ready: no signing keys loaded"))
            }
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The Prometheus text of this process.
    pub fn render_metrics(&self) -> String {
        self.metrics
            .render(&self.actors, self.limiter.backend_switches())
    }

    /// Deletes expired tokens, sessions and challenges, erases successors whose grace window
    /// ended, and drops audit rows past their retention. Failures are logged; the next run
    /// retries.
    pub async fn prune(&self) {
        let now = self.clock.now();
        match self.db.prune(now, self.settings.refresh_grace).await {
            Ok(p) if p.tokens_deleted + p.sessions_deleted > 0 => {
                tracing::info!(?p, "pruned expired rows")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "prune failed; will retry"),
        }
        if let Err(e) = crate::ops::audit::prune(&self.db, now, self.settings.audit_retention).await
        {
            tracing::warn!(error = %e, "audit prune failed; will retry");
        }
        self.prune_mail_files().await;
    }
}
