//! The on-call dashboard: the HTML shell of each page, its embedded assets
//! (`daemon/assets/`, uPlot vendored with its licence), the login and logout
//! forms, and the two JSON views only the dashboard needs
//! (`/api/v1/ui/overview`; autoscalers and forecasts are in [`super::api`]).
//!
//! Pages are one shell rendered here with the caller's name, role and CSRF
//! token; `app.js` fills them from the JSON API and refreshes them in place.
//! Nothing here changes state except sessions: every action the pages offer
//! goes through the same API handlers (and [`super::authorize`]) as curl would.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::api::success;
use super::auth::{Principal, Role, Via, SESSION_COOKIE};
use super::AppState;
use crate::collect::Health;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview))
        .route("/ui/{page}", get(page))
        .route("/ui/static/{file}", get(asset))
        .route("/ui/login", get(login_form).post(login))
        .route("/ui/logout", post(logout))
        .route("/api/v1/ui/overview", get(overview_json))
}

/// The pages and their titles, in navigation order.
const PAGES: [(&str, &str); 6] = [
    ("overview", "Overview"),
    ("alerts", "Alerts"),
    ("runs", "Runs"),
    ("scaling", "Forecasts & scaling"),
    ("breakers", "Breakers"),
    ("targets", "Targets & explore"),
];

struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
}

fn asset_of(name: &str) -> Option<Asset> {
    let (bytes, content_type): (&'static [u8], _) = match name {
        "app.js" => (
            include_bytes!("../../assets/ui/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "app.css" => (
            include_bytes!("../../assets/ui/app.css"),
            "text/css; charset=utf-8",
        ),
        "uPlot.iife.min.js" => (
            include_bytes!("../../assets/vendor/uplot/uPlot.iife.min.js"),
            "text/javascript; charset=utf-8",
        ),
        "uPlot.min.css" => (
            include_bytes!("../../assets/vendor/uplot/uPlot.min.css"),
            "text/css; charset=utf-8",
        ),
        "uPlot.LICENSE.txt" => (
            include_bytes!("../../assets/vendor/uplot/LICENSE"),
            "text/plain; charset=utf-8",
        ),
        _ => return None,
    };
    Some(Asset {
        bytes,
        content_type,
    })
}

const SHELL: &str = include_str!("../../assets/ui/shell.html");

/// Entity tag of an embedded asset: assets change only with the binary, so
/// one hash per asset per process is enough.
fn etag(name: &str, bytes: &[u8]) -> String {
    static TAGS: OnceLock<parking_lot::Mutex<BTreeMap<String, String>>> = OnceLock::new();
    let tags = TAGS.get_or_init(Default::default);
    tags.lock()
        .entry(name.to_string())
        .or_insert_with(|| format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..20]))
        .clone()
}

async fn asset(Path(file): Path<String>, parts: Parts) -> Response {
    let Some(a) = asset_of(&file) else {
        return (StatusCode::NOT_FOUND, "no such asset\n").into_response();
    };
    let tag = etag(&file, a.bytes);
    let fresh = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag));
    // Revalidate every time (a 304 costs a round trip, not the bytes), so an
    // upgraded binary never serves a page with yesterday's script.
    let headers = [
        (header::CONTENT_TYPE, a.content_type.to_string()),
        (header::ETAG, tag),
        (header::CACHE_CONTROL, "no-cache".to_string()),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, a.bytes).into_response()
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
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

/// Security headers for every HTML page: no framing (clickjacking on the
/// approve button), no inline script, nothing from other origins. Styles may
/// be inline because uPlot sizes its canvas with style attributes.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn principal(parts: &Parts) -> Principal {
    parts
        .extensions
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::anonymous)
}

fn render(s: &AppState, page: &str, p: &Principal) -> String {
    let title = PAGES
        .iter()
        .find(|(k, _)| *k == page)
        .map(|(_, t)| *t)
        .unwrap_or("homeostat");
    let role = p.role.map(Role::as_str).unwrap_or("anonymous");
    let login = match p.via {
        Via::Session => format!(
            "<form method=post action=/ui/logout class=logout><span class=who>{} ({})</span>\
             <input type=hidden name=csrf value=\"{}\"><button type=submit>Log out</button></form>",
            escape(&p.name),
            role,
            escape(p.csrf.as_deref().unwrap_or(""))
        ),
        Via::Basic | Via::Bearer => {
            format!("<span class=who>{} ({})</span>", escape(&p.name), role)
        }
        Via::Anonymous if s.auth.has_users() => {
            "<a class=login href=/ui/login>Log in</a>".to_string()
        }
        Via::Anonymous => String::new(),
    };
    SHELL
        .replace("{{title}}", &escape(title))
        .replace("{{page}}", page)
        .replace("{{csrf}}", &escape(p.csrf.as_deref().unwrap_or("")))
        .replace("{{user}}", &escape(&p.name))
        .replace("{{role}}", role)
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
        .replace("{{login}}", &login)
}

async fn overview(State(s): State<AppState>, parts: Parts) -> Response {
    html(StatusCode::OK, render(&s, "overview", &principal(&parts)))
}

async fn page(State(s): State<AppState>, Path(page): Path<String>, parts: Parts) -> Response {
    if page == "overview" || !PAGES.iter().any(|(k, _)| *k == page) {
        return html(
            StatusCode::NOT_FOUND,
            format!(
                "<!doctype html><title>Not found</title><p>No page {:?}. <a href=/ui/>Overview</a>",
                escape(&page)
            ),
        );
    }
    html(StatusCode::OK, render(&s, &page, &principal(&parts)))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct NextQuery {
    next: Option<String>,
}

/// Only our own pages: `next` must not become an open redirect.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_string()
        }
        _ => "/ui/".to_string(),
    }
}

fn login_page(next: &str, error: Option<&str>) -> String {
    format!(
        "<!doctype html><html lang=en><meta charset=utf-8>\
         <meta name=viewport content='width=device-width, initial-scale=1'>\
         <title>Log in · homeostat</title><link rel=stylesheet href=/ui/static/app.css>\
         <body class=login-page><main class=login-box><h1>homeostat</h1>{}\
         <form method=post action=/ui/login id=login-form>\
         <input type=hidden name=next value=\"{}\">\
         <label>User <input id=username name=username autocomplete=username required autofocus></label>\
         <label>Password <input id=password name=password type=password autocomplete=current-password required></label>\
         <button id=login-submit type=submit>Log in</button></form></main>",
        error
            .map(|e| format!("<p class='flash error' role=alert>{}</p>", escape(e)))
            .unwrap_or_default(),
        escape(next)
    )
}

async fn login_form(Query(q): Query<NextQuery>) -> Response {
    html(
        StatusCode::OK,
        login_page(&safe_next(q.next.as_deref()), None),
    )
}

/// The login form's fields, parsed by hand so a missing one re-renders the
/// form instead of axum's bare rejection.
struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

async fn login(State(s): State<AppState>, parts: Parts, body: axum::body::Bytes) -> Response {
    // A login form posted from another site would log the victim in as the
    // attacker (login CSRF).
    if !super::auth::same_origin(&parts.headers) {
        return html(
            StatusCode::FORBIDDEN,
            login_page("/ui/", Some("cross-site login refused")),
        );
    }
    let f: LoginForm = match parse_login_form(&body) {
        Some(f) => f,
        None => {
            return html(
                StatusCode::BAD_REQUEST,
                login_page("/ui/", Some("user and password are required")),
            )
        }
    };
    let next = safe_next(f.next.as_deref());
    let peer = super::peer(&parts)
        .map(|p| p.ip().to_string())
        .unwrap_or_default();
    match s.auth.login(&f.username, &f.password) {
        Ok((id, role)) => {
            audit(
                &s,
                &f.username,
                "login",
                &format!("role {}, from {peer}", role.as_str()),
            )
            .await;
            let secure = parts
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes() == b"https");
            let cookie = format!(
                "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                s.auth.session_ttl().as_secs(),
                if secure { "; Secure" } else { "" }
            );
            let mut r = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(_) => {
            tracing::warn!(user = %f.username, peer = %peer, "dashboard login failed");
            audit(&s, &f.username, "login.failed", &format!("from {peer}")).await;
            html(
                StatusCode::UNAUTHORIZED,
                login_page(&next, Some("wrong user name or password")),
            )
        }
    }
}

fn parse_login_form(body: &[u8]) -> Option<LoginForm> {
    let mut user = None;
    let mut password = None;
    let mut next = None;
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "username" => user = Some(v.into_owned()),
            "password" => password = Some(v.into_owned()),
            "next" => next = Some(v.into_owned()),
            _ => {}
        }
    }
    Some(LoginForm {
        username: user.filter(|u| !u.is_empty())?,
        password: password?,
        next,
    })
}

async fn logout(State(s): State<AppState>, parts: Parts, body: axum::body::Bytes) -> Response {
    let p = principal(&parts);
    if p.via == Via::Session {
        let given = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let want = p.csrf.clone().unwrap_or_default();
        // Logging someone out from another site is a nuisance, not a breach,
        // but the form carries the token anyway.
        if !super::constant_time_eq(given.as_bytes(), want.as_bytes())
            || !super::auth::same_origin(&parts.headers)
        {
            return html(
                StatusCode::FORBIDDEN,
                login_page(
                    "/ui/",
                    Some("log-out refused: stale form (reload the page)"),
                ),
            );
        }
        s.auth.logout(&parts.headers);
        audit(&s, &p.name, "logout", "").await;
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "homeostat_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

async fn audit(s: &AppState, actor: &str, action: &str, detail: &str) {
    let r = s
        .playbooks
        .state_db()
        .audit(crate::collect::now_ms(), actor, action, "dashboard", detail)
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, action, "cannot write the audit log");
    }
}

/// Everything the overview page needs that the other endpoints do not give
/// in one call: target health by group, alert counts by severity, runs in
/// progress, breakers not closed, the pause switch.
async fn overview_json(State(s): State<AppState>) -> Response {
    let mut groups: BTreeMap<&'static str, [u64; 3]> = BTreeMap::new();
    for t in s.targets.snapshot() {
        let g = groups.entry(t.group()).or_default();
        match t.health {
            Health::Up => g[0] += 1,
            Health::Down => g[1] += 1,
            Health::Unknown => g[2] += 1,
        }
    }
    let (firing, pending) = super::rules::alert_counts(&s);
    // Firing alerts per group, by the alert's `job` or well-known prefixes.
    let groups: Vec<_> = groups
        .into_iter()
        .map(|(g, [up, down, unknown])| {
            json!({"group": g, "up": up, "down": down, "unknown": unknown,
                   "firing": firing.by_group.get(g).copied().unwrap_or(0)})
        })
        .collect();
    let active = s
        .playbooks
        .runs(&crate::state::RunFilter {
            states: crate::playbooks::engine::run_state::ACTIVE
                .iter()
                .map(|x| x.to_string())
                .collect(),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap_or_default();
    let awaiting = active
        .iter()
        .filter(|r| r.state == crate::playbooks::engine::run_state::AWAITING_APPROVAL)
        .count();
    let breakers: Vec<_> = s
        .breakers
        .list()
        .into_iter()
        .filter(|b| b.state != crate::act::breaker::State::Closed)
        .map(|b| json!({"name": b.name, "state": b.state.as_str(), "since": b.since_ms as f64 / 1000.0}))
        .collect();
    let now = crate::collect::now_ms();
    let silences = s
        .dispatcher
        .silences()
        .list()
        .iter()
        .filter(|x| x.state(now) == "active")
        .count();
    success(json!({
        "groups": groups,
        "alerts": {"firing": firing.by_severity, "pending": pending.by_severity,
                   "suppressed": firing.suppressed + pending.suppressed},
        "runs": {"active": active.len(), "awaiting_approval": awaiting},
        "breakers_not_closed": breakers,
        "paused": s.playbooks.is_paused(None),
        "silences_active": silences,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_never_an_open_redirect() {
        assert_eq!(safe_next(Some("/ui/alerts?x=1")), "/ui/alerts?x=1");
        assert_eq!(safe_next(Some("https://evil.example/ui")), "/ui/");
        assert_eq!(safe_next(Some("//evil.example/ui")), "/ui/");
        assert_eq!(safe_next(Some("/ui\\@evil")), "/ui/");
        assert_eq!(safe_next(Some("/api/v1/pause")), "/ui/");
        assert_eq!(safe_next(None), "/ui/");
    }

    #[test]
    fn shell_escapes_what_it_fills_in() {
        assert_eq!(
            escape("<b a=\"1\">'&"),
            "&lt;b a=&quot;1&quot;&gt;&#39;&amp;"
        );
        let page = login_page("/ui/\"><script>", Some("<img src=x>"));
        assert!(
            !page.contains("<script>") && !page.contains("<img"),
            "{page}"
        );
    }

    #[test]
    fn every_asset_is_embedded_and_tagged() {
        for name in [
            "app.js",
            "app.css",
            "uPlot.iife.min.js",
            "uPlot.min.css",
            "uPlot.LICENSE.txt",
        ] {
            let a = asset_of(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(a.bytes.len() > 500, "{name} is too small to be real");
            assert_eq!(etag(name, a.bytes), etag(name, a.bytes));
        }
        assert!(asset_of("../Cargo.toml").is_none());
        for p in ["{{title}}", "{{page}}", "{{csrf}}", "{{role}}", "{{login}}"] {
            assert!(SHELL.contains(p), "shell.html lost {p}");
        }
    }
}
