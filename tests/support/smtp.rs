//! A real SMTP server for email notification tests: Debian's
//! `python3-aiosmtpd`, run by `support/smtp_server.py` on a free port of
//! 127.0.0.1 with STARTTLS or implicit TLS, AUTH LOGIN/PLAIN for exactly one
//! user, and every accepted message written to a maildir (see the script's
//! docstring for the details).
//!
//! [`start_smtp`] returns `None` with a `SKIP:` line when python3-aiosmtpd
//! is not installed (and fails under CI, whose `.ci/run` installs it).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::{free_port, temp_dir, wait_until, ServerProcess, TempDir};

/// How the server wants TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpMode {
    /// Plain connection that must be upgraded with STARTTLS before AUTH
    /// (submission on 587).
    StartTls,
    /// TLS from the first byte (submissions on 465).
    ImplicitTls,
}

/// A running server; stops when dropped.
pub struct SmtpServer {
    pub addr: SocketAddr,
    pub mode: SmtpMode,
    /// The CA certificate (PEM) that signed the server's certificate: the
    /// `tls_config.ca_file` clients must trust. The server certificate
    /// names `localhost` and `127.0.0.1`.
    pub ca_cert_path: PathBuf,
    pub user: String,
    pub password: String,
    pub maildir: PathBuf,
    pub process: ServerProcess,
    _dir: TempDir,
}

/// One received message.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The message as received (headers and MIME body, undecoded).
    pub raw: String,
    pub mail_from: String,
    pub rcpt_tos: Vec<String>,
    /// The AUTH login that sent it.
    pub login: Option<String>,
    /// Whether the session was encrypted when the message was sent.
    pub tls: bool,
    /// The top-level MIME type, e.g. `multipart/alternative`.
    pub content_type: String,
    /// Headers in order, values decoded (RFC 2047).
    pub headers: Vec<(String, String)>,
    /// Leaf MIME parts: (content type, decoded text).
    pub parts: Vec<(String, String)>,
}

impl Mail {
    /// The first header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn subject(&self) -> &str {
        self.header("subject").unwrap_or("")
    }

    /// The decoded text of the first part of type `content_type`.
    pub fn part(&self, content_type: &str) -> Option<&str> {
        self.parts
            .iter()
            .find(|(t, _)| t.eq_ignore_ascii_case(content_type))
            .map(|(_, b)| b.as_str())
    }
}

/// The python3 that has Debian's aiosmtpd (pyenv and venv pythons on PATH
/// do not see /usr/lib/python3/dist-packages).
fn python_with_aiosmtpd() -> Option<PathBuf> {
    ["/usr/bin/python3", "python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| {
            Command::new(p)
                .args(["-c", "import aiosmtpd.controller"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Starts the server, or returns `None` (printing `SKIP:`) when
/// python3-aiosmtpd or openssl is missing outside CI.
pub async fn start_smtp(mode: SmtpMode) -> Option<SmtpServer> {
    let Some(python) = python_with_aiosmtpd() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "python3-aiosmtpd is not installed but CI=true: .ci/run must install the Debian package python3-aiosmtpd"
        );
        eprintln!(
            "SKIP: python3-aiosmtpd not installed (apt-get install python3-aiosmtpd); this SMTP test is skipped"
        );
        return None;
    };
    crate::required_program(&["openssl"], "openssl")?;
    let dir = temp_dir();
    let maildir = dir.path().join("mail");
    let certdir = dir.path().join("certs");
    std::fs::create_dir_all(&maildir).expect("maildir");
    std::fs::create_dir_all(&certdir).expect("certdir");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let user = "homeostat@e2e.test".to_string();
    let password = "s3cret pass!".to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("support/smtp_server.py");
    let port = addr.port().to_string();
    let (maildir_s, certdir_s) = (maildir.display().to_string(), certdir.display().to_string());
    let mode_s = match mode {
        SmtpMode::StartTls => "starttls",
        SmtpMode::ImplicitTls => "implicit",
    };
    let script_s = script.display().to_string();
    let mut process = ServerProcess::spawn(
        "smtp",
        &python,
        &[
            "-u",
            &script_s,
            "--port",
            &port,
            "--maildir",
            &maildir_s,
            "--certdir",
            &certdir_s,
            "--user",
            &user,
            "--password",
            &password,
            "--mode",
            mode_s,
        ],
        &[],
    )
    .expect("spawn smtp_server.py");
    let ready = wait_until(Duration::from_secs(30), || {
        let up = process.log().contains("READY");
        let dead = process
            .child
            .as_mut()
            .map(|c| !matches!(c.try_wait(), Ok(None)))
            .unwrap_or(true);
        async move { up || dead }
    })
    .await;
    assert!(
        ready && process.log().contains("READY"),
        "smtp_server.py did not start; log:\n{}",
        process.log()
    );
    process.wait_for_port(addr, Duration::from_secs(10)).await;
    Some(SmtpServer {
        addr,
        mode,
        ca_cert_path: certdir.join("ca.pem"),
        user,
        password,
        maildir,
        process,
        _dir: dir,
    })
}

impl SmtpServer {
    /// `host:port` for a smarthost setting (`localhost`, which the
    /// certificate names, rather than the IP).
    pub fn smarthost(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }

    /// Messages received so far, in arrival order.
    pub fn messages(&self) -> Vec<Mail> {
        let mut numbered: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.maildir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter_map(|p| {
                        let n = p
                            .file_name()?
                            .to_str()?
                            .strip_suffix(".json")?
                            .parse::<u64>()
                            .ok()?;
                        Some((n, p))
                    })
                    .collect()
            })
            .unwrap_or_default();
        numbered.sort();
        numbered
            .into_iter()
            .map(|(n, p)| {
                let meta: Value =
                    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_default())
                        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                let raw = std::fs::read(self.maildir.join(format!("{n}.eml"))).unwrap_or_default();
                let strs = |v: &Value| -> Vec<String> {
                    v.as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                };
                Mail {
                    raw: String::from_utf8_lossy(&raw).into_owned(),
                    mail_from: meta["mail_from"].as_str().unwrap_or("").to_string(),
                    rcpt_tos: strs(&meta["rcpt_tos"]),
                    login: meta["login"].as_str().map(str::to_string),
                    tls: meta["tls"] == true,
                    content_type: meta["content_type"].as_str().unwrap_or("").to_string(),
                    headers: meta["headers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|h| {
                            (
                                h[0].as_str().unwrap_or("").to_string(),
                                h[1].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect(),
                    parts: meta["parts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| {
                            (
                                p["content_type"].as_str().unwrap_or("").to_string(),
                                p["body"].as_str().unwrap_or("").to_string(),
                            )
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Waits until at least `n` messages arrived; returns them all.
    pub async fn wait_messages(&self, n: usize, timeout: Duration) -> Vec<Mail> {
        wait_until(timeout, || {
            let got = self.messages().len();
            async move { got >= n }
        })
        .await;
        self.messages()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends with Python's smtplib (a client independent of homeostat's):
    /// the server must refuse AUTH before STARTTLS (or at all without TLS),
    /// a wrong password and MAIL without AUTH, and must store a correct
    /// multipart/alternative message with both parts decodable.
    fn smtplib_client(s: &SmtpServer) -> String {
        let implicit = s.mode == SmtpMode::ImplicitTls;
        let code = format!(
            r#"
import smtplib, ssl, sys
from email.message import EmailMessage
ctx = ssl.create_default_context(cafile={ca:?})
out = []
def connect():
    if {implicit}:
        return smtplib.SMTP_SSL("localhost", {port}, context=ctx, timeout=10)
    s = smtplib.SMTP("localhost", {port}, timeout=10)
    return s
s = connect()
if not {implicit}:
    s.ehlo()
    out.append("auth-before-tls:" + str(s.has_extn("auth")))
    code, _ = s.mail("a@e2e.test")
    out.append("mail-before-tls:" + str(code))
    s.starttls(context=ctx)
s.ehlo()
try:
    s.login({user:?}, "wrong")
    out.append("bad-password:accepted")
except smtplib.SMTPAuthenticationError:
    out.append("bad-password:refused")
code, _ = s.mail("a@e2e.test")
out.append("mail-without-auth:" + str(code))
s.rset()
s.login({user:?}, {password:?})
m = EmailMessage()
m["Subject"] = "[FIRING:2] HighLatency (prod) — ümlaut"
m["From"] = "homeostat@e2e.test"
m["To"] = "oncall@e2e.test"
m.set_content("plain: web-1 and web-2\n" + "x" * 2000)
m.add_alternative("<html><body><p>html: <b>web-1</b> and <b>web-2</b></p></body></html>", subtype="html")
s.send_message(m)
s.quit()
print(" ".join(out))
"#,
            ca = s.ca_cert_path.display().to_string(),
            implicit = if implicit { "True" } else { "False" },
            port = s.addr.port(),
            user = s.user,
            password = s.password,
        );
        let o = Command::new(python_with_aiosmtpd().unwrap())
            .args(["-c", &code])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "smtplib client failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&o.stderr),
            s.process.log()
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    fn check_message(s: &SmtpServer) {
        let mails = s.messages();
        assert_eq!(mails.len(), 1, "server log:\n{}", s.process.log());
        let m = &mails[0];
        assert_eq!(m.subject(), "[FIRING:2] HighLatency (prod) — ümlaut");
        assert_eq!(m.mail_from, "homeostat@e2e.test");
        assert_eq!(m.rcpt_tos, vec!["oncall@e2e.test".to_string()]);
        assert_eq!(m.login.as_deref(), Some(s.user.as_str()));
        assert!(m.tls);
        assert_eq!(m.content_type, "multipart/alternative");
        assert!(m
            .part("text/plain")
            .unwrap()
            .contains("plain: web-1 and web-2"));
        assert!(m.part("text/html").unwrap().contains("<b>web-2</b>"));
        assert!(m.raw.contains("Subject:"));
    }

    #[tokio::test]
    async fn starttls_auth_and_maildir() {
        let Some(s) = start_smtp(SmtpMode::StartTls).await else {
            return;
        };
        let out = smtplib_client(&s);
        assert_eq!(
            out,
            "auth-before-tls:False mail-before-tls:530 bad-password:refused mail-without-auth:530",
            "server log:\n{}",
            s.process.log()
        );
        check_message(&s);
    }

    #[tokio::test]
    async fn implicit_tls_auth_and_maildir() {
        let Some(s) = start_smtp(SmtpMode::ImplicitTls).await else {
            return;
        };
        let out = smtplib_client(&s);
        assert_eq!(out, "bad-password:refused mail-without-auth:530");
        check_message(&s);
    }
}
