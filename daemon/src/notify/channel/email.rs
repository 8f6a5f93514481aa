//! Email over SMTP with lettre: STARTTLS (required by default, as
//! Alertmanager), implicit TLS (port 465 or `tls: implicit`), or plain for
//! a local relay; optional AUTH; one message per group with a plain-text
//! and an HTML body listing every alert.

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use super::{alert_summary, label_text, value_text, Notification, Notifier, SendError};
use crate::config::{Secret, Validator};
use crate::notify::alertmanager::rfc3339_ms;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, comma-separated as in Alertmanager.
    pub to: String,
    /// Default `notify.global.smtp_from`.
    #[serde(default)]
    pub from: Option<String>,
    /// `host:port`; default `notify.global.smtp_smarthost`.
    #[serde(default)]
    pub smarthost: Option<String>,
    #[serde(default)]
    pub hello: Option<String>,
    #[serde(default)]
    pub auth_username: Option<String>,
    #[serde(default)]
    pub auth_password: Option<Secret>,
    /// STARTTLS required; default `notify.global.smtp_require_tls` (true).
    #[serde(default)]
    pub require_tls: Option<bool>,
    /// `starttls`, `implicit` or `none`; default implicit on port 465,
    /// else STARTTLS (required or opportunistic per `require_tls`).
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub tls_config: TlsConfig,
    #[serde(default)]
    pub send_resolved: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of a CA to trust besides the public roots.
    pub ca_file: Option<String>,
    pub insecure_skip_verify: bool,
    /// Name to verify; default the smarthost's host.
    pub server_name: Option<String>,
}

/// `notify.global` SMTP defaults.
#[derive(Debug, Clone, Default)]
pub struct SmtpDefaults {
    pub from: Option<String>,
    pub smarthost: Option<String>,
    pub hello: Option<String>,
    pub auth_username: Option<String>,
    pub auth_password: Option<Secret>,
    pub require_tls: bool,
}

impl EmailConfig {
    pub fn validate(&self, path: &str, g: &SmtpDefaults, v: &mut Validator) {
        for (i, to) in self.to.split(',').enumerate() {
            if to.trim().parse::<Mailbox>().is_err() {
                v.error(
                    format!("{path}.to"),
                    format!("address {} ({to:?}) is not an email address", i + 1),
                );
            }
        }
        match self.from.as_ref().or(g.from.as_ref()) {
            None => v.error(
                format!("{path}.from"),
                "is required (or notify.global.smtp_from)",
            ),
            Some(f) if f.parse::<Mailbox>().is_err() => v.error(
                format!("{path}.from"),
                format!("{f:?} is not an email address"),
            ),
            _ => {}
        }
        match self.smarthost.as_ref().or(g.smarthost.as_ref()) {
            None => v.error(
                format!("{path}.smarthost"),
                "is required (or notify.global.smtp_smarthost)",
            ),
            Some(h) if split_host(h).is_none() => v.error(
                format!("{path}.smarthost"),
                format!("{h:?} is not host:port"),
            ),
            _ => {}
        }
        if let Some(t) = &self.tls {
            if !["starttls", "implicit", "none"].contains(&t.as_str()) {
                v.error(
                    format!("{path}.tls"),
                    format!("{t:?} is not starttls, implicit or none"),
                );
            }
        }
        if let Some(ca) = &self.tls_config.ca_file {
            if std::fs::metadata(ca).is_err() {
                v.error(
                    format!("{path}.tls_config.ca_file"),
                    format!("cannot read {ca:?}"),
                );
            }
        }
    }
}

fn split_host(h: &str) -> Option<(String, u16)> {
    let (host, port) = h.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

pub struct Email {
    pub cfg: EmailConfig,
    pub defaults: SmtpDefaults,
    pub timeout: Duration,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Plain-text and HTML bodies for a notification.
pub fn bodies(n: &Notification) -> (String, String) {
    let mut text = format!("{}\n\n", n.title());
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\"><h2>{}</h2>",
        esc(&n.title())
    );
    if let Some(run) = &n.run {
        let line = format!(
            "Playbook {} on {}: {} ({}), run {}",
            run.playbook,
            run.target,
            run.event.replace('_', " "),
            run.summary,
            run.run_id
        );
        text.push_str(&line);
        text.push('\n');
        html.push_str(&format!("<p>{}</p>", esc(&line)));
    }
    for (title, status) in [("Firing", "firing"), ("Resolved", "resolved")] {
        let alerts: Vec<_> = n.alerts.iter().filter(|a| a.status == status).collect();
        if alerts.is_empty() {
            continue;
        }
        text.push_str(&format!("{title} ({}):\n", alerts.len()));
        html.push_str(&format!("<h3>{title} ({})</h3><ul>", alerts.len()));
        for a in alerts {
            let name = a.labels.get("alertname").map_or("", String::as_str);
            let mut line = format!(
                "- {name}: {}\n  labels: {}\n  since {}",
                alert_summary(a),
                label_text(&a.labels),
                rfc3339_ms(a.starts_at_ms)
            );
            let mut li = format!(
                "<li><b>{}</b>: {}<br><code>{}</code><br>since {}",
                esc(name),
                esc(&alert_summary(a)),
                esc(&label_text(&a.labels)),
                rfc3339_ms(a.starts_at_ms)
            );
            if let Some(v) = a.value {
                line.push_str(&format!(", value {}", value_text(v)));
                li.push_str(&format!(", value {}", value_text(v)));
            }
            if let Some(r) = a.annotations.get("runbook_url") {
                line.push_str(&format!("\n  runbook: {r}"));
                li.push_str(&format!("<br><a href=\"{}\">Runbook</a>", esc(r)));
            }
            if !a.generator_url.is_empty() {
                line.push_str(&format!("\n  source: {}", a.generator_url));
                li.push_str(&format!(
                    " <a href=\"{}\">Source</a>",
                    esc(&a.generator_url)
                ));
            }
            text.push_str(&line);
            text.push('\n');
            li.push_str("</li>");
            html.push_str(&li);
        }
        text.push('\n');
        html.push_str("</ul>");
    }
    text.push_str(&format!(
        "Sent by homeostat ({}), receiver {}.\n",
        n.external_url, n.receiver
    ));
    html.push_str(&format!(
        "<p style=\"color:#666\">Sent by <a href=\"{0}\">homeostat</a>, receiver {1}.</p></body></html>",
        esc(&n.external_url),
        esc(&n.receiver)
    ));
    (text, html)
}

impl Email {
    fn transport(&self) -> Result<AsyncSmtpTransport<Tokio1Executor>, SendError> {
        let d = &self.defaults;
        let smarthost = self
            .cfg
            .smarthost
            .as_ref()
            .or(d.smarthost.as_ref())
            .ok_or_else(|| SendError::Fatal("no smarthost".into()))?;
        let (host, port) = split_host(smarthost)
            .ok_or_else(|| SendError::Fatal(format!("bad smarthost {smarthost:?}")))?;
        let name = self
            .cfg
            .tls_config
            .server_name
            .clone()
            .unwrap_or_else(|| host.clone());
        let mut params = TlsParameters::builder(name)
            .dangerous_accept_invalid_certs(self.cfg.tls_config.insecure_skip_verify);
        if let Some(ca) = &self.cfg.tls_config.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| SendError::Fatal(format!("cannot read ca_file {ca:?}: {e}")))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| SendError::Fatal(format!("bad ca_file {ca:?}: {e}")))?;
            params = params.add_root_certificate(cert);
        }
        let params = params
            .build_rustls()
            .map_err(|e| SendError::Fatal(format!("TLS setup: {e}")))?;
        let require = self.cfg.require_tls.unwrap_or(d.require_tls);
        let tls = match self.cfg.tls.as_deref() {
            Some("implicit") => Tls::Wrapper(params),
            Some("none") => Tls::None,
            Some(_) => Tls::Required(params),
            None if port == 465 => Tls::Wrapper(params),
            None if require => Tls::Required(params),
            None => Tls::Opportunistic(params),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(self.timeout));
        if let Some(h) = self.cfg.hello.as_ref().or(d.hello.as_ref()) {
            b = b.hello_name(lettre::transport::smtp::extension::ClientId::Domain(
                h.clone(),
            ));
        }
        let user = self.cfg.auth_username.as_ref().or(d.auth_username.as_ref());
        let pass = self.cfg.auth_password.as_ref().or(d.auth_password.as_ref());
        if let (Some(u), Some(p)) = (user, pass) {
            b = b.credentials(Credentials::new(u.clone(), p.expose().to_string()));
        }
        Ok(b.build())
    }

    pub fn message(&self, n: &Notification) -> Result<Message, SendError> {
        let from = self
            .cfg
            .from
            .as_ref()
            .or(self.defaults.from.as_ref())
            .ok_or_else(|| SendError::Fatal("no from address".into()))?;
        let domain = from
            .rsplit_once('@')
            .map_or("homeostat.invalid", |(_, d)| d.trim_end_matches('>'));
        let mut m = Message::builder()
            .date_now()
            .message_id(Some(format!(
                "<{}.{}@{domain}>",
                crate::collect::now_ms(),
                fastrand::u64(..)
            )))
            .from(
                from.parse()
                    .map_err(|e| SendError::Fatal(format!("from {from:?}: {e}")))?,
            )
            .subject(n.title());
        for to in self.cfg.to.split(',') {
            m = m.to(to
                .trim()
                .parse()
                .map_err(|e| SendError::Fatal(format!("to {to:?}: {e}")))?);
        }
        let (text, html) = bodies(n);
        m.multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| SendError::Fatal(e.to_string()))
    }
}

#[async_trait::async_trait]
impl Notifier for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    fn send_resolved(&self) -> bool {
        self.cfg.send_resolved
    }

    async fn notify(&self, n: &Notification) -> Result<(), SendError> {
        let msg = self.message(n)?;
        let t = self.transport()?;
        match t.send(msg).await {
            Ok(_) => Ok(()),
            // 5xx SMTP replies are permanent; the rest (4xx, I/O) may pass later.
            Err(e) if e.is_permanent() => Err(SendError::Fatal(format!("SMTP: {e}"))),
            Err(e) => Err(SendError::retry(format!("SMTP: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::alert;
    use super::*;

    #[test]
    fn one_message_lists_every_alert_in_both_bodies() {
        let n = Notification::new(
            "mail",
            "k",
            [("alertname".to_string(), "Disk".to_string())].into(),
            vec![
                alert("firing", &[("alertname", "Disk"), ("host", "a")]),
                alert("firing", &[("alertname", "Disk"), ("host", "b<")]),
            ],
            "http://h",
        );
        let (text, html) = bodies(&n);
        assert!(text.contains("host=a") && text.contains("host=b<"));
        assert!(html.contains("host=a") && html.contains("host=b&lt;"));
        assert!(text.starts_with("[FIRING:2] Disk"));
    }
}
