//! The web console: a page, a script and a style sheet under `src/console/`, embedded at
//! build time and served from the binary, so it works on a closed network. It is a plain
//! client of the public API; its files hold no data, so they need no key
//! (`auth::is_protected`).

use std::sync::LazyLock;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use sha2::{Digest, Sha256};

struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: LazyLock<String>,
    /// The page itself, which gets the Content-Security-Policy.
    page: bool,
}

macro_rules! asset {
    ($file:literal, $content_type:literal, $page:literal) => {
        Asset {
            body: include_str!(concat!("../console/", $file)),
            content_type: $content_type,
            etag: LazyLock::new(|| etag(include_str!(concat!("../console/", $file)))),
            page: $page,
        }
    };
}

static INDEX: Asset = asset!("index.html", "text/html; charset=utf-8", true);
static SCRIPT: Asset = asset!("app.js", "text/javascript; charset=utf-8", false);
static STYLE: Asset = asset!("app.css", "text/css; charset=utf-8", false);

/// Short, so that the console of an upgraded binary is picked up within a minute; the
/// ETag makes the check after that cheap (304).
const CACHE_CONTROL: &str = "public, max-age=60";

/// The page loads only its own script and style; it talks to the API (and fetches
/// recordings, whose `wavFileUrl` may be absolute) with fetch and plays them from Blob URLs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' blob: http: https:; connect-src 'self' http: https:; \
     object-src 'none'; base-uri 'none'; form-action 'none'";

fn etag(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

#[utoipa::path(get, path = "/", tag = "console", operation_id = "consoleIndex",
    responses(
        (status = 200, description = "The console's page (no key needed)", content_type = "text/html", body = String,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
    ))]
pub async fn index(headers: HeaderMap) -> Response {
    serve(&INDEX, &headers)
}

#[utoipa::path(get, path = "/console/app.js", tag = "console", operation_id = "consoleScript",
    responses(
        (status = 200, description = "The console's script (no key needed)", content_type = "text/javascript", body = String,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
    ))]
pub async fn script(headers: HeaderMap) -> Response {
    serve(&SCRIPT, &headers)
}

#[utoipa::path(get, path = "/console/app.css", tag = "console", operation_id = "consoleStyle",
    responses(
        (status = 200, description = "The console's style sheet (no key needed)", content_type = "text/css", body = String,
            headers(("ETag" = String), ("Cache-Control" = String))),
        (status = 304, description = "Unchanged since the ETag sent in If-None-Match"),
    ))]
pub async fn style(headers: HeaderMap) -> Response {
    serve(&STYLE, &headers)
}

fn serve(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = asset.etag.as_str();
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').map(|tag| tag.trim().trim_start_matches("W/")).any(|tag| tag == etag || tag == "*")
    });
    let mut res = Response::builder()
        .header(header::CACHE_CONTROL, CACHE_CONTROL)
        .header(header::ETAG, HeaderValue::from_str(etag).expect("a hex etag is a header value"))
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if asset.page {
        res = res
            .header(header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY)
            .header(header::REFERRER_POLICY, "no-referrer");
    }
    let res = if fresh {
        res.status(StatusCode::NOT_MODIFIED).body(Body::empty())
    } else {
        res.header(header::CONTENT_TYPE, asset.content_type).body(Body::from(asset.body))
    };
    res.expect("static headers are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_script_and_the_style_it_is_served_with() {
        assert!(INDEX.body.contains(r#"src="/console/app.js""#));
        assert!(INDEX.body.contains(r#"href="/console/app.css""#));
        assert_ne!(*INDEX.etag, *SCRIPT.etag);
        assert_eq!(INDEX.etag.len(), 18);
    }
}
