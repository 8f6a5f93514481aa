//! Who is calling, and what they may do: the `web.auth` config (users with
//! argon2 password hashes, API tokens stored as SHA-256 digests, roles),
//! dashboard sessions, and the CSRF defences for requests a browser sends on
//! its own (cookies, basic credentials, loopback trust).
//!
//! Owns credentials and sessions only. It must not log a secret, a hash or a
//! session id, and it never decides what an action does, only whether the
//! caller may ask for it; handlers write the audit record with the name it
//! returns.
//!
//! Roles: `viewer` reads everything; `admin` may also change things (silence,
//! approve, deny, pause, run, breaker). Reads are open to anonymous callers as
//! `web.auth.anonymous_read` says (`everyone`, the default, keeps Prometheus's
//! habit of an open read API; `loopback`; `none`). Changes by anonymous
//! callers are accepted only from loopback and only while no credential at all
//! is configured (no `admin_token`, users or tokens), so a fresh install works
//! on one machine and configuring any credential closes that door.
//!
//! CSRF: a browser attaches cookies, cached basic credentials and its loopback
//! address to cross-site requests by itself. Every change authenticated that
//! way must come from our own origin (`Origin` / `Sec-Fetch-Site`, which
//! browsers always send on cross-origin posts), and a session's change must
//! also carry the session's CSRF token (`X-CSRF-Token` header or `csrf` form
//! field). Bearer tokens are never sent by a browser on its own and need
//! neither.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use argon2::Argon2;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use parking_lot::{Mutex, RwLock};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::constant_time_eq;
use crate::config::{PromDuration, Secret, Validator};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "homeostat_session";
/// Most sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 10_000;
/// Verified basic credentials are remembered this long so a script polling
/// with basic auth does not pay an argon2 hash per request.
const BASIC_CACHE_TTL: Duration = Duration::from_secs(300);

/// `web.auth`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// People who log in to the dashboard (or send basic credentials).
    pub users: Vec<UserConfig>,
    /// API tokens for automation (Grafana, scripts), sent as `Authorization:
    /// Bearer`.
    pub tokens: Vec<TokenConfig>,
    /// Who may read (dashboard pages and the read API) without credentials.
    pub anonymous_read: AnonymousRead,
    /// How long a dashboard login lasts.
    pub session_ttl: PromDuration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            users: Vec::new(),
            tokens: Vec::new(),
            anonymous_read: AnonymousRead::Everyone,
            session_ttl: PromDuration::from_secs(12 * 3600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnonymousRead {
    Everyone,
    Loopback,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    /// An argon2 PHC string (`$argon2id$v=19$...`), as `homeostat hash-password`
    /// prints.
    pub password_hash: Secret,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Recorded in the audit log as who acted.
    pub name: String,
    /// Hex SHA-256 of the token (`homeostat hash-password --token` prints it).
    /// Tokens are long random strings, so a fast digest is enough; passwords
    /// are not, hence argon2 for users.
    pub sha256: Secret,
    pub role: Role,
}

impl AuthConfig {
    pub fn validate(&self, path: &str, v: &mut Validator) {
        let mut seen = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let at = format!("{path}.users[{i}]");
            if u.name.is_empty() || u.name.len() > 64 || u.name.contains(':') {
                v.error(
                    format!("{at}.name"),
                    "must be 1 to 64 characters without ':'",
                );
            }
            if !seen.insert(u.name.clone()) {
                v.error(
                    format!("{at}.name"),
                    format!("user {:?} is listed twice", u.name),
                );
            }
            match PasswordHash::new(u.password_hash.expose()) {
                Ok(h) if h.algorithm.as_str().starts_with("argon2") => {}
                Ok(h) => v.error(
                    format!("{at}.password_hash"),
                    format!(
                        "algorithm {:?} is not argon2; make one with `homeostat hash-password`",
                        h.algorithm.as_str()
                    ),
                ),
                Err(e) => v.error(
                    format!("{at}.password_hash"),
                    format!(
                        "not an argon2 PHC string ({e}); make one with `homeostat hash-password`"
                    ),
                ),
            }
        }
        for (i, t) in self.tokens.iter().enumerate() {
            let at = format!("{path}.tokens[{i}]");
            if t.name.is_empty() {
                v.error(format!("{at}.name"), "must not be empty");
            }
            let d = t.sha256.expose();
            if d.len() != 64 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                v.error(
                    format!("{at}.sha256"),
                    "must be 64 hex digits (the SHA-256 of the token; `homeostat hash-password --token`)",
                );
            }
        }
        if self.session_ttl.0 < Duration::from_secs(60) {
            v.error(format!("{path}.session_ttl"), "must be at least 1m");
        }
    }
}

/// How the caller proved who they are; decides which CSRF checks apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Bearer,
    Basic,
    Session,
    /// No credentials.
    Anonymous,
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub name: String,
    /// None: anonymous.
    pub role: Option<Role>,
    pub via: Via,
    /// The session's CSRF token, for sessions.
    pub csrf: Option<String>,
}

impl Principal {
    pub fn anonymous() -> Self {
        Principal {
            name: "anonymous".into(),
            role: None,
            via: Via::Anonymous,
            csrf: None,
        }
    }
}

/// Why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("invalid bearer token")]
    BadToken,
    #[error("invalid user name or password")]
    BadPassword,
    #[error("malformed Authorization header")]
    Malformed,
}

struct Session {
    user: String,
    role: Role,
    csrf: String,
    expires: Instant,
    created: Instant,
}

/// SHA-256(user ":" password) → (user, role, verified at).
type BasicCache = HashMap<[u8; 32], (String, Role, Instant)>;

struct Settings {
    admin_token: Option<Secret>,
    cfg: AuthConfig,
}

/// Credentials and sessions; cheap to clone. `apply` swaps the settings on
/// reload; sessions of users who are gone or changed role end then.
#[derive(Clone)]
pub struct Auth {
    settings: Arc<RwLock<Arc<Settings>>>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    /// SHA-256(user ":" password) → (role, verified at), so a repeated basic
    /// credential skips argon2.
    basic_cache: Arc<Mutex<BasicCache>>,
}

impl Auth {
    pub fn new(admin_token: Option<String>, cfg: AuthConfig) -> Self {
        Auth {
            settings: Arc::new(RwLock::new(Arc::new(Settings {
                admin_token: admin_token.map(Secret::new),
                cfg,
            }))),
            sessions: Arc::new(Mutex::new(HashMap::new())),
            basic_cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    pub fn apply(&self, admin_token: Option<String>, cfg: &AuthConfig) {
        let mut s = self.settings.write();
        if s.admin_token.as_ref().map(Secret::expose) == admin_token.as_deref() && s.cfg == *cfg {
            return;
        }
        *s = Arc::new(Settings {
            admin_token: admin_token.map(Secret::new),
            cfg: cfg.clone(),
        });
        let users: HashMap<&str, Role> = cfg
            .users
            .iter()
            .map(|u| (u.name.as_str(), u.role))
            .collect();
        self.sessions
            .lock()
            .retain(|_, sess| users.get(sess.user.as_str()) == Some(&sess.role));
        self.basic_cache.lock().clear();
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings.read().clone()
    }

    /// Whether any credential is configured (then loopback grants no changes).
    pub fn configured(&self) -> bool {
        let s = self.settings();
        s.admin_token.is_some() || !s.cfg.users.is_empty() || !s.cfg.tokens.is_empty()
    }

    pub fn has_users(&self) -> bool {
        !self.settings().cfg.users.is_empty()
    }

    /// Identifies the caller from the request headers.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let s = self.settings();
        if let Some(v) = headers.get(header::AUTHORIZATION) {
            let v = v.to_str().map_err(|_| AuthError::Malformed)?;
            if let Some(token) = v.strip_prefix("Bearer ") {
                return self.bearer(&s, headers, token.trim());
            }
            if let Some(b64) = v.strip_prefix("Basic ") {
                return self.basic(&s, b64.trim());
            }
            return Err(AuthError::Malformed);
        }
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            let now = Instant::now();
            let sessions = self.sessions.lock();
            if let Some(sess) = sessions.get(id).filter(|x| x.expires > now) {
                return Ok(Principal {
                    name: sess.user.clone(),
                    role: Some(sess.role),
                    via: Via::Session,
                    csrf: Some(sess.csrf.clone()),
                });
            }
            // An expired or unknown cookie reads as anonymous, so the login
            // page and open pages still work; the UI offers to log in again.
        }
        Ok(Principal::anonymous())
    }

    fn bearer(
        &self,
        s: &Settings,
        headers: &HeaderMap,
        token: &str,
    ) -> Result<Principal, AuthError> {
        if let Some(admin) = &s.admin_token {
            if constant_time_eq(token.as_bytes(), admin.expose().as_bytes()) {
                // Automation holding the admin token may say on whose behalf
                // it acts, as before the dashboard existed.
                return Ok(Principal {
                    name: claimed_user(headers),
                    role: Some(Role::Admin),
                    via: Via::Bearer,
                    csrf: None,
                });
            }
        }
        let digest = hex::encode(Sha256::digest(token.as_bytes()));
        for t in &s.cfg.tokens {
            if constant_time_eq(
                digest.as_bytes(),
                t.sha256.expose().to_ascii_lowercase().as_bytes(),
            ) {
                return Ok(Principal {
                    name: format!("token:{}", t.name),
                    role: Some(t.role),
                    via: Via::Bearer,
                    csrf: None,
                });
            }
        }
        Err(AuthError::BadToken)
    }

    fn basic(&self, s: &Settings, b64: &str) -> Result<Principal, AuthError> {
        let raw = base64_decode(b64).ok_or(AuthError::Malformed)?;
        let text = String::from_utf8(raw).map_err(|_| AuthError::Malformed)?;
        let (user, password) = text.split_once(':').ok_or(AuthError::Malformed)?;
        let (name, role) = self.check_password(s, user, password)?;
        Ok(Principal {
            name,
            role: Some(role),
            via: Via::Basic,
            csrf: None,
        })
    }

    fn check_password(
        &self,
        s: &Settings,
        user: &str,
        password: &str,
    ) -> Result<(String, Role), AuthError> {
        let key: [u8; 32] = Sha256::digest(format!("{user}:{password}").as_bytes()).into();
        let now = Instant::now();
        if let Some((name, role, at)) = self.basic_cache.lock().get(&key) {
            if now.duration_since(*at) < BASIC_CACHE_TTL {
                return Ok((name.clone(), *role));
            }
        }
        let Some(u) = s.cfg.users.iter().find(|u| u.name == user) else {
            // Same work as a real check, so timing does not reveal which
            // user names exist.
            let _ = Argon2::default().verify_password(password.as_bytes(), &dummy_hash());
            return Err(AuthError::BadPassword);
        };
        let hash =
            PasswordHash::new(u.password_hash.expose()).map_err(|_| AuthError::BadPassword)?;
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .map_err(|_| AuthError::BadPassword)?;
        let mut cache = self.basic_cache.lock();
        if cache.len() > 1000 {
            cache.retain(|_, (_, _, at)| now.duration_since(*at) < BASIC_CACHE_TTL);
        }
        cache.insert(key, (u.name.clone(), u.role, now));
        Ok((u.name.clone(), u.role))
    }

    /// Checks a dashboard login and opens a session: (session id, role).
    pub fn login(&self, user: &str, password: &str) -> Result<(String, Role), AuthError> {
        let s = self.settings();
        let (name, role) = self.check_password(&s, user, password)?;
        let id = random_hex(32);
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, x| x.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, x)| x.created)
                .map(|(k, _)| k.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            id.clone(),
            Session {
                user: name,
                role,
                csrf: random_hex(24),
                expires: now + s.cfg.session_ttl.0,
                created: now,
            },
        );
        Ok((id, role))
    }

    pub fn logout(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.sessions.lock().remove(id);
        }
    }

    pub fn session_ttl(&self) -> Duration {
        self.settings().cfg.session_ttl.0
    }

    /// Whether `p` may read pages and the read API.
    pub fn may_read(&self, p: &Principal, peer: Option<SocketAddr>) -> bool {
        if p.role.is_some() {
            return true;
        }
        match self.settings().cfg.anonymous_read {
            AnonymousRead::Everyone => true,
            AnonymousRead::Loopback => is_loopback(peer),
            AnonymousRead::None => false,
        }
    }

    /// Whether `p` may change things; the error is the response to send.
    #[allow(clippy::result_large_err)]
    pub fn may_change(
        &self,
        p: &Principal,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<(), Response> {
        let role = match p.role {
            Some(r) => r,
            None if !self.configured() && is_loopback(peer) => Role::Admin,
            None if self.configured() => {
                return Err(refuse(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "log in, or send a bearer token (web.admin_token or web.auth.tokens), to change anything",
                ))
            }
            None => {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "set web.admin_token or web.auth to allow changes from other hosts",
                ))
            }
        };
        if role < Role::Admin {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("{} has the viewer role and may not change anything", p.name),
            ));
        }
        if p.via != Via::Bearer && !same_origin(headers) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "forbidden",
                "cross-site request refused (Origin does not match)",
            ));
        }
        if p.via == Via::Session {
            let given = headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let want = p.csrf.as_deref().unwrap_or("");
            if want.is_empty() || !constant_time_eq(given.as_bytes(), want.as_bytes()) {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    "missing or wrong CSRF token (reload the page)",
                ));
            }
        }
        Ok(())
    }
}

fn refuse(status: StatusCode, kind: &'static str, msg: &str) -> Response {
    super::api_error(status, kind, msg)
}

pub fn is_loopback(peer: Option<SocketAddr>) -> bool {
    peer.is_some_and(|p| p.ip().is_loopback())
}

/// The user an API client says it acts for (`X-Homeostat-User`, as the CLI's
/// `--as` sends it), or `api`. Trusted only from callers already allowed to
/// act: the admin token, or loopback without credentials.
pub fn claimed_user(headers: &HeaderMap) -> String {
    headers
        .get("x-homeostat-user")
        .and_then(|v| v.to_str().ok())
        .filter(|u| !u.is_empty() && u.len() <= 128)
        .unwrap_or("api")
        .to_string()
}

/// Whether a browser says the request comes from our own pages. Clients that
/// are not browsers send neither header and pass; browsers always send
/// `Origin` on cross-origin posts, and modern ones `Sec-Fetch-Site`.
pub fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let authority = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .unwrap_or("");
            !host.is_empty() && authority.eq_ignore_ascii_case(host)
        }
    }
}

/// One cookie's value from the `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `bytes` random bytes from the OS, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS generator failing is not something to limp on with weaker ids.
    if let Err(e) = getrandom::getrandom(&mut buf) {
        panic!("the operating system's random generator failed: {e}");
    }
    hex::encode(buf)
}

/// An argon2 PHC hash of `password` with a fresh salt.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|_| argon2::password_hash::Error::Crypto)?;
    let salt = SaltString::encode_b64(&salt)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Hex SHA-256 of an API token, for `web.auth.tokens[].sha256`.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn dummy_hash() -> PasswordHash<'static> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let s = DUMMY.get_or_init(|| hash_password("not a password").unwrap_or_default());
    PasswordHash::new(s).unwrap_or_else(|_| {
        // Only reachable if argon2 cannot hash at all; any parseable hash will do.
        PasswordHash::new(
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo",
        )
        .expect("a constant PHC string parses")
    })
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64ct::{Base64, Encoding};
    Base64::decode_vec(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn auth_with_user(role: Role) -> (Auth, String) {
        let hash = hash_password("s3cret").unwrap();
        let cfg = AuthConfig {
            users: vec![UserConfig {
                name: "alice".into(),
                password_hash: Secret::new(hash),
                role,
            }],
            tokens: vec![TokenConfig {
                name: "grafana".into(),
                sha256: Secret::new(token_digest("tok-viewer")),
                role: Role::Viewer,
            }],
            ..AuthConfig::default()
        };
        (Auth::new(Some("adm".into()), cfg), "s3cret".into())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn local() -> Option<SocketAddr> {
        Some("127.0.0.1:5000".parse().unwrap())
    }

    #[test]
    fn bearer_tokens_and_roles() {
        let (a, _) = auth_with_user(Role::Admin);
        let p = a
            .principal(&headers(&[("authorization", "Bearer adm")]))
            .unwrap();
        assert_eq!(
            (p.role, p.via, p.name.as_str()),
            (Some(Role::Admin), Via::Bearer, "api")
        );
        let p = a
            .principal(&headers(&[("authorization", "Bearer tok-viewer")]))
            .unwrap();
        assert_eq!(p.role, Some(Role::Viewer));
        assert_eq!(p.name, "token:grafana");
        assert!(a.may_change(&p, &HeaderMap::new(), local()).is_err());
        assert_eq!(
            a.principal(&headers(&[("authorization", "Bearer nope")])),
            Err(AuthError::BadToken)
        );
    }

    #[test]
    fn basic_credentials_checked_and_cached() {
        let (a, pw) = auth_with_user(Role::Admin);
        use base64ct::{Base64, Encoding};
        let good = format!(
            "Basic {}",
            Base64::encode_string(format!("alice:{pw}").as_bytes())
        );
        let bad = format!("Basic {}", Base64::encode_string(b"alice:wrong"));
        let ghost = format!("Basic {}", Base64::encode_string(b"bob:s3cret"));
        assert_eq!(
            a.principal(&headers(&[("authorization", &good)]))
                .unwrap()
                .name,
            "alice"
        );
        assert_eq!(
            a.principal(&headers(&[("authorization", &good)]))
                .unwrap()
                .via,
            Via::Basic
        );
        assert_eq!(
            a.principal(&headers(&[("authorization", &bad)])),
            Err(AuthError::BadPassword)
        );
        assert_eq!(
            a.principal(&headers(&[("authorization", &ghost)])),
            Err(AuthError::BadPassword)
        );
        assert_eq!(
            a.principal(&headers(&[("authorization", "Basic !!")])),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    fn sessions_need_csrf_and_same_origin_to_change() {
        let (a, pw) = auth_with_user(Role::Admin);
        assert!(a.login("alice", "wrong").is_err());
        let (id, role) = a.login("alice", &pw).unwrap();
        assert_eq!(role, Role::Admin);
        let cookie = format!("other=1; {SESSION_COOKIE}={id}");
        let p = a.principal(&headers(&[("cookie", &cookie)])).unwrap();
        assert_eq!(p.via, Via::Session);
        let csrf = p.csrf.clone().unwrap();
        // No token: refused.
        let h = headers(&[("cookie", &cookie), ("host", "h:1")]);
        assert!(a.may_change(&p, &h, local()).is_err());
        // Token, same origin: allowed.
        let h = headers(&[
            ("cookie", &cookie),
            ("host", "h:1"),
            ("origin", "http://h:1"),
            ("x-csrf-token", &csrf),
        ]);
        assert!(a.may_change(&p, &h, local()).is_ok());
        // Token but another site: refused.
        let h = headers(&[
            ("cookie", &cookie),
            ("host", "h:1"),
            ("origin", "http://evil:1"),
            ("x-csrf-token", &csrf),
        ]);
        assert!(a.may_change(&p, &h, local()).is_err());
        let h = headers(&[
            ("host", "h:1"),
            ("sec-fetch-site", "cross-site"),
            ("x-csrf-token", &csrf),
        ]);
        assert!(a.may_change(&p, &h, local()).is_err());
        a.logout(&headers(&[("cookie", &cookie)]));
        assert_eq!(
            a.principal(&headers(&[("cookie", &cookie)])).unwrap().via,
            Via::Anonymous
        );
    }

    #[test]
    fn loopback_trust_only_without_credentials() {
        let open = Auth::new(None, AuthConfig::default());
        let anon = open.principal(&HeaderMap::new()).unwrap();
        assert!(open.may_change(&anon, &HeaderMap::new(), local()).is_ok());
        let remote = Some("10.0.0.1:5000".parse().unwrap());
        assert!(open.may_change(&anon, &HeaderMap::new(), remote).is_err());
        // A page on another site posting to the loopback daemon.
        let h = headers(&[
            ("host", "127.0.0.1:9400"),
            ("origin", "https://evil.example"),
        ]);
        assert!(open.may_change(&anon, &h, local()).is_err());
        let (a, _) = auth_with_user(Role::Admin);
        assert!(a.may_change(&anon, &HeaderMap::new(), local()).is_err());
    }

    #[test]
    fn anonymous_read_setting() {
        let (a, _) = auth_with_user(Role::Viewer);
        let anon = Principal::anonymous();
        assert!(a.may_read(&anon, None));
        let cfg = AuthConfig {
            anonymous_read: AnonymousRead::Loopback,
            ..a.settings().cfg.clone()
        };
        a.apply(Some("adm".into()), &cfg);
        assert!(a.may_read(&anon, local()));
        assert!(!a.may_read(&anon, Some("10.0.0.1:1".parse().unwrap())));
        let cfg = AuthConfig {
            anonymous_read: AnonymousRead::None,
            ..cfg
        };
        a.apply(Some("adm".into()), &cfg);
        assert!(!a.may_read(&anon, local()));
    }

    #[test]
    fn reload_ends_sessions_of_removed_users() {
        let (a, pw) = auth_with_user(Role::Admin);
        let (id, _) = a.login("alice", &pw).unwrap();
        a.apply(Some("adm".into()), &AuthConfig::default());
        let cookie = format!("{SESSION_COOKIE}={id}");
        assert_eq!(
            a.principal(&headers(&[("cookie", &cookie)])).unwrap().via,
            Via::Anonymous
        );
    }

    #[test]
    fn config_validation_names_fields() {
        let cfg = AuthConfig {
            users: vec![UserConfig {
                name: "bob".into(),
                password_hash: Secret::new("plaintext"),
                role: Role::Admin,
            }],
            tokens: vec![TokenConfig {
                name: "t".into(),
                sha256: Secret::new("abc"),
                role: Role::Viewer,
            }],
            ..AuthConfig::default()
        };
        let mut v = Validator::new();
        cfg.validate("web.auth", &mut v);
        let text = format!("{:?}", v.issues);
        assert!(text.contains("web.auth.users[0].password_hash"), "{text}");
        assert!(text.contains("web.auth.tokens[0].sha256"), "{text}");
        assert!(
            !text.contains("plaintext"),
            "the value must not be echoed: {text}"
        );
    }
}
