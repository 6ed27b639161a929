//! `POST /token`: RFC 8693 token exchange for short-lived, narrowly scoped task tokens.
//!
//! A caller presents its valid token (`subject_token`) and asks for a subset of its scopes, one
//! of our routes as `resource`/`audience`, and a short lifetime; the gateway signs a new token
//! with its own key, keeping the subject and recording the requesting agent (the caller's client)
//! in `act`, optionally bound to a task. Never wider than the original. Refusals are RFC 6749
//! error JSON. Every exchange, granted or refused, is recorded in the audit trail.

use std::sync::Arc;

use authz_token::{ExchangePolicy, ExchangeRequest};
use authz_types::{AuditRecord, Decision, Method, Operation, ReasonCode, Target};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::App;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// The form fields of a token exchange request (RFC 8693 §2.1, plus `task_id` and
/// `expires_in`, the requested lifetime).
#[derive(Debug, Deserialize)]
pub(crate) struct ExchangeForm {
    grant_type: Option<String>,
    subject_token: Option<String>,
    subject_token_type: Option<String>,
    requested_token_type: Option<String>,
    resource: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    expires_in: Option<i64>,
    task_id: Option<String>,
}

/// Writes `rec` durably; when the writer does not take it, counts and logs that (like the MCP
/// routes) and returns the 503 to answer instead: an exchange without its record is refused.
async fn record(
    app: &App,
    mut rec: AuditRecord,
    request_id: &str,
    client: Option<std::net::IpAddr>,
) -> Option<Response> {
    if rec.client_addr.is_none() {
        rec.client_addr = client.map(|c| c.to_string());
    }
    let error = app.audit_writer.append_durable(rec).await.err()?;
    app.metrics.audit_refused(request_id, &error);
    Some(oauth_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "try again later",
        request_id,
    ))
}

fn oauth_error(status: StatusCode, code: &str, description: &str, request_id: &str) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

pub(crate) async fn token(
    State(app): State<Arc<App>>,
    client: Option<axum::Extension<crate::connections::ClientAddr>>,
    form: Result<axum::Form<ExchangeForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let client = client.map(|axum::Extension(c)| c.0);
    let request_id = uuid::Uuid::now_v7().simple().to_string();
    let bad = |code: &str, description: &str| {
        oauth_error(StatusCode::BAD_REQUEST, code, description, &request_id)
    };
    let (Some(signer), Some(cfg)) = (&app.exchange_signer, &app.config.token_exchange) else {
        return oauth_error(
            StatusCode::NOT_FOUND,
            "unsupported_grant_type",
            "token exchange is not enabled",
            &request_id,
        );
    };
    let Ok(axum::Form(f)) = form else {
        return bad(
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
    };
    if f.grant_type.as_deref() != Some(GRANT_TYPE) {
        return bad(
            "unsupported_grant_type",
            "only token exchange is supported here",
        );
    }
    let Some(subject_token) = f.subject_token.as_deref().filter(|t| !t.is_empty()) else {
        return bad("invalid_request", "subject_token is required");
    };
    if !matches!(
        f.subject_token_type.as_deref(),
        Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE)
    ) {
        return bad(
            "invalid_request",
            "subject_token_type must be an access token",
        );
    }
    if f.requested_token_type
        .as_deref()
        .is_some_and(|t| t != ACCESS_TOKEN_TYPE)
    {
        return bad("invalid_request", "only access tokens can be requested");
    }
    let target = match (f.resource.as_deref(), f.audience.as_deref()) {
        (Some(r), None) | (None, Some(r)) => r.to_owned(),
        (Some(r), Some(a)) if r == a => r.to_owned(),
        _ => {
            return bad(
                "invalid_request",
                "give exactly one resource (or the same audience)",
            );
        }
    };
    // The new token is for one of our routes, and the caller's token must be valid for that same
    // route: a token for one upstream cannot be turned into a token for another.
    let normalized = |u: &str| u.trim_end_matches('/').to_ascii_lowercase();
    let Some(up) = app
        .config
        .upstreams
        .iter()
        .chain(app.virtuals.values().map(|v| &*v.front))
        .find(|u| normalized(&u.resource) == normalized(&target))
    else {
        return bad(
            "invalid_target",
            "the resource is not a route of this gateway",
        );
    };
    let op = Operation::new(Method::Unknown("token/exchange".into()), Target::None);
    let principal = match app
        .verifier
        .verify_refreshing(subject_token, &up.resource)
        .await
    {
        Ok(p) => Arc::unwrap_or_clone(p),
        Err(e) => {
            // Like the MCP routes: an address that caused too many refusals without an identity
            // lately is told to back off (a valid subject token from it was served above).
            let over_budget = client.and_then(|c| {
                app.refusals.over_budget(
                    crate::refusals::ClientKey::of(c),
                    tokio::time::Instant::now(),
                )
            });
            let (reason, status) = match over_budget {
                Some(_) => (ReasonCode::ClientRateLimited, 429),
                None => (e.reason(), 400),
            };
            let rec = AuditRecord::unauthenticated(
                &request_id,
                &up.name,
                "token/exchange",
                reason,
                status,
            );
            // Like the proxy's refusals without an identity: the first of a kind in a window is
            // recorded, identical ones after it are counted into its aggregate record.
            if !app.counted_as_repeat(client, &rec)
                && let Some(unavailable) = record(&app, rec, &request_id, client).await
            {
                return unavailable;
            }
            if let Some(wait) = over_budget {
                app.metrics.client_rate_limited.inc();
                let mut resp = oauth_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "invalid_request",
                    "too many refused requests from this address; retry later",
                    &request_id,
                );
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(crate::buckets::retry_after_secs(wait)),
                );
                return resp;
            }
            return bad("invalid_grant", e.description());
        }
    };
    // Scopes are compared literally by the exchange: expand the hierarchy first, so a holder of
    // `tickets:write` may ask for `tickets:read`.
    let mut subject = principal.clone();
    subject.scopes = app.scopes.expand(&principal.scopes);
    let req = ExchangeRequest {
        scopes: f
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect(),
        audience: up.resource.clone(),
        ttl_secs: f.expires_in.unwrap_or(cfg.max_ttl_secs),
        task_id: f.task_id,
        requesting_agent: principal.client_id.clone(),
    };
    let policy = ExchangePolicy::new(
        cfg.issuer.clone(),
        vec![up.resource.clone()],
        cfg.max_ttl_secs,
    );
    let result = signer.exchange(&subject, &req, &policy);
    let decision = match &result {
        Ok(_) => Decision::allow(ReasonCode::PolicyAllow, None, app.rbac.revision()),
        Err(_) => Decision::deny(ReasonCode::InsufficientScope, None, app.rbac.revision()),
    };
    let mut rec = AuditRecord::for_decision(&request_id, &up.name, &principal, &op, &decision);
    rec.target = Some(format!(
        "scope={} ttl={}",
        req.scopes.join(" "),
        req.ttl_secs
    ));
    if result.is_err() {
        rec.http_status = Some(400);
    }
    // No record, no token.
    if let Some(unavailable) = record(&app, rec, &request_id, client).await {
        return unavailable;
    }
    match result {
        Ok(token) => {
            let now = authz_types::now_unix_ms() / 1000;
            let expires_in = req
                .ttl_secs
                .min(cfg.max_ttl_secs)
                .min(principal.expires_at - now)
                .max(0);
            let mut resp = axum::Json(json!({
                "access_token": token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": req.scopes.join(" "),
            }))
            .into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            resp
        }
        Err(e) => oauth_error(
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST),
            e.error_code(),
            e.description(),
            &request_id,
        ),
    }
}
