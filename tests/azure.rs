//! The Azure collector end to end: the real daemon against a local stand-in of
//! Azure Resource Manager and Entra ID (tests/support/arm.rs) that checks the
//! wire contract (paths, api-version, bearer token, query parameters) and
//! answers with the REST specification's JSON shapes and ARM's error codes.

use std::time::Duration;

use homeostat_e2e::arm::{metric_value, ArmMode, ArmStandIn};
use homeostat_e2e::Homeostat;

const APP: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.App/containerApps/myapp";
const PG: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/main";
const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_apps_and_monitor_metrics_through_the_arm_stand_in() {
    let arm = ArmStandIn::start().await;
    let config = format!(
        r#"
web:
  listen_address: {{listen}}
state:
  path: {{state}}
collectors:
  azure:
    scrape_interval: 1s
    scrape_timeout: 1s
    management_endpoint: {url}
    authority_host: {url}
    container_apps: [{APP}]
    metrics:
      - resource_id: {APP}
        metrics: [Requests, Replicas]
      - resource_id: {PG}
        metrics: [cpu_percent]
"#,
        url = arm.url()
    );
    // Client-secret credentials from the environment, and only those: the
    // default chain would go on to IMDS and the Azure CLI.
    let h = Homeostat::start_with_env(
        &config,
        &[
            ("AZURE_CREDENTIAL_KIND", "clientsecret"),
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", "secret-1"),
        ],
    )
    .await;
    h.wait_target("azure", "myapp", "up", T).await;
    h.wait_target("azure", "main/metrics", "up", T).await;
    for (expr, want) in [
        (r#"azure_containerapp_revision_active{app="myapp",revision="myapp--rev2"}"#.to_string(), 1.0),
        (r#"azure_containerapp_revision_active{app="myapp",revision="myapp--rev1"}"#.into(), 0.0),
        (r#"azure_containerapp_revision_traffic_weight{revision="myapp--rev2"}"#.into(), 100.0),
        (r#"azure_containerapp_revision_healthy{revision="myapp--rev2",health_state="Healthy"}"#.into(), 1.0),
        (r#"azure_containerapp_min_replicas{app="myapp"}"#.into(), 1.0),
        (r#"azure_containerapp_max_replicas{app="myapp"}"#.into(), 10.0),
        (r#"count(azure_containerapp_replica_running{revision="myapp--rev2"} == 1)"#.into(), 1.0),
        (
            r#"azure_monitor_metric{resource_name="myapp",metric="Requests",aggregation="total"}"#.into(),
            metric_value("Requests", 1),
        ),
        (
            r#"azure_monitor_metric{resource_type="microsoft.dbforpostgresql/flexibleservers",metric="cpu_percent",aggregation="average"}"#.into(),
            metric_value("cpu_percent", 1),
        ),
    ] {
        let v = h.wait_value(&expr, T).await;
        assert_eq!(v, Some(want), "{expr}\nlog:\n{}", h.process.log());
    }
    // More replicas show up on the next round.
    arm.set_replicas(3);
    assert!(
        homeostat_e2e::wait_until(T, || async {
            h.query(r#"count(azure_containerapp_replica_running{revision="myapp--rev2"})"#)
                .await
                .first()
                .map(|x| x.1 == 3.0)
                .unwrap_or(false)
        })
        .await
    );
    assert_eq!(arm.violations(), Vec::<String>::new(), "wire contract");
    assert_eq!(
        arm.token_requests(),
        1,
        "one token, cached and shared by every target"
    );

    // ARM's failures are each target's `up 0` with the reason.
    for (mode, reason) in [
        (ArmMode::Unauthorized, "401"),
        (ArmMode::NotFound, "404"),
        (ArmMode::Forbidden, "403 (AuthorizationFailed)"),
        (ArmMode::Slow(Duration::from_secs(3)), "timed out"),
    ] {
        arm.set_mode(mode);
        let ok = homeostat_e2e::wait_until(T, || async {
            h.targets("azure").await.iter().any(|t| {
                t["labels"]["instance"] == "myapp"
                    && t["lastError"].as_str().unwrap_or_default().contains(reason)
            })
        })
        .await;
        assert!(ok, "{reason}: {:?}", h.targets("azure").await);
        arm.set_mode(ArmMode::Normal);
        h.wait_target("azure", "myapp", "up", T).await;
    }

    // Throttling: Retry-After is honoured across rounds. Once told to wait,
    // homeostat sends nothing to ARM until the time has passed.
    arm.set_mode(ArmMode::Throttle {
        retry_after_secs: 30,
    });
    let tg = h.wait_target("azure", "myapp", "down", T).await;
    let err = tg["lastError"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("429") && err.contains("Retry-After"), "{err}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = arm.requests().len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        arm.requests().len(),
        before,
        "no ARM request while throttled: {:?}",
        &arm.requests()[before.saturating_sub(3)..]
    );
    let main = h.wait_target("azure", "main/metrics", "down", T).await;
    assert!(
        main["lastError"]
            .as_str()
            .unwrap_or_default()
            .contains("429"),
        "the throttle is shared by every target of the endpoint: {main}"
    );
    assert_eq!(arm.violations(), Vec::<String>::new(), "wire contract");
}

fn azure_config(management: &str, authority: &str) -> String {
    format!(
        r#"
web:
  listen_address: {{listen}}
state:
  path: {{state}}
collectors:
  azure:
    scrape_interval: 1s
    scrape_timeout: 1s
    management_endpoint: {management}
    authority_host: {authority}
    container_apps: [{APP}]
"#
    )
}

/// The credential's failures: Entra ID refusing the secret, ARM out of reach;
/// and workload identity following the token file as the kubelet rotates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_refused_arm_unreachable_and_workload_identity_rotation() {
    let arm = ArmStandIn::start().await;
    let url = arm.url();
    let env = |secret: &'static str| {
        [
            ("AZURE_CREDENTIAL_KIND", "clientsecret"),
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_CLIENT_SECRET", secret),
        ]
    };

    // A wrong client secret: Entra ID's refusal is the target's reason.
    let refused = Homeostat::start_with_env(&azure_config(&url, &url), &env("wrong")).await;
    let tg = refused.wait_target("azure", "myapp", "down", T).await;
    let err = tg["lastError"].as_str().unwrap_or_default().to_string();
    assert!(
        err.contains("cannot get a token")
            && err.contains("401 invalid_client: AADSTS7000215: Invalid client secret"),
        "{err}"
    );
    assert!(
        !arm.requests().iter().any(|r| r.contains("containerApps")),
        "no ARM call without a token: {:?}",
        arm.requests()
    );
    drop(refused);

    // ARM out of reach (nothing listens on its port).
    let closed = format!("http://127.0.0.1:{}", homeostat_e2e::free_port());
    let down = Homeostat::start_with_env(&azure_config(&closed, &url), &env("secret-1")).await;
    let tg = down.wait_target("azure", "myapp", "down", T).await;
    let err = tg["lastError"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("cannot reach ARM"), "{err}");
    drop(down);

    // Workload identity as AKS injects it: tenant, client and a token file,
    // through the default chain (no AZURE_CREDENTIAL_KIND).
    let dir = homeostat_e2e::temp_dir();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "federated-assertion-1").expect("token file");
    arm.set_token_lifetime(22);
    let before = arm.token_requests();
    let file_env = file.display().to_string();
    let h = Homeostat::start_with_env(
        &azure_config(&url, &url),
        &[
            ("AZURE_TENANT_ID", "tenant-1"),
            ("AZURE_CLIENT_ID", "client-1"),
            ("AZURE_FEDERATED_TOKEN_FILE", &file_env),
        ],
    )
    .await;
    h.wait_target("azure", "myapp", "up", T).await;
    assert_eq!(
        arm.last_assertion().as_deref(),
        Some("federated-assertion-1")
    );
    // The kubelet rotates the file; Entra ID no longer takes the old
    // assertion. The next token (2 s from now: 22 s tokens are refreshed
    // 20 s early) must be fetched with the new one.
    std::fs::write(&file, "federated-assertion-2").expect("token file");
    arm.set_federated_assertion("federated-assertion-2");
    let rotated = homeostat_e2e::wait_until(T, || async {
        arm.last_assertion().as_deref() == Some("federated-assertion-2")
    })
    .await;
    assert!(rotated, "the rotated file was never used");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let tg = h.wait_target("azure", "myapp", "up", T).await;
    assert!(
        tg["lastError"].as_str().unwrap_or_default().is_empty(),
        "{tg}"
    );
    assert!(arm.token_requests() > before + 1, "tokens were refreshed");
    assert_eq!(arm.violations(), Vec::<String>::new(), "wire contract");
}
