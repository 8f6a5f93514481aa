//! Request signers of the services that call homeostat's webhooks, so tests
//! can send correctly (and incorrectly) signed bodies, and a verifier for
//! homeostat's own outgoing webhook signature.
//!
//! * PagerDuty Webhooks V3: header `X-PagerDuty-Signature`, a comma-separated
//!   list of `v1=<hex HMAC-SHA256(secret, raw body)>`, one per active signing
//!   secret (several while a secret is being rotated).
//! * Slack: headers `X-Slack-Request-Timestamp: <unix seconds>` and
//!   `X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:{ts}:{body}")>`.
//! * homeostat's webhook_configs `hmac_secret`: header
//!   `X-Homeostat-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Hex HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    hex::encode(mac.finalize().into_bytes())
}

/// The `X-PagerDuty-Signature` value for `body` under each of `secrets`:
/// `v1=<hex>,v1=<hex>`.
pub fn pd_signature(secrets: &[&str], body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| format!("v1={}", hmac_sha256_hex(s.as_bytes(), body)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The `X-Slack-Signature` value for `body` sent at `ts` (the value of
/// `X-Slack-Request-Timestamp`): `v0=<hex>` of `v0:{ts}:{body}`.
pub fn slack_signature(secret: &str, ts: &str, body: &[u8]) -> String {
    let mut base = format!("v0:{ts}:").into_bytes();
    base.extend_from_slice(body);
    format!("v0={}", hmac_sha256_hex(secret.as_bytes(), &base))
}

/// The `X-Homeostat-Signature` value homeostat must send with `body` for a
/// webhook receiver with `hmac_secret: secret`.
pub fn homeostat_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret.as_bytes(), body))
}

/// Whether `header` (an `X-Homeostat-Signature` value) signs `body` under
/// `secret`; compares in constant time.
pub fn verify_homeostat_signature(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_matches_rfc4231() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The worked example of Slack's "Verifying requests from Slack" guide.
    #[test]
    fn slack_signature_matches_slack_docs_example() {
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            slack_signature("8f742231b10e8888abcd99yyyzzz85a5", "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn pd_signature_lists_one_v1_per_secret() {
        let s = pd_signature(&["a", "b"], b"{}");
        let parts: Vec<&str> = s.split(',').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], format!("v1={}", hmac_sha256_hex(b"a", b"{}")));
        assert_eq!(parts[1], format!("v1={}", hmac_sha256_hex(b"b", b"{}")));
    }

    #[test]
    fn homeostat_signature_round_trips() {
        let h = homeostat_signature("s3cret", b"{\"version\":\"4\"}");
        assert!(verify_homeostat_signature(
            "s3cret",
            b"{\"version\":\"4\"}",
            &h
        ));
        assert!(!verify_homeostat_signature(
            "other",
            b"{\"version\":\"4\"}",
            &h
        ));
        assert!(!verify_homeostat_signature("s3cret", b"{}", &h));
        assert!(!verify_homeostat_signature("s3cret", b"{}", "sha1=00"));
    }
}
