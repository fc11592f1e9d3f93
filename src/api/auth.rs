//! API keys: `Authorization: Bearer <key>` or `X-API-Key: <key>` on every API and
//! recording request, when `auth.api_keys` is set. HTTP Basic with the key as password
//! is accepted too, for clients that can send nothing else (FreeSWITCH's mod_json_cdr).

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{AppState, envelope};

/// Paths that need a key; health, metrics, the OpenAPI document and the console's own
/// files stay open (they hold no data).
fn is_protected(path: &str) -> bool {
    (path.starts_with("/api/") && path != "/api/openapi.json")
        || path.starts_with("/aicall/")
        || path.starts_with("/recordings/")
}

pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let keys = &state.config.auth.api_keys;
    if keys.is_empty() || !is_protected(req.uri().path()) {
        return next.run(req).await;
    }
    match presented_key(req.headers()) {
        Some(key) if matches_any(&key, keys) => next.run(req).await,
        _ => envelope::status(
            StatusCode::UNAUTHORIZED,
            401,
            "缺少或无效的 API 密钥：请在 Authorization: Bearer 或 X-API-Key 中提供",
        ),
    }
}

fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim().to_string());
    }
    let (scheme, credentials) = headers.get("authorization")?.to_str().ok()?.trim().split_once(' ')?;
    // Scheme names are case-insensitive (RFC 7235 §2.1): `bearer` and `BASIC` are fine.
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.trim().to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let basic = base64::engine::general_purpose::STANDARD.decode(credentials.trim()).ok()?;
    let (_, password) =
        String::from_utf8(basic).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some(password)
}

/// Compares digests (equal length) in constant time, against every key, so that the
/// answer's timing tells nothing about how much of a key was right or which key.
fn matches_any(presented: &str, keys: &[String]) -> bool {
    let digest = Sha256::digest(presented.as_bytes());
    keys.iter()
        .fold(subtle::Choice::from(0), |found, key| found | Sha256::digest(key.as_bytes()).ct_eq(&digest))
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_matches_only_itself() {
        let keys = vec!["alpha-key".to_string(), "beta-key".to_string()];
        assert!(matches_any("beta-key", &keys));
        assert!(!matches_any("beta-ke", &keys));
        assert!(!matches_any("", &keys));
    }

    #[test]
    fn the_scheme_name_is_case_insensitive_and_basic_carries_the_key_as_password() {
        let presented = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("authorization", value.parse().unwrap());
            presented_key(&headers)
        };
        for bearer in ["Bearer k1", "bearer k1", "BEARER  k1 ", "  Bearer k1"] {
            assert_eq!(presented(bearer).as_deref(), Some("k1"), "{bearer}");
        }
        let basic = base64::engine::general_purpose::STANDARD.encode("cdr:k2");
        assert_eq!(presented(&format!("basic {basic}")).as_deref(), Some("k2"));
        assert_eq!(presented("Token k1"), None);
        assert_eq!(presented("Bearer"), None);
    }

    #[test]
    fn health_metrics_and_the_openapi_document_stay_open() {
        for open in ["/healthz", "/readyz", "/metrics", "/api/openapi.json", "/", "/console/app.js"] {
            assert!(!is_protected(open), "{open}");
        }
        for closed in ["/api/aicall/records/list", "/aicall/stopTasks", "/recordings/files"] {
            assert!(is_protected(closed), "{closed}");
        }
    }
}
