//! The web console: its three files are served with their content types and no key, and
//! the page works in a real browser (headless Chromium driven by Playwright, the tests in
//! `console-tests/`) against the real server binary with the sim carrier: with and without
//! API keys.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{BinaryServer, TestServer};
use reqwest::StatusCode;

#[tokio::test]
async fn the_page_its_script_and_its_style_are_served_with_their_content_types_and_no_key() {
    let s = TestServer::start_with(|c| {
        c.dialer.enabled = false;
        c.auth.api_keys = vec!["console-key".into()];
    })
    .await;
    for (path, content_type, holds) in [
        ("/", "text/html; charset=utf-8", r#"<script type="module" src="/console/app.js">"#),
        ("/console/app.js", "text/javascript; charset=utf-8", "/api/aicall/calltask/list"),
        ("/console/app.css", "text/css; charset=utf-8", "@media"),
    ] {
        let res = s.get(path).await;
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        assert_eq!(res.headers()["content-type"], content_type, "{path}");
        assert_eq!(res.headers()["cache-control"], "public, max-age=60", "{path}");
        assert_eq!(res.headers()["x-content-type-options"], "nosniff", "{path}");
        let etag = res.headers()["etag"].clone();
        assert!(res.text().await.unwrap().contains(holds), "{path} holds {holds}");
        // A browser revalidating after a minute gets a 304.
        let again = s.client.get(s.url(path)).header("If-None-Match", etag).send().await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let page = s.get("/").await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    // The API behind the page still wants the key.
    let res = s.client.post(s.url("/api/aicall/stats")).body("{}").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
}

const API_KEY: &str = "console-test-key";

/// What the browser test needs, or what is missing.
fn browser_tools(tests_dir: &Path) -> Result<(), String> {
    let node = Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !node.is_ok_and(|s| s.success()) {
        return Err("node is not installed".into());
    }
    if !tests_dir.join("node_modules/playwright-core").is_dir() {
        return Err("playwright-core is not installed: run `npm ci --prefix console-tests`".into());
    }
    let chromium =
        std::env::var_os("CHROMIUM_PATH").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !chromium.exists() {
        return Err(format!("no Chromium at {} (apt-get install chromium)", chromium.display()));
    }
    Ok(())
}

/// It runs the binary on SQLite files of its own, so scripts/test runs it in its first
/// pass only.
mod own_database {
    use super::*;

    /// `node --test` in `console-tests/`: tasks created from the page (pasted JSON and a CSV),
    /// watched until they end, one stopped, the filters and paging of both lists, a call opened
    /// with its transcript and its recording played and seeked, the overview's numbers and
    /// chart, English, a phone screen; then with an API key. Screenshots go to
    /// `console-tests/screenshots/`.
    ///
    /// Needs node, Chromium (`CHROMIUM_PATH`, default /usr/bin/chromium) and the npm packages
    /// (`npm ci --prefix console-tests`), which scripts/setup installs: without them it fails
    /// rather than proving nothing. It runs on SQLite only (the page sees nothing of the
    /// store), so the PostgreSQL pass of scripts/test skips it.
    #[tokio::test]
    async fn the_console_drives_the_api_in_a_real_browser() {
        let tests_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("console-tests");
        if let Err(missing) = browser_tools(&tests_dir) {
            panic!("the browser test cannot run: {missing} (scripts/setup installs what it needs)");
        }
        // The sim carrier twenty times faster than life, every ordinary number answering.
        let sim = [("SIM__TIME_SCALE", "0.05".to_string()), ("SIM__ANSWER_RATE", "1".to_string())];
        let open = BinaryServer::start(&sim).await;
        let keyed = BinaryServer::start(&[
            sim[0].clone(),
            sim[1].clone(),
            ("AUTH__API_KEYS", format!("[\"{API_KEY}\"]")),
        ])
        .await;

        let run = tokio::process::Command::new("node")
            .arg("--test")
            .current_dir(&tests_dir)
            .env("CONSOLE_BASE_URL", &open.base)
            .env("CONSOLE_KEYED_BASE_URL", &keyed.base)
            .env("CONSOLE_API_KEY", API_KEY)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(300), run)
            .await
            .expect("the browser tests end within 5 minutes")
            .expect("node starts");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "node --test failed ({}):\n{stdout}\n{stderr}\n--- server log ---\n{}\n--- server with keys, log ---\n{}",
            out.status,
            open.log(),
            keyed.log()
        );
        println!("{stdout}");
    }
}
