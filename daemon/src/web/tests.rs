//! Handler tests without a socket (`oneshot`).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::*;
use crate::store::{Store, StoreConfig};

async fn app(ready: bool, reload_ok: bool) -> Router {
    let store = Arc::new(Store::new(StoreConfig {
        retention_ms: 3_600_000,
        max_series: 1000,
    }));
    let (reload, mut rx) = ReloadHandle::channel();
    tokio::spawn(async move {
        while let Some((_, reply)) = rx.recv().await {
            let _ = reply.send(if reload_ok {
                Ok(())
            } else {
                Err("test.yaml:3: bad".into())
            });
        }
    });
    let cfg = WebConfig {
        max_request_body: ByteSize(16),
        ..Default::default()
    };
    let mut telemetry = Telemetry::new(store.clone());
    let sender = crate::notify::AlertmanagerSender::new(&mut telemetry.registry);
    let state = crate::state::StateDb::open(std::path::Path::new(":memory:"))
        .await
        .unwrap();
    let breakers = crate::act::BreakerRegistry::new(&mut telemetry.registry);
    breakers.apply(&crate::act::BreakersConfig {
        breakers: vec![crate::act::BreakerConfig {
            name: "llm".into(),
            failure_threshold: Some(2),
            recovery_timeout: None,
            half_open_trials: None,
        }],
        ..Default::default()
    });
    let engine = Arc::new(parking_lot::RwLock::new(crate::query::Engine::default()));
    let deps = Arc::new(crate::act::ActDeps::empty(
        breakers.clone(),
        crate::act::Escalator::detached(),
    ));
    let playbooks = crate::playbooks::PlaybookEngine::new(
        state.clone(),
        store.clone(),
        engine.clone(),
        deps,
        &mut telemetry.registry,
        tokio_util::task::TaskTracker::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    let rules = RuleManager::new(
        store.clone(),
        state,
        sender,
        &mut telemetry.registry,
        crate::rules::RuleSettings {
            engine: crate::query::Engine::default(),
            default_interval: std::time::Duration::from_secs(60),
            external_labels: Vec::new(),
            external_url: "http://x".into(),
            resend_delay: std::time::Duration::from_secs(60),
            evaluate_after_scrape: true,
            outage_tolerance: std::time::Duration::from_secs(3600),
        },
        tokio_util::task::TaskTracker::new(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await;
    let hooks = hooks::Hooks::new(
        hooks::HooksConfig::default(),
        &mut telemetry.registry,
        reqwest::Client::new(),
    );
    router(
        AppState {
            hooks,
            telemetry: Arc::new(telemetry),
            rules,
            store,
            engine,
            targets: TargetRegistry::default(),
            reload,
            ready: Arc::new(AtomicBool::new(ready)),
            playbooks,
            breakers,
            auth: crate::web::auth::Auth::new(None, Default::default()),
            forecasts: None,
            autoscalers: None,
            dispatcher: crate::notify::Dispatcher::new(
                crate::notify::silence::Silences::new(None),
                Default::default(),
            ),
        },
        &cfg,
    )
}

async fn call(app: Router, method: &str, uri: &str, body: &'static str) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn health_and_readiness() {
    assert_eq!(
        call(app(false, true).await, "GET", "/-/healthy", "")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        call(app(false, true).await, "GET", "/-/ready", "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        call(app(true, true).await, "GET", "/-/ready", "").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn reload_reports_failure_as_500_with_reason() {
    assert_eq!(
        call(app(true, true).await, "POST", "/-/reload", "").await.0,
        StatusCode::OK
    );
    let (status, body) = call(app(true, false).await, "POST", "/-/reload", "").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("test.yaml:3: bad"), "{body}");
    assert_eq!(
        call(app(true, true).await, "GET", "/-/reload", "").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let (status, _) = call(
        app(true, true).await,
        "POST",
        "/-/reload",
        "this body is longer than sixteen bytes",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn metrics_are_openmetrics_with_build_info() {
    let (status, body) = call(app(true, true).await, "GET", "/metrics", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("homeostat_build_info{"), "{body}");
    assert!(body.contains("homeostat_store_series 0"), "{body}");
    assert!(body.contains("process_resident_memory_bytes"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");
}

#[tokio::test]
async fn targets_and_buildinfo_have_prometheus_shape() {
    let (status, body) = call(app(true, true).await, "GET", "/api/v1/targets", "").await;
    assert_eq!(status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    assert!(v["data"]["activeTargets"].is_array());
    assert!(v["data"]["droppedTargets"].is_array());
    let (status, body) = call(
        app(true, true).await,
        "GET",
        "/api/v1/targets?state=bogus",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["errorType"], "bad_data");
    let (_, body) = call(app(true, true).await, "GET", "/api/v1/status/buildinfo", "").await;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["version"], env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn breaker_reads_are_cacheable_and_reports_move_it() {
    let a = app(true, true).await;
    let req = Request::builder()
        .uri("/api/v1/breakers/llm")
        .body(Body::empty())
        .unwrap();
    let resp = a.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let tag = resp.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(resp.headers()["cache-control"], "max-age=1");
    let req = Request::builder()
        .uri("/api/v1/breakers/llm")
        .header("if-none-match", &tag)
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        a.clone().oneshot(req).await.unwrap().status(),
        StatusCode::NOT_MODIFIED
    );
    let report = |body: &'static str| {
        Request::builder()
            .method("POST")
            .uri("/api/v1/breakers/llm/report")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let resp = a.clone().oneshot(report(r#"{"failure":2}"#)).await.unwrap();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains(r#""state":"open""#));
    let resp = a
        .clone()
        .oneshot(report(r#"{"outcome":"x"}"#))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let req = Request::builder()
        .uri("/api/v1/breakers/nope")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        a.oneshot(req).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn changes_without_credentials_are_refused() {
    // No admin token and no loopback peer (no socket in these tests).
    let a = app(true, true).await;
    let (status, body) = call(a.clone(), "POST", "/api/v1/pause", "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/breakers/llm/state")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"state":"open"}"#))
        .unwrap();
    assert_eq!(
        a.oneshot(req).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"abcd"));
}
