//! Mail: what each message says (templates) and how it leaves (SMTP, or files in development).
//!
//! Nothing here touches storage. The application layer renders a [`Letter`] into a
//! [`Rendered`] message when it queues it (in the same write as the change that causes it, see
//! `app::email`), and its outbox sender hands each due message to [`Delivery::deliver`]. So a
//! request never waits for an SMTP server, and a server that is down delays mail without
//! losing it.
//!
//! - **Templates**: askama, one plain-text and one HTML file per kind under `templates/mail/`,
//!   checked at compile time; the HTML is escaped by default. Links are built from the issuer
//!   (`<ISSUER>/<page>?token=<token>`), so they reach the hosted page of this deployment.
//! - **SMTP**: lettre, from `SMTP_URL` (`smtps://`, `smtp://…?tls=required` for STARTTLS, plain
//!   `smtp://` for a loopback relay). A refusal the server calls permanent (5xx) is not
//!   retried; everything else is.
//! - **Files** (no `SMTP_URL`): each message is written whole (`.eml`, as a mail client would
//!   open it) under `DATA_DIR/mail/`, and in development its link is logged, so that
//!   `cargo run` alone lets a person click through every flow. Nothing else ever logs a link.
//! - Every message carries a `Message-ID` made from its outbox row's id, so a message sent twice
//!   (a crash between the server's acceptance and the outbox's update) is the same message to
//!   the receiving side.

use askama::Template;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// A message ready to send: what the outbox stores (sealed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rendered {
    /// The recipient's address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// The link the message carries, if any (logged in development mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// What a message is about, with what it needs to say it.
#[derive(Debug, Clone)]
pub enum Letter {
    /// "Confirm your address" after signup: the verification link.
    Verify {
        /// The link with its token.
        link: String,
        /// Hours it works.
        hours: i64,
    },
    /// "Confirm your new address": the link that makes it the account's address.
    ConfirmChange {
        /// The link with its token.
        link: String,
        /// Hours it works.
        hours: i64,
    },
    /// "Reset your password": the reset link.
    Reset {
        /// The link with its token.
        link: String,
        /// Minutes it works.
        minutes: i64,
    },
    /// Notice: the password was changed (or reset).
    PasswordChanged {
        /// `reset` (through a mailed link) or `changed` (signed in).
        how: &'static str,
    },
    /// Notice: the second factor was turned off.
    MfaDisabled,
    /// Notice: a passkey was added.
    PasskeyAdded {
        /// Its name.
        name: String,
    },
    /// Notice: a sign-in from a device not seen on this account before.
    NewSignIn {
        /// The device's `User-Agent`, as sent.
        device: String,
        /// The client IP.
        ip: String,
    },
    /// Notice to the old address: a change to `new_email` waits for its confirmation.
    EmailChangeRequested {
        /// The address asked for.
        new_email: String,
    },
    /// Notice to the old address: the account's address is now `new_email`.
    EmailChanged {
        /// The new address.
        new_email: String,
    },
}

impl Letter {
    /// The kind's stable name (outbox rows, metrics, audit).
    pub fn kind(&self) -> &'static str {
        match self {
            Letter::Verify { .. } => "verify_email",
            Letter::ConfirmChange { .. } => "confirm_email_change",
            Letter::Reset { .. } => "password_reset",
            Letter::PasswordChanged { .. } => "password_changed",
            Letter::MfaDisabled => "mfa_disabled",
            Letter::PasskeyAdded { .. } => "passkey_added",
            Letter::NewSignIn { .. } => "new_sign_in",
            Letter::EmailChangeRequested { .. } => "email_change_requested",
            Letter::EmailChanged { .. } => "email_changed",
        }
    }

    /// The message for `to`, from `product`.
    pub fn render(&self, product: &str, to: &str) -> Result<Rendered, MailError> {
        let link_mail = |subject: String, intro: &str, link: &str, hours: i64| {
            let t = VerifyMail {
                product,
                intro,
                link,
                hours,
            };
            Ok::<_, MailError>((
                subject,
                t.render()?,
                VerifyMailHtml { m: &t }.render()?,
                Some(link.to_owned()),
            ))
        };
        let notice = |subject: String, what: String| {
            let t = NoticeMail {
                product,
                what: &what,
            };
            Ok::<_, MailError>((
                subject,
                t.render()?,
                NoticeMailHtml { m: &t }.render()?,
                None,
            ))
        };
        let (subject, text, html, link) = match self {
            Letter::Verify { link, hours } => link_mail(
                format!("Confirm your email address for {product}"),
                "created an account with this address",
                link,
                *hours,
            )?,
            Letter::ConfirmChange { link, hours } => link_mail(
                format!("Confirm your new email address for {product}"),
                "asked to make this the address of their account",
                link,
                *hours,
            )?,
            Letter::Reset { link, minutes } => {
                let t = ResetMail {
                    product,
                    link,
                    minutes: *minutes,
                };
                (
                    format!("Reset your {product} password"),
                    t.render()?,
                    ResetMailHtml { m: &t }.render()?,
                    Some(link.clone()),
                )
            }
            Letter::PasswordChanged { how } => notice(
                format!("Your {product} password was changed"),
                if *how == "reset" {
                    "Your password was reset through a link sent to this address.".into()
                } else {
                    "Your password was changed.".into()
                },
            )?,
            Letter::MfaDisabled => notice(
                format!("Two-step verification was turned off for your {product} account"),
                "The second factor (authenticator app) of your account was turned off: your password alone now signs in.".into(),
            )?,
            Letter::PasskeyAdded { name } => notice(
                format!("A passkey was added to your {product} account"),
                format!("A passkey named \u{201c}{name}\u{201d} was added to your account: it can now sign in without your password."),
            )?,
            Letter::NewSignIn { device, ip } => notice(
                format!("New sign-in to your {product} account"),
                format!("Your account was signed in to from a device it had not been used on before ({device}, from {ip})."),
            )?,
            Letter::EmailChangeRequested { new_email } => notice(
                format!("Your {product} email address is being changed"),
                format!("Someone signed in to your account asked to change its address to {new_email}. Nothing changes unless that address confirms the change."),
            )?,
            Letter::EmailChanged { new_email } => notice(
                format!("Your {product} email address was changed"),
                format!("Your account's address is now {new_email}; mail about it goes there from now on."),
            )?,
        };
        Ok(Rendered {
            to: to.to_owned(),
            subject,
            text,
            html,
            link,
        })
    }
}

#[derive(Template)]
#[template(path = "mail/verify.txt")]
struct VerifyMail<'a> {
    product: &'a str,
    /// What someone did: "created an account with this address", …
    intro: &'a str,
    link: &'a str,
    hours: i64,
}

#[derive(Template)]
#[template(path = "mail/verify.html")]
struct VerifyMailHtml<'a> {
    m: &'a VerifyMail<'a>,
}

#[derive(Template)]
#[template(path = "mail/reset.txt")]
struct ResetMail<'a> {
    product: &'a str,
    link: &'a str,
    minutes: i64,
}

#[derive(Template)]
#[template(path = "mail/reset.html")]
struct ResetMailHtml<'a> {
    m: &'a ResetMail<'a>,
}

#[derive(Template)]
#[template(path = "mail/notice.txt")]
struct NoticeMail<'a> {
    product: &'a str,
    what: &'a str,
}

#[derive(Template)]
#[template(path = "mail/notice.html")]
struct NoticeMailHtml<'a> {
    m: &'a NoticeMail<'a>,
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A template failed to render (a bug: templates are checked at compile time).
    #[error("template: {0}")]
    Template(#[from] askama::Error),
    /// The message could not be built (an address lettre refuses).
    #[error("message: {0}")]
    Build(String),
    /// The server refused it for good (5xx): retrying would not help.
    #[error("refused: {0}")]
    Permanent(String),
    /// The server is unreachable, busy or refused it for now: try again later.
    #[error("not delivered yet: {0}")]
    Transient(String),
}

impl MailError {
    /// Whether trying again cannot help.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            MailError::Permanent(_) | MailError::Build(_) | MailError::Template(_)
        )
    }
}

/// How long one SMTP conversation may take before it counts as a failed attempt: well inside
/// the first backoff (30 s) and the sender's lease (60 s), so no other attempt at the same
/// message can overlap it.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// Where messages go.
#[derive(Clone)]
pub enum Delivery {
    /// Through an SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// Written as `.eml` files into a folder (development); links logged when `log_links`
    /// (development mode only: production never logs one).
    Files {
        /// The folder.
        dir: PathBuf,
        /// Log each message's link.
        log_links: bool,
    },
}

impl Delivery {
    /// SMTP when `smtp_url` is set, else files under `dir` (their links logged if
    /// `log_links`).
    pub fn new(smtp_url: Option<&str>, dir: PathBuf, log_links: bool) -> Result<Self, MailError> {
        match smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| MailError::Build(e.to_string()))?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build();
                Ok(Delivery::Smtp(transport))
            }
            None => Ok(Delivery::Files { dir, log_links }),
        }
    }

    /// Sends one message: `id` is its outbox row (its `Message-ID`), `host` the issuer's host.
    pub async fn deliver(
        &self,
        id: Uuid,
        from: &str,
        host: &str,
        date: SystemTime,
        m: &Rendered,
    ) -> Result<(), MailError> {
        let from: Mailbox = from.parse().map_err(|e| MailError::Build(format!("{e}")))?;
        let to: Mailbox =
            m.to.parse()
                .map_err(|e| MailError::Build(format!("recipient: {e}")))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(m.subject.clone())
            .message_id(Some(format!("<{id}@{host}>")))
            .date(date)
            .multipart(MultiPart::alternative_plain_html(
                m.text.clone(),
                m.html.clone(),
            ))
            .map_err(|e| MailError::Build(e.to_string()))?;
        match self {
            Delivery::Smtp(t) => match t.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(MailError::Permanent(e.to_string())),
                Err(e) => Err(MailError::Transient(e.to_string())),
            },
            Delivery::Files { dir, log_links } => {
                let bytes = message.formatted();
                let dir = dir.clone();
                let link = m.link.clone().filter(|_| *log_links);
                let to = m.to.clone();
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(&dir)?;
                    let path = dir.join(format!("{id}.eml"));
                    let tmp = dir.join(format!(".{id}.eml.tmp"));
                    // Owner-only: the file holds the link's token in clear.
                    let _ = std::fs::remove_file(&tmp);
                    edge_idp_actors::fs::write_private(&tmp, &bytes)?;
                    std::fs::rename(&tmp, &path)?;
                    // In development the person running the server is the one the mail is
                    // for, and the log is where they look; production logs no link.
                    tracing::info!(to = %to, path = %path.display(), link = link.as_deref().unwrap_or("-"), "mail written (no SMTP_URL)");
                    Ok::<_, std::io::Error>(())
                })
                .await
                .map_err(|e| MailError::Transient(e.to_string()))?
                .map_err(|e| MailError::Transient(format!("writing the mail: {e}")))
            }
        }
    }
}

impl Delivery {
    /// Deletes `.eml` files older than `keep` (files delivery only): their links have expired,
    /// and the outbox keeps its rows as long. The number deleted.
    pub async fn prune_files(&self, keep: Duration) -> std::io::Result<usize> {
        let Delivery::Files { dir, .. } = self else {
            return Ok(0);
        };
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            };
            let mut deleted = 0;
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > keep);
                if old && path.extension().is_some_and(|x| x == "eml") {
                    std::fs::remove_file(&path)?;
                    deleted += 1;
                }
            }
            Ok(deleted)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn old_mail_files_are_pruned_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.eml"), "x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        let files = Delivery::Files {
            dir: dir.path().to_owned(),
            log_links: false,
        };
        assert_eq!(
            files.prune_files(Duration::from_secs(3600)).await.unwrap(),
            0
        );
        assert_eq!(files.prune_files(Duration::ZERO).await.unwrap(), 1);
        assert!(!dir.path().join("a.eml").exists());
        assert!(dir.path().join("notes.txt").exists());
    }

    #[test]
    fn every_letter_renders_both_parts_with_its_link_escaped_in_html() {
        let link = "https://id.example.com/email/verify?token=a&b<c";
        let r = Letter::Verify {
            link: link.into(),
            hours: 24,
        }
        .render("Example", "ann@example.com")
        .unwrap();
        assert_eq!(r.subject, "Confirm your email address for Example");
        assert!(r.text.contains(link), "{}", r.text);
        assert!(r.html.contains("token=a&#38;b&#60;c"), "{}", r.html);
        assert!(!r.html.contains("b<c"));
        for l in [
            Letter::Reset {
                link: "https://x/p?token=t".into(),
                minutes: 30,
            },
            Letter::PasswordChanged { how: "reset" },
            Letter::MfaDisabled,
            Letter::PasskeyAdded {
                name: "Laptop <b>".into(),
            },
            Letter::NewSignIn {
                device: "Firefox".into(),
                ip: "192.0.2.1".into(),
            },
            Letter::EmailChangeRequested {
                new_email: "new@example.com".into(),
            },
            Letter::EmailChanged {
                new_email: "new@example.com".into(),
            },
            Letter::ConfirmChange {
                link: "https://x/email/verify?token=t".into(),
                hours: 24,
            },
        ] {
            let r = l.render("Example", "ann@example.com").unwrap();
            assert!(!r.text.is_empty() && r.html.contains("<html"));
            assert!(!r.html.contains("<b>"), "escaped: {}", r.html);
            assert!(r.text.contains("Example"));
        }
    }
}
