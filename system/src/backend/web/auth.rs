//! Login for the web API: `POST /api/login`, `POST /api/logout`, `GET /api/me`, and
//! [`require_login`], the layer every other `/api/*` route (the `/api/live` WebSocket too) is
//! behind.
//!
//! A request is logged in when it carries a valid token, as `Authorization: Bearer TOKEN` or
//! as the cookie [`COOKIE`] (HttpOnly, SameSite=Strict) that a login sets; otherwise it gets
//! 401 with a JSON error. The user is put into the request's extensions as [`CurrentUser`].
//!
//! Failed logins are throttled by [`Throttle`], per name *from one address* and per address:
//! after [`FREE_FAILURES`] failures in a row of a name from an address (or
//! [`ADDRESS_FREE_FAILURES`] of any names from one address) that pair (or that address) is
//! locked for a time that doubles with each further failure (5 s, 10 s, 20 s, ..., at most
//! [`MAX_LOCK_MS`]); while locked every attempt, right or wrong, gets 429 with `Retry-After`.
//! So a guesser locks out itself, never the real user at another address (a per-name lock
//! let anyone keep `admin` out). Names that exist and names that do not are treated alike, and
//! a wrong password and an unknown name get the same answer, so nothing tells which names
//! exist.
//!
//! Passwords are checked by [`Verifier`]: argon2 (19 MiB, tens of milliseconds) on tokio's
//! blocking pool, at most one per core at a time and outside the storage lock, so a login
//! flood costs those cores and never stalls the API behind it; past [`MAX_WAITING`] queued
//! checks a login gets 503 at once.
//!
//! State-changing requests and WebSocket upgrades authenticated by the cookie must come from
//! this server's own pages: [`same_origin`] refuses (403) a POST or an upgrade whose `Origin`
//! names another host (cross-site request forgery and WebSocket hijacking; `SameSite=Strict`
//! already keeps the cookie off cross-site ones, not off another port of the same host). Requests
//! with a bearer token cannot be forged by another site and are not checked.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;

use super::{now_ms, with_storage, ApiError, AppState};
use crate::backend::users::{self, UserRecord};

/// The session cookie's name.
pub const COOKIE: &str = "livecam_session";
/// How long a login lasts: 12 hours.
pub const SESSION_TTL_MS: i64 = 12 * 3600 * 1000;
/// Failures in a row a name may have from one address before that pair is locked.
pub const FREE_FAILURES: u32 = 3;
/// Failures in a row (of any names) an address may have before it is locked.
pub const ADDRESS_FREE_FAILURES: u32 = 20;
/// Password checks waiting for a core, beyond which a login gets 503 at once.
pub const MAX_WAITING: usize = 64;
/// The first lock, doubled with each further failure.
pub const FIRST_LOCK_MS: i64 = 5_000;
/// The longest lock.
pub const MAX_LOCK_MS: i64 = 15 * 60 * 1000;
/// Names the throttle remembers at most; the oldest unlocked ones go first beyond it.
const MAX_TRACKED: usize = 10_000;

/// The logged-in user of a request.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub UserRecord);

/// A name's failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Failures {
    count: u32,
    last_ms: i64,
    locked_until_ms: i64,
}

/// Failed logins per key (a name at an address, or an address), a plain state machine: `now`
/// in, a verdict out.
#[derive(Debug)]
pub struct Throttle {
    names: BTreeMap<String, Failures>,
    /// Failures in a row a key may have before it is locked.
    free: u32,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(FREE_FAILURES)
    }
}

impl Throttle {
    /// A throttle that locks a key after `free` failures in a row.
    pub fn new(free: u32) -> Self {
        Throttle {
            names: BTreeMap::new(),
            free,
        }
    }

    /// `Err(ms)` when `name` is locked for `ms` more at `now_ms`.
    pub fn check(&self, name: &str, now_ms: i64) -> Result<(), i64> {
        match self.names.get(name) {
            Some(f) if f.locked_until_ms > now_ms => Err(f.locked_until_ms - now_ms),
            _ => Ok(()),
        }
    }

    /// Records a failed login of `name`; returns how long it is locked now (0: not locked).
    pub fn failed(&mut self, name: &str, now_ms: i64) -> i64 {
        if self.names.len() >= MAX_TRACKED && !self.names.contains_key(name) {
            self.forget_oldest(now_ms);
        }
        let f = self.names.entry(name.to_string()).or_insert(Failures {
            count: 0,
            last_ms: now_ms,
            locked_until_ms: i64::MIN,
        });
        f.count = f.count.saturating_add(1);
        f.last_ms = now_ms;
        if f.count <= self.free {
            return 0;
        }
        let doublings = (f.count - self.free - 1).min(20);
        let lock = (FIRST_LOCK_MS << doublings).min(MAX_LOCK_MS);
        f.locked_until_ms = now_ms.saturating_add(lock);
        lock
    }

    /// A successful login clears the name's failures.
    pub fn succeeded(&mut self, name: &str) {
        self.names.remove(name);
    }

    /// Drops the unlocked name whose last failure is oldest (a locked one only if all are).
    fn forget_oldest(&mut self, now_ms: i64) {
        let oldest = self
            .names
            .iter()
            .min_by_key(|(_, f)| (f.locked_until_ms > now_ms, f.last_ms))
            .map(|(n, _)| n.clone());
        if let Some(n) = oldest {
            self.names.remove(&n);
        }
    }
}

/// What `POST /api/login` takes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    name: String,
    password: String,
}

fn unauthorized(message: &str) -> Response {
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

fn throttled(retry_ms: i64) -> Response {
    let secs = (retry_ms + 999) / 1000;
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many failed logins from this address; try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

fn lock_throttle(t: &Mutex<Throttles>) -> std::sync::MutexGuard<'_, Throttles> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// The login throttles: per name at an address, and per address.
#[derive(Debug)]
pub(super) struct Throttles {
    name_at_address: Throttle,
    address: Throttle,
}

impl Default for Throttles {
    fn default() -> Self {
        Throttles {
            name_at_address: Throttle::new(FREE_FAILURES),
            address: Throttle::new(ADDRESS_FREE_FAILURES),
        }
    }
}

impl Throttles {
    fn keys(name: &str, from: Option<IpAddr>) -> (String, String) {
        // An IPv6 host usually holds a whole /64: it is counted as one address.
        let at = match from {
            None => "unknown".to_string(),
            Some(IpAddr::V4(ip)) => ip.to_string(),
            Some(IpAddr::V6(ip)) => {
                let s = ip.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        };
        (format!("{name} at {at}"), at)
    }

    /// `Err(ms)` while the name at that address, or the address, is locked.
    fn check(&self, name: &str, from: Option<IpAddr>, now_ms: i64) -> Result<(), i64> {
        let (pair, at) = Self::keys(name, from);
        self.name_at_address.check(&pair, now_ms)?;
        self.address.check(&at, now_ms)
    }

    fn failed(&mut self, name: &str, from: Option<IpAddr>, now_ms: i64) {
        let (pair, at) = Self::keys(name, from);
        self.name_at_address.failed(&pair, now_ms);
        self.address.failed(&at, now_ms);
    }

    fn succeeded(&mut self, name: &str, from: Option<IpAddr>) {
        let (pair, at) = Self::keys(name, from);
        self.name_at_address.succeeded(&pair);
        self.address.succeeded(&at);
    }
}

/// Runs argon2 password checks on tokio's blocking pool, at most one per core at once and
/// with a bounded queue (see the module docs). Argon2 is the `argon2` crate's (RustCrypto).
pub(super) struct Verifier {
    cores: Arc<tokio::sync::Semaphore>,
    pub(super) waiting: AtomicUsize,
}

impl Default for Verifier {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Verifier {
            cores: Arc::new(tokio::sync::Semaphore::new(cores)),
            waiting: AtomicUsize::new(0),
        }
    }
}

impl Verifier {
    /// Whether `password` matches the PHC string `hash`; 503 when the queue is full.
    async fn verify(&self, password: String, hash: String) -> Result<bool, ApiError> {
        /// A place in the queue, given back however the wait ends (a client that hangs up
        /// drops the request's future mid-wait: without this the place would be lost).
        struct Place<'a>(&'a AtomicUsize);
        impl Drop for Place<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let place = Place(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too many logins at once; try again in a second",
            ));
        }
        let permit = self.cores.clone().acquire_owned().await;
        drop(place);
        let permit = permit.map_err(|_| ApiError::internal("password checks stopped"))?;
        tokio::task::spawn_blocking(move || {
            let _core = permit;
            users::verify_password(&password, &hash)
        })
        .await
        .map_err(|e| ApiError::internal(format!("password check failed: {e}")))
    }

    /// Holds every core's permit (tests: logins then queue).
    #[cfg(test)]
    pub(super) async fn hold_all(&self) -> tokio::sync::OwnedSemaphorePermit {
        let n = u32::try_from(self.cores.available_permits()).unwrap_or(u32::MAX);
        self.cores
            .clone()
            .acquire_many_owned(n)
            .await
            .expect("the semaphore is open")
    }
}

/// Refuses (403) a state-changing request, or a WebSocket upgrade (a page elsewhere must not
/// read the live socket with the user's cookie), that carries no bearer token and whose
/// `Origin` names a host other than the one it was sent to.
pub(super) async fn same_origin(req: Request, next: Next) -> Response {
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let safe = !upgrade && matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if !safe && !bearer {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            // HTTP/1.1 names the host in `Host`; HTTP/2 in the URI's authority.
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()))
                .unwrap_or("");
            let authority = origin.split_once("://").map_or("", |(_, a)| a);
            if host.is_empty() || !authority.eq_ignore_ascii_case(host) {
                tracing::info!(%origin, %host, "cross-origin request refused");
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!("cross-origin request refused: Origin {origin:?} is not this server"),
                )
                .into_response();
            }
        }
    }
    next.run(req).await
}

/// The cookie that holds `token` for `max_age_s` (0 clears it); `Secure` over HTTPS.
fn cookie(token: &str, max_age_s: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}");
    // A token is hex digits; the rest is ASCII.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The token a request carries: `Authorization: Bearer` first, else the session cookie.
fn token(headers: &HeaderMap) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if let Some(t) = bearer {
        return Some(t.to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// The user a request's token logs in, if any.
async fn current_user(
    shared: &AppState,
    headers: &HeaderMap,
) -> Result<Option<UserRecord>, ApiError> {
    let Some(token) = token(headers).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let hash = users::token_hash(&token);
    with_storage(shared, move |s| s.login_user(&hash, now_ms())).await
}

/// How often a long-lived answer (the live socket, an MJPEG stream) checks that the login it
/// was opened with still holds.
pub(super) const LOGIN_CHECK_MS: u64 = 1000;

/// The stored hash of the token a request carries, if it carries one.
pub(super) fn login_of(headers: &HeaderMap) -> Option<Vec<u8>> {
    token(headers)
        .filter(|t| !t.is_empty())
        .map(|t| users::token_hash(&t))
}

/// Whether the login with token hash `hash` still holds (not logged out, not expired).
pub(super) async fn login_holds(shared: &AppState, hash: &[u8]) -> Result<bool, ApiError> {
    let hash = hash.to_vec();
    with_storage(shared, move |s| s.login_user(&hash, now_ms()))
        .await
        .map(|u| u.is_some())
}

/// The layer in front of every `/api/*` route but login: 401 without a valid token.
pub(super) async fn require_login(
    State(shared): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    match current_user(&shared, req.headers()).await {
        Ok(Some(user)) => {
            req.extensions_mut().insert(CurrentUser(user));
            next.run(req).await
        }
        Ok(None) => unauthorized("login required: POST /api/login, then send the token"),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn login(State(shared): State<AppState>, req: Request) -> Response {
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    // The limit axum gives a `Bytes` body (2 MiB).
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 2 << 20).await {
        Ok(b) => b,
        Err(e) => return ApiError::bad_request(format!("login body: {e}")).into_response(),
    };
    let body: LoginBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return ApiError::bad_request(format!(
                "login body must be {{\"name\": ..., \"password\": ...}}: {e}"
            ))
            .into_response()
        }
    };
    if users::check_name(&body.name).is_err() {
        // No such name can exist (the rule is public): the same answer, nothing remembered.
        return unauthorized("wrong name or password");
    }
    {
        let mut throttle = lock_throttle(&shared.throttle);
        let now = now_ms();
        if let Err(ms) = throttle.check(&body.name, from, now) {
            return throttled(ms);
        }
        // Counted before the password is checked, so attempts in parallel cannot get past
        // the limit; a success clears it.
        throttle.failed(&body.name, from, now);
    }
    let name = body.name.clone();
    // The storage lock is held for the lookup only; the hash is checked outside it.
    let lookup = body.name.clone();
    let stored = match with_storage(&shared, move |s| s.user(&lookup)).await {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let hash = users::hash_to_check(stored.as_ref()).to_string();
    let user = match shared.verifier.verify(body.password, hash).await {
        Ok(true) => stored.map(|s| s.user),
        Ok(false) => None,
        Err(e) => return e.into_response(),
    };
    let user = match user {
        Some(u) => u,
        None => {
            tracing::info!(%name, "failed login");
            return unauthorized("wrong name or password");
        }
    };
    lock_throttle(&shared.throttle).succeeded(&name, from);
    let token = match users::new_token() {
        Ok(t) => t,
        Err(e) => return ApiError::internal(e.to_string()).into_response(),
    };
    let hash = users::token_hash(&token);
    let now = now_ms();
    let expires_ms = now.saturating_add(SESSION_TTL_MS);
    let who = user.name.clone();
    if let Err(e) = with_storage(&shared, move |s| {
        s.insert_login(&hash, &who, now, expires_ms)
    })
    .await
    {
        return e.into_response();
    }
    tracing::info!(name = %user.name, "login");
    let mut res =
        Json(json!({"token": token, "user": user, "expires_ms": expires_ms})).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&token, SESSION_TTL_MS / 1000, shared.state.secure_cookies),
    );
    res
}

pub(super) async fn logout(State(shared): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = token(&headers) {
        let hash = users::token_hash(&token);
        if let Err(e) = with_storage(&shared, move |s| s.delete_login(&hash)).await {
            return e.into_response();
        }
    }
    let mut res = Json(json!({"status": "logged out"})).into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        cookie("", 0, shared.state.secure_cookies),
    );
    res
}

pub(super) async fn me(Extension(CurrentUser(user)): Extension<CurrentUser>) -> Json<UserRecord> {
    Json(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_locks_a_name_after_free_failures_for_doubling_times() {
        let mut t = Throttle::default();
        let now = 1_000_000;
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.check("a", now), Ok(()));
            assert_eq!(t.failed("a", now), 0);
        }
        assert_eq!(t.failed("a", now), FIRST_LOCK_MS);
        assert_eq!(t.check("a", now), Err(FIRST_LOCK_MS));
        assert_eq!(t.check("a", now + FIRST_LOCK_MS - 1), Err(1));
        assert_eq!(t.check("b", now), Ok(()), "per name");
        let later = now + FIRST_LOCK_MS;
        assert_eq!(t.check("a", later), Ok(()));
        assert_eq!(t.failed("a", later), 2 * FIRST_LOCK_MS);
        assert_eq!(t.failed("a", later), 4 * FIRST_LOCK_MS);
        for _ in 0..40 {
            t.failed("a", later);
        }
        assert_eq!(t.check("a", later), Err(MAX_LOCK_MS), "capped");
        t.succeeded("a");
        assert_eq!(t.check("a", later), Ok(()));
        assert_eq!(t.failed("a", later), 0, "a success starts over");
    }

    #[test]
    fn the_throttle_forgets_old_unlocked_names_first_when_full() {
        let mut t = Throttle::default();
        for i in 0..MAX_TRACKED {
            t.failed(&format!("n{i}"), i as i64);
        }
        for _ in 0..=FREE_FAILURES {
            t.failed("locked", 0);
        }
        assert_eq!(t.names.len(), MAX_TRACKED);
        assert!(t.check("locked", 1).is_err());
        assert!(!t.names.contains_key("n0"), "the oldest went");
        assert!(t.names.contains_key("n1"));
    }

    #[test]
    fn tokens_come_from_bearer_or_cookie() {
        let mut h = HeaderMap::new();
        assert_eq!(token(&h), None);
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; livecam_session=abc ; c=d"),
        );
        assert_eq!(token(&h).as_deref(), Some("abc"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer xyz"),
        );
        assert_eq!(token(&h).as_deref(), Some("xyz"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(token(&h).as_deref(), Some("abc"));
        assert!(cookie("tok", 60, true)
            .to_str()
            .unwrap()
            .ends_with("; Secure"));
        let c = cookie("tok", 60, false);
        let c = c.to_str().unwrap();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict"),
            "{c}"
        );
    }
}
