//! The approval page, served only on the admin listener (`[admin] listen`), never on the
//! agents' one: plain server-rendered HTML, no script, no build step.
//!
//! An approver logs in by pasting a token; it is verified like any token the gateway accepts
//! (signature, issuer, expiry, revocation) for the page's audience (`approvals.audience`,
//! default the admin public URL) and must carry one of `approvals.approver_roles`. The token
//! is kept in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind https) and verified
//! again on every request. Every form posts a CSRF value derived from the token (an attacker's
//! page can neither read nor compute it) and a cross-origin `Origin` is refused.
//!
//! An approver sees and decides the pending approvals of their own tenant, never their own
//! calls. A refused attempt to decide is recorded (`approver_refused`); a decision is written
//! to the approval store, whose history every replica's audit task writes into the trail once.

use std::sync::Arc;

use authz_types::{AuditRecord, Effect, Principal, ReasonCode};
use axum::Router;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::App;

/// The cookie holding the approver's token.
const COOKIE: &str = "authz_approver";

/// The admin listener's routes.
pub fn admin_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(|| async { redirect("/approvals") }))
        .route("/approvals", get(list))
        .route("/approvals/{id}", get(show))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/reject", post(reject))
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(app)
}

/// The largest form the page accepts (a pasted token, a reason).
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Serves the admin listener until `shutdown` resolves, through the same accept loop as the
/// agents' listener (request-head deadline, idle deadline, connection caps), with its own
/// connection counters.
pub async fn serve_admin(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = app.config.connections;
    let router = admin_router(app).layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES));
    crate::connections::serve(listener, router, limits, Arc::default(), shutdown).await;
    Ok(())
}

/// Who is looking at the page.
enum Viewer {
    /// A verified approver, and the token they came with (for the CSRF value).
    Approver(Principal, String),
    /// No token, or one that is not valid for the page.
    Anonymous(Option<String>),
    /// A valid token without an approver role.
    NotAnApprover(Principal),
}

fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some((scheme, token)) = auth.split_once(' ')
        && scheme.eq_ignore_ascii_case("bearer")
    {
        return Some(token.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

async fn viewer_with(app: &App, token: Option<String>) -> Viewer {
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Viewer::Anonymous(None);
    };
    let Some(audience) = app.approvals.settings.audience.as_deref() else {
        return Viewer::Anonymous(Some("no audience is configured for the page".into()));
    };
    match app.verifier.verify_refreshing(&token, audience).await {
        Ok(p) => {
            let p = Arc::unwrap_or_clone(p);
            let approver = p
                .roles
                .iter()
                .any(|r| app.approvals.settings.approver_roles.contains(r));
            if approver {
                Viewer::Approver(p, token)
            } else {
                Viewer::NotAnApprover(p)
            }
        }
        Err(e) => Viewer::Anonymous(Some(format!(
            "the token was not accepted: {}",
            e.description()
        ))),
    }
}

async fn viewer(app: &App, headers: &HeaderMap) -> Viewer {
    viewer_with(app, token_of(headers)).await
}

/// The CSRF value of a session: derived from its token, so only someone holding it knows it.
fn csrf(token: &str) -> String {
    let digest = Sha256::digest(format!("authz-approval-page\n{token}").as_bytes());
    hex::encode(&digest[..16])
}

/// Whether a form post comes from the page itself: no `Origin` (a same-origin navigation may
/// omit it) or exactly the page's origin.
fn same_origin(app: &App, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(base) = app.approvals.page_url.as_deref() else {
        return false;
    };
    let expected = reqwest::Url::parse(base)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    origin.to_str().is_ok_and(|o| o == expected)
}

fn redirect(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}

/// A page with the headers every response of the admin listener carries.
fn page(status: StatusCode, title: &str, who: Option<&Principal>, body: &str) -> Response {
    let who = who.map_or(String::new(), |p| {
        format!(
            "<form method=\"post\" action=\"/logout\" class=\"who\">Signed in as <b>{}</b> \
             (tenant {}) <button type=\"submit\">Log out</button></form>",
            esc(&p.subject),
            esc(p.tenant_or_default())
        )
    });
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · \
         authz-gateway</title><style>body{{font:15px/1.4 system-ui,sans-serif;margin:2em auto;\
         max-width:60em;padding:0 1em}}table{{border-collapse:collapse}}td,th{{border-bottom:1px \
         solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}}pre{{background:#f4f4f4;\
         padding:.6em;white-space:pre-wrap;word-break:break-all}}.who{{float:right}}\
         .error{{color:#a00}}</style></head><body>{who}<h1>{title}</h1>{body}</body></html>",
        title = esc(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Not `no-referrer`: under it a browser sends `Origin: null` on the page's own form posts.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn login_page(status: StatusCode, problem: Option<&str>) -> Response {
    let problem = problem.map_or(String::new(), |p| {
        format!("<p class=\"error\" id=\"problem\">{}</p>", esc(p))
    });
    page(
        status,
        "Approvals: log in",
        None,
        &format!(
            "{problem}<form method=\"post\" action=\"/login\"><p><label>Bearer token of an \
             approver<br><textarea name=\"token\" id=\"token\" rows=\"6\" cols=\"80\" \
             required></textarea></label></p><p><button type=\"submit\" id=\"login\">Log in\
             </button></p></form>"
        ),
    )
}

fn not_an_approver(p: &Principal) -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Approvals",
        Some(p),
        "<p class=\"error\" id=\"problem\">Your token carries no approver role; you cannot see \
         or decide approvals.</p>",
    )
}

async fn list(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let (p, _token) = match viewer(&app, &headers).await {
        Viewer::Approver(p, token) => (p, token),
        Viewer::NotAnApprover(p) => return not_an_approver(&p),
        Viewer::Anonymous(problem) => {
            return login_page(StatusCode::UNAUTHORIZED, problem.as_deref());
        }
    };
    let now = authz_types::now_unix_ms();
    let filter = authz_rbac::ApprovalFilter {
        state: Some("pending".into()),
        tenant: Some(p.tenant_or_default().to_owned()),
        limit: Some(200),
        ..Default::default()
    };
    let pending = match app.approvals.store.list(&filter, now).await {
        Ok(list) => list,
        Err(e) => {
            app.approvals.store_failed(&e);
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Approvals",
                Some(&p),
                "<p class=\"error\">The approval store is unavailable; try again.</p>",
            );
        }
    };
    let rows: String = pending
        .iter()
        .filter(|a| a.call.tenant == p.tenant_or_default())
        .map(|a| {
            format!(
                "<tr><td><a href=\"/approvals/{id}\">{id}</a></td><td>{tool}</td><td>{up}</td>\
                 <td>{who}</td><td>{created}</td><td>{expires}</td></tr>",
                id = esc(&a.id),
                tool = esc(&a.call.tool),
                up = esc(&a.call.upstream),
                who = esc(&a.call.subject),
                created = utc(a.created_ms),
                expires = utc(a.expires_ms),
            )
        })
        .collect();
    let body = if rows.is_empty() {
        "<p id=\"empty\">Nothing waits for an approver.</p>".to_owned()
    } else {
        format!(
            "<table id=\"pending\"><tr><th>Approval</th><th>Tool</th><th>Route</th>\
             <th>Asked by</th><th>Asked</th><th>Lapses</th></tr>{rows}</table>"
        )
    };
    page(StatusCode::OK, "Pending approvals", Some(&p), &body)
}

async fn show(State(app): State<Arc<App>>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let (p, token) = match viewer(&app, &headers).await {
        Viewer::Approver(p, token) => (p, token),
        Viewer::NotAnApprover(p) => return not_an_approver(&p),
        Viewer::Anonymous(problem) => {
            return login_page(StatusCode::UNAUTHORIZED, problem.as_deref());
        }
    };
    let approval = match app.approvals.store.get(&id).await {
        Ok(Some(a)) if a.call.tenant == p.tenant_or_default() => a,
        // Another tenant's approval is as unknown as one that does not exist.
        Ok(_) => {
            return page(
                StatusCode::NOT_FOUND,
                "Approval",
                Some(&p),
                "<p class=\"error\">No such approval.</p>",
            );
        }
        Err(e) => {
            app.approvals.store_failed(&e);
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Approval",
                Some(&p),
                "<p class=\"error\">The approval store is unavailable; try again.</p>",
            );
        }
    };
    let now = authz_types::now_unix_ms();
    let state = approval.shown_state(now);
    let arguments = approval
        .context
        .arguments
        .as_deref()
        .map(pretty)
        .unwrap_or_else(|| "(not kept)".to_owned());
    let own = approval.call.issuer == p.issuer && approval.call.subject == p.subject;
    let forms = if state != "pending" {
        String::new()
    } else if own {
        "<p class=\"error\">This is your own call: another approver must decide it.</p>".to_owned()
    } else {
        let csrf = csrf(&token);
        format!(
            "<form method=\"post\" action=\"/approvals/{id}/approve\"><input type=\"hidden\" \
             name=\"csrf\" value=\"{csrf}\"><button type=\"submit\" id=\"approve\">Approve this \
             call</button> (it may then be made once, within {secs} s)</form>\
             <form method=\"post\" action=\"/approvals/{id}/reject\"><input type=\"hidden\" \
             name=\"csrf\" value=\"{csrf}\"><label>Reason <input name=\"reason\" \
             maxlength=\"500\"></label> <button type=\"submit\" id=\"reject\">Reject</button>\
             </form>",
            id = esc(&approval.id),
            secs = app.approvals.settings.approved_ttl.as_secs(),
        )
    };
    let decided = match (&approval.decided_by, approval.decided_ms) {
        (Some(by), Some(at)) => format!(
            "<tr><th>Decided</th><td>by {} at {}{}</td></tr>",
            esc(by),
            utc(at),
            approval
                .reason
                .as_deref()
                .map(|r| format!(": {}", esc(r)))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let body = format!(
        "<table id=\"approval\">\
         <tr><th>State</th><td id=\"state\">{state}</td></tr>\
         <tr><th>Tool</th><td id=\"tool\">{tool}</td></tr>\
         <tr><th>Route</th><td>{up}</td></tr>\
         <tr><th>Asked by</th><td id=\"subject\">{subject} ({issuer}), tenant {tenant}</td></tr>\
         <tr><th>Acting</th><td>{acting}</td></tr>\
         <tr><th>Roles</th><td>{roles}</td></tr>\
         <tr><th>Held by</th><td>{rule}</td></tr>\
         <tr><th>Request</th><td>{request}</td></tr>\
         <tr><th>Asked</th><td>{created}</td></tr>\
         <tr><th>Lapses</th><td>{expires}</td></tr>{decided}\
         <tr><th>Arguments</th><td><pre id=\"arguments\">{arguments}</pre>\
         SHA-256 {digest}</td></tr></table>{forms}<p><a href=\"/approvals\">All pending\
         </a></p>",
        tool = esc(&approval.call.tool),
        up = esc(&approval.call.upstream),
        subject = esc(&approval.call.subject),
        issuer = esc(&approval.call.issuer),
        tenant = esc(&approval.call.tenant),
        acting = esc(&approval.call.acting),
        roles = esc(&approval.context.roles.join(", ")),
        rule = esc(&approval.context.rule),
        request = esc(&approval.context.request_id),
        created = utc(approval.created_ms),
        expires = utc(approval.expires_ms),
        arguments = esc(&arguments),
        digest = esc(&approval.call.args_digest),
    );
    page(
        StatusCode::OK,
        &format!("Approval {}", approval.id),
        Some(&p),
        &body,
    )
}

fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| json.to_owned())
}

#[derive(Debug, Deserialize)]
struct Decision {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

async fn approve(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Decision>,
) -> Response {
    decide(&app, &id, &headers, form, true).await
}

async fn reject(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Decision>,
) -> Response {
    decide(&app, &id, &headers, form, false).await
}

async fn decide(app: &App, id: &str, headers: &HeaderMap, form: Decision, yes: bool) -> Response {
    let verb = if yes { "approve" } else { "reject" };
    let p = match viewer(app, headers).await {
        Viewer::Approver(p, token) => {
            if !same_origin(app, headers) || form.csrf != csrf(&token) {
                return page(
                    StatusCode::FORBIDDEN,
                    "Approval",
                    Some(&p),
                    "<p class=\"error\" id=\"problem\">This form did not come from this page; \
                     nothing was decided.</p>",
                );
            }
            p
        }
        Viewer::NotAnApprover(p) => {
            if let Some(unavailable) = refused(app, &p, id, verb, "no approver role").await {
                return unavailable;
            }
            return not_an_approver(&p);
        }
        Viewer::Anonymous(problem) => {
            return login_page(StatusCode::UNAUTHORIZED, problem.as_deref());
        }
    };
    let approval = match app.approvals.store.get(id).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                "Approval",
                Some(&p),
                "<p class=\"error\">No such approval.</p>",
            );
        }
        Err(e) => {
            app.approvals.store_failed(&e);
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Approval",
                Some(&p),
                "<p class=\"error\">The approval store is unavailable; nothing was decided.</p>",
            );
        }
    };
    if approval.call.tenant != p.tenant_or_default() {
        if let Some(unavailable) = refused(app, &p, id, verb, "another tenant's approval").await {
            return unavailable;
        }
        return page(
            StatusCode::NOT_FOUND,
            "Approval",
            Some(&p),
            "<p class=\"error\">No such approval.</p>",
        );
    }
    if approval.call.issuer == p.issuer && approval.call.subject == p.subject {
        if let Some(unavailable) = refused(app, &p, id, verb, "the approver's own call").await {
            return unavailable;
        }
        return page(
            StatusCode::FORBIDDEN,
            "Approval",
            Some(&p),
            "<p class=\"error\" id=\"problem\">This is your own call: another approver must \
             decide it.</p>",
        );
    }
    let actor = approver_name(&p);
    let now = authz_types::now_unix_ms();
    let a = &app.approvals;
    let reason = form.reason.trim();
    let reason = (!reason.is_empty()).then(|| reason.chars().take(500).collect::<String>());
    let decided = if yes {
        a.store.approve(id, &actor, a.approved_ttl_ms(), now).await
    } else {
        a.store
            .reject(id, &actor, reason.as_deref(), a.rejected_ttl_ms(), now)
            .await
    };
    match decided {
        Ok(_) => redirect(&format!("/approvals/{id}")),
        Err(authz_rbac::Error::NotFound) => page(
            StatusCode::CONFLICT,
            "Approval",
            Some(&p),
            &format!(
                "<p class=\"error\" id=\"problem\">Approval {} is no longer pending (decided or \
                 lapsed); nothing was changed.</p><p><a href=\"/approvals/{0}\">Back</a></p>",
                esc(id)
            ),
        ),
        Err(e) => {
            a.store_failed(&e);
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Approval",
                Some(&p),
                "<p class=\"error\">The approval store is unavailable; nothing was decided.</p>",
            )
        }
    }
}

/// How the page names an approver in the store and the audit trail.
pub(crate) fn approver_name(p: &Principal) -> String {
    format!("{} ({})", p.subject, p.issuer)
}

/// Records an attempt to decide that was refused; `Some(503 page)` when the record cannot be
/// written (the attempt is refused all the same, and the page says the trail is unavailable
/// rather than answering as if it had been recorded).
async fn refused(app: &App, p: &Principal, id: &str, verb: &str, why: &str) -> Option<Response> {
    let mut rec = AuditRecord::unauthenticated(
        format!("approval-page-{}", uuid::Uuid::now_v7().simple()),
        "-",
        format!("approval/{verb}"),
        ReasonCode::ApproverRefused,
        403,
    );
    rec.decision = Effect::Deny;
    rec.subject = Some(p.subject.clone());
    rec.issuer = Some(p.issuer.clone());
    rec.tenant = Some(p.tenant_or_default().to_owned());
    rec.roles.clone_from(&p.roles);
    rec.matched_rule = Some(format!("approval {id}: {why}"));
    let Err(e) = app.audit_writer.append_durable(rec).await else {
        return None;
    };
    tracing::error!(error = %e, "a refused approval attempt could not be audited");
    Some(page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Approval",
        Some(p),
        "<p class=\"error\">The audit trail is unavailable; nothing was decided.</p>",
    ))
}

#[derive(Debug, Deserialize)]
struct Login {
    #[serde(default)]
    token: String,
}

async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(form): Form<Login>,
) -> Response {
    if !same_origin(&app, &headers) {
        return login_page(StatusCode::FORBIDDEN, Some("cross-origin login refused"));
    }
    let token = form.token.trim().to_owned();
    match viewer_with(&app, Some(token.clone())).await {
        Viewer::Approver(p, _) => {
            let secure = app
                .approvals
                .page_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https:"));
            let max_age = (p.expires_at - authz_types::now_unix_ms() / 1000).max(0);
            let cookie = format!(
                "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
                if secure { "; Secure" } else { "" }
            );
            let mut resp = redirect("/approvals");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Viewer::NotAnApprover(p) => not_an_approver(&p),
        Viewer::Anonymous(problem) => login_page(
            StatusCode::UNAUTHORIZED,
            Some(problem.as_deref().unwrap_or("paste a token")),
        ),
    }
}

async fn logout() -> Response {
    let mut resp = redirect("/approvals");
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("authz_approver=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

/// HTML-escapes text for element content and quoted attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_escaping() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_346_061_000), "2026-12-04 01:01:01 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_csrf_value_depends_on_the_token() {
        assert_eq!(csrf("a"), csrf("a"));
        assert_ne!(csrf("a"), csrf("b"));
        assert_eq!(csrf("a").len(), 32);
    }
}
