//! `/auth/passkeys/*` handlers: registration, sign-in (usernameless or as the second factor),
//! listing, renaming, deleting; the flows are `app::passkeys`.
//!
//! The shapes fit any WebAuthn client library: each `begin` answers `{"ceremony_id",
//! "publicKey"}` with `publicKey` in WebAuthn's JSON form (what
//! `PublicKeyCredential.parseCreationOptionsFromJSON` / `parseRequestOptionsFromJSON` take), and
//! each `finish` takes `{"ceremony_id", "credential"}` with what the browser's
//! `PublicKeyCredential.toJSON()` gives.

use super::bearer::Auth;
use super::error::{ApiError, Problem};
use super::extract::{self, Body};
use super::reply::{json, metered, no_content, private_json, rfc3339};
use super::views::TokenResponse;
use crate::app::passkeys::{Begun, MAX_NAME_CHARS};
use crate::app::{Client, PasskeyRow, SharedApp};
use edge_idp_actors::SecretString;
use serde::{Deserialize, Serialize};
use tracing::instrument;
use utoipa::ToSchema;
use uuid::Uuid;
use warp::http::StatusCode;
use warp::reply::Response;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

/// `200` of each `begin`.
#[derive(Serialize, ToSchema)]
pub struct CeremonyOptions<'a> {
    /// Names this ceremony at its `finish`; single-use, five minutes.
    ceremony_id: &'a str,
    /// The options for `navigator.credentials.create()` / `.get()` in WebAuthn's JSON form
    /// (binary values base64url).
    #[serde(rename = "publicKey")]
    #[schema(value_type = Object)]
    public_key: &'a serde_json::Value,
}

impl<'a> From<&'a Begun> for CeremonyOptions<'a> {
    fn from(b: &'a Begun) -> Self {
        Self {
            ceremony_id: b.ceremony_id.expose(),
            public_key: &b.public_key,
        }
    }
}

/// `POST /auth/passkeys/register/finish`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    /// From `begin`.
    #[schema(value_type = String)]
    pub ceremony_id: SecretString,
    /// The new credential: `PublicKeyCredential.toJSON()` of `navigator.credentials.create()`.
    #[schema(value_type = Object)]
    pub credential: RegisterPublicKeyCredential,
    /// A name for it (default "Passkey"), 1 to 64 characters.
    #[schema(max_length = 64)]
    pub name: Option<String>,
}

/// `POST /auth/passkeys/login/begin`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBegin {
    /// The challenge of a password login with MFA on: the passkey is its second factor.
    /// Without it, a usernameless sign-in.
    #[schema(value_type = Option<String>)]
    pub mfa_token: Option<SecretString>,
}

/// `POST /auth/passkeys/login/finish`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    /// From `begin`.
    #[schema(value_type = String)]
    pub ceremony_id: SecretString,
    /// The assertion: `PublicKeyCredential.toJSON()` of `navigator.credentials.get()`.
    #[schema(value_type = Object)]
    pub credential: PublicKeyCredential,
}

/// `PATCH /auth/passkeys/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    /// The new name, 1 to 64 characters.
    #[schema(max_length = 64)]
    pub name: String,
}

/// A passkey of the caller.
#[derive(Serialize, ToSchema)]
#[schema(as = Passkey)]
pub struct PasskeyView {
    id: Uuid,
    name: String,
    created_at: String,
    /// The last sign-in with it.
    last_used_at: Option<String>,
    /// It may be synced to the user's other devices (a software key).
    backup_eligible: bool,
    /// It is synced now.
    backed_up: bool,
    /// How the browser reaches its authenticator (`internal`, `usb`, `hybrid`, …).
    transports: Vec<String>,
}

impl From<PasskeyRow> for PasskeyView {
    fn from(p: PasskeyRow) -> Self {
        Self {
            id: p.id,
            name: p.name,
            created_at: rfc3339(p.created_at),
            last_used_at: p.last_used_at.map(rfc3339),
            backup_eligible: p.backup_eligible,
            backed_up: p.backup_state,
            transports: p.transports,
        }
    }
}

/// `201` of register finish.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    id: Uuid,
    name: String,
    created_at: String,
}

/// `200` of `GET /auth/passkeys`.
#[derive(Serialize, ToSchema)]
pub struct PasskeyList {
    passkeys: Vec<PasskeyView>,
}

fn name(raw: Option<&str>) -> Result<Option<String>, ApiError> {
    extract::text("name", raw, MAX_NAME_CHARS).map_err(|e| ApiError::Validation(vec![e]))
}

/// `POST /auth/passkeys/register/begin`: options to create a passkey for the caller.
#[utoipa::path(post, path = "/auth/passkeys/register/begin", tag = "passkeys", security(("bearer" = [])),
    responses(
        (status = 200, description = "`{ceremony_id, publicKey}`: creation options (`challenge`, `rp`, `user`, `excludeCredentials` with the caller's passkeys, resident key preferred, user verification required)", body = CeremonyOptions),
        (status = 401, description = "`insufficient_user_authentication`: the sign-in behind the token is older than `STEP_UP_MAX_AGE_SECS`; sign in again", body = Problem),
        (status = 404, description = "`not_found`: passkeys are off (the issuer's host is not a domain and `WEBAUTHN_RP_ID` is unset)", body = Problem),
        (status = 429, description = "`rate_limited`: the login limits", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn register_begin(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let m = app.passkey_register_begin(&(&caller).into()).await?;
    Ok(metered(m, |b| private_json(&CeremonyOptions::from(&b))))
}

/// `POST /auth/passkeys/register/finish`: stores the new passkey.
#[utoipa::path(post, path = "/auth/passkeys/register/finish", tag = "passkeys", security(("bearer" = [])),
    request_body = RegisterFinish,
    responses(
        (status = 201, description = "The passkey is registered", body = Registered),
        (status = 401, description = "`invalid_passkey`: the ceremony failed its checks (challenge, origin, RP id, user verification, attestation)", body = Problem),
        (status = 404, description = "`not_found`: unknown, used, expired, or another user's ceremony", body = Problem),
        (status = 409, description = "`passkey_exists`: that credential is registered already", body = Problem),
        (status = 429, description = "`rate_limited`: the login limits", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn register_finish(app: SharedApp, auth: Auth, body: Body) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: RegisterFinish = extract::parse(body)?;
    let label = name(req.name.as_deref())?;
    let m = app
        .passkey_register_finish(&(&caller).into(), req.ceremony_id, req.credential, label)
        .await?;
    Ok(metered(m, |p| {
        json(
            StatusCode::CREATED,
            &Registered {
                id: p.id,
                name: p.name,
                created_at: rfc3339(p.created_at),
            },
        )
    }))
}

/// `POST /auth/passkeys/login/begin`: options to sign in with a passkey.
#[utoipa::path(post, path = "/auth/passkeys/login/begin", tag = "passkeys", request_body = LoginBegin,
    responses(
        (status = 200, description = "`{ceremony_id, publicKey}`: request options; without `mfa_token` no `allowCredentials` (any discoverable passkey answers), with it the passkeys of that login's user", body = CeremonyOptions),
        (status = 401, description = "`invalid_mfa_token`", body = Problem),
        (status = 404, description = "`not_found`: the `mfa_token`'s user has no passkey, or passkeys are off", body = Problem),
        (status = 429, description = "`rate_limited`: the login limits", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn login_begin(app: SharedApp, client: Client, body: Body) -> Result<Response, ApiError> {
    let req: LoginBegin = extract::parse(body)?;
    let m = app.passkey_login_begin(&client, req.mfa_token).await?;
    Ok(metered(m, |b| private_json(&CeremonyOptions::from(&b))))
}

/// `POST /auth/passkeys/login/finish`: the token response.
#[utoipa::path(post, path = "/auth/passkeys/login/finish", tag = "passkeys", request_body = LoginFinish,
    responses(
        (status = 200, description = "Tokens; `amr` `[\"hwk\"|\"swk\", \"mfa\"]`, or `[\"pwd\", \"hwk\"|\"swk\", \"mfa\"]` as a second factor", body = TokenResponse),
        (status = 401, description = "`invalid_passkey`: unknown credential, or the assertion failed its checks (signature, challenge, origin, RP id, user verification, a counter that did not move forward); `invalid_mfa_token`", body = Problem),
        (status = 403, description = "`email_not_verified`: `REQUIRE_VERIFIED_EMAIL` and the account's address is not verified (only after a valid assertion)", body = Problem),
        (status = 404, description = "`not_found`: unknown, used or expired ceremony", body = Problem),
        (status = 429, description = "`rate_limited`: the login limits, or too many wrong second-factor answers", body = Problem),
    ))]
#[instrument(skip_all, fields(ip = %client.ip))]
pub async fn login_finish(
    app: SharedApp,
    client: Client,
    body: Body,
) -> Result<Response, ApiError> {
    let req: LoginFinish = extract::parse(body)?;
    let m = app
        .passkey_login_finish(&client, req.ceremony_id, req.credential)
        .await?;
    Ok(metered(m, |t| private_json(&TokenResponse::from(&t))))
}

/// `GET /auth/passkeys`: the caller's passkeys.
#[utoipa::path(get, path = "/auth/passkeys", tag = "passkeys", security(("bearer" = [])),
    responses((status = 200, description = "The caller's passkeys, oldest first", body = PasskeyList)))]
#[instrument(skip_all)]
pub async fn list(app: SharedApp, auth: Auth) -> Result<Response, ApiError> {
    let caller = auth?;
    let passkeys = app
        .passkeys(&(&caller).into())
        .await?
        .into_iter()
        .map(PasskeyView::from)
        .collect();
    Ok(private_json(&PasskeyList { passkeys }))
}

/// `PATCH /auth/passkeys/{id}`: renames one.
#[utoipa::path(patch, path = "/auth/passkeys/{id}", tag = "passkeys", security(("bearer" = [])),
    params(("id" = String, Path, description = "The passkey")),
    request_body = RenameRequest,
    responses(
        (status = 200, description = "Renamed", body = PasskeyView),
        (status = 404, description = "`not_found` (also another user's passkey)", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn rename(
    app: SharedApp,
    auth: Auth,
    id: String,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = auth?;
    let req: RenameRequest = extract::parse(body)?;
    let label = name(Some(&req.name))?.unwrap_or_default();
    let p = app.rename_passkey(&(&caller).into(), &id, label).await?;
    Ok(private_json(&PasskeyView::from(p)))
}

/// `DELETE /auth/passkeys/{id}`: removes one; it signs in no more.
#[utoipa::path(delete, path = "/auth/passkeys/{id}", tag = "passkeys", security(("bearer" = [])),
    params(("id" = String, Path, description = "The passkey")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`insufficient_user_authentication`: sign in again first", body = Problem),
        (status = 404, description = "`not_found` (also another user's passkey)", body = Problem),
    ))]
#[instrument(skip_all)]
pub async fn delete(app: SharedApp, auth: Auth, id: String) -> Result<Response, ApiError> {
    let caller = auth?;
    app.delete_passkey(&(&caller).into(), &id).await?;
    Ok(no_content())
}
