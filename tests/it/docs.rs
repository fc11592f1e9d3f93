//! Every relative link in README.md and docs/*.md resolves: the file (or directory) it
//! names exists and, when the link has a `#fragment`, a heading of the target document
//! makes that anchor, as GitHub makes anchors from headings.
//!
//! The links are found by a small scanner, not a Markdown parser: the project has no
//! Markdown crate among its dependencies, and the documents use only a few constructs
//! that matter here (inline links, reference definitions, fenced code blocks, inline code
//! spans, ATX headings), which the scanner handles. Links inside code are not links, and
//! links with a scheme (`https:`, `mailto:` …) point outside the repository and are left
//! alone.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The documents checked: README.md and every `.md` directly under docs/.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("README.md")];
    if let Ok(entries) = fs::read_dir(root.join("docs")) {
        for entry in entries {
            let path = entry.expect("docs/ is readable").path();
            if path.extension().is_some_and(|e| e == "md") {
                docs.push(path);
            }
        }
    }
    docs.sort();
    docs
}

/// The text with every fenced code block blanked out (its lines kept, empty), so that
/// neither links nor headings are found in code.
fn without_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The fence's character and length while inside a block.
    let mut open: Option<(char, usize)> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let fence = ['`', '~'].into_iter().find_map(|c| {
            let n = trimmed.chars().take_while(|&x| x == c).count();
            (n >= 3).then_some((c, n))
        });
        match (open, fence) {
            (None, Some(f)) => {
                open = Some(f);
            }
            (Some((c, n)), Some((fc, fn_))) if fc == c && fn_ >= n && trimmed.trim_end().len() == fn_ => {
                open = None;
            }
            (None, None) => out.push_str(line),
            (Some(_), _) => {}
        }
        out.push('\n');
    }
    out
}

/// The text with every inline code span blanked out. A span opens with a run of
/// backticks and closes at the next run of the same length; a run with no partner is
/// literal text.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                // Keep line breaks so that nothing after the span moves to another line.
                out.extend(chars[i..j + n].iter().map(|&c| if c == '\n' { '\n' } else { ' ' }));
                i = j + n;
            }
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// The targets of the inline links (`[text](target)`, images too) and reference
/// definitions (`[label]: target`) of prose, that is text without code.
fn link_targets(prose: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let chars: Vec<char> = prose.chars().collect();
    let mut i = 0;
    while i + 1 < chars.len() {
        if chars[i] == ']' && chars[i + 1] == '(' {
            // The destination runs to the parenthesis that closes this one.
            let mut depth = 0;
            let mut j = i + 1;
            while j < chars.len() {
                match chars[j] {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let inside: String = chars[i + 2..j.min(chars.len())].iter().collect();
            targets.push(destination(&inside));
            i = j;
        } else {
            i += 1;
        }
    }
    for line in prose.lines() {
        let t = line.trim_start();
        if line.len() - t.len() <= 3
            && t.starts_with('[')
            && let Some(end) = t.find("]:")
        {
            targets.push(destination(&t[end + 2..]));
        }
    }
    targets
}

/// A link's destination without its title: `<dest>` or the first word.
fn destination(inside: &str) -> String {
    let inside = inside.trim();
    match inside.strip_prefix('<') {
        Some(rest) => rest.split('>').next().unwrap_or("").to_string(),
        None => inside.split_whitespace().next().unwrap_or("").to_string(),
    }
}

/// Whether a destination names a scheme (`https:`, `mailto:` …): it points outside the
/// repository.
fn has_scheme(target: &str) -> bool {
    match target.find(':') {
        Some(colon) => {
            let scheme = &target[..colon];
            !scheme.is_empty()
                && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !target[..colon].contains('/')
        }
        None => false,
    }
}

/// GitHub's anchor for a heading: lower case; letters (any script, so Chinese stays),
/// digits, `-` and `_` kept, every space made a `-`, everything else dropped.
fn slug(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// A heading's text as it is shown: links reduced to their text, code marks gone.
fn shown(heading: &str) -> String {
    let mut out = String::new();
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        match rest[open..].find("](").and_then(|m| rest[open + m..].find(')').map(|c| (m, open + m + c))) {
            Some((m, close)) => {
                out.push_str(&rest[..open]);
                out.push_str(&rest[open + 1..open + m]);
                rest = &rest[close + 1..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out.replace('`', "")
}

/// The anchors the ATX headings of a document make; a repeated heading gets `-1`, `-2` …
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for line in without_fences(text).lines() {
        let t = line.trim_start();
        if line.len() - t.len() > 3 {
            continue;
        }
        let level = t.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&level) {
            continue;
        }
        let rest = &t[level..];
        if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
            continue;
        }
        // A closing run of `#`s is not part of the heading.
        let rest = rest.trim();
        let rest = match rest.trim_end_matches('#') {
            r if r.is_empty() || r.ends_with(' ') => r.trim_end(),
            _ => rest,
        };
        let base = slug(&shown(rest));
        let n = seen.entry(base.clone()).or_insert(0);
        out.push(if *n == 0 { base.clone() } else { format!("{base}-{n}") });
        *n += 1;
    }
    out
}

/// What is wrong with the relative links of one document, one line per broken link.
fn broken_links(doc: &Path, root: &Path) -> Vec<String> {
    let text = fs::read_to_string(doc).unwrap_or_else(|e| panic!("{}: {e}", doc.display()));
    let name = doc.strip_prefix(root).unwrap_or(doc).display().to_string();
    let prose = without_code_spans(&without_fences(&text));
    let mut broken = Vec::new();
    for target in link_targets(&prose) {
        if target.is_empty() {
            broken.push(format!("{name}: a link with no destination"));
            continue;
        }
        if has_scheme(&target) {
            continue;
        }
        let (path, fragment) = match target.split_once('#') {
            Some((p, f)) => (p, Some(f)),
            None => (target.as_str(), None),
        };
        let file = if path.is_empty() { doc.to_path_buf() } else { doc.parent().unwrap().join(path) };
        if !file.exists() {
            broken.push(format!("{name}: {target}: no such file"));
            continue;
        }
        let Some(fragment) = fragment else { continue };
        if file.extension().is_none_or(|e| e != "md") {
            broken.push(format!("{name}: {target}: a #fragment in a file that has no headings"));
            continue;
        }
        let target_text = fs::read_to_string(&file).unwrap_or_default();
        if !anchors(&target_text).iter().any(|a| a == fragment) {
            broken.push(format!("{name}: {target}: no heading makes the anchor #{fragment}"));
        }
    }
    broken
}

fn broken_links_under(root: &Path) -> Vec<String> {
    documents(root).iter().flat_map(|doc| broken_links(doc, root)).collect()
}

#[test]
fn every_relative_link_in_the_readme_and_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = documents(root);
    assert!(docs.len() > 1, "docs/ holds the documentation by reader");
    let broken = broken_links_under(root);
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(slug(&shown("Faults, and what the tests prove")), "faults-and-what-the-tests-prove");
    assert_eq!(slug(&shown("The `[sip]` settings")), "the-sip-settings");
    assert_eq!(slug(&shown("calltask/list")), "calltasklist");
    assert_eq!(slug(&shown("Do-not-call list and the daily cap")), "do-not-call-list-and-the-daily-cap");
    assert_eq!(
        slug(&shown("Ending the call: tools and control tokens")),
        "ending-the-call-tools-and-control-tokens"
    );
    assert_eq!(slug(&shown("呼叫中 and 已完成")), "呼叫中-and-已完成");
    assert_eq!(slug(&shown("See [the API](api.md) now")), "see-the-api-now");
    let text = "# Title\n## Recordings\n```\n# not a heading\n```\n### Recordings ##\n";
    assert_eq!(anchors(text), ["title", "recordings", "recordings-1"]);
}

#[test]
fn links_in_code_and_with_a_scheme_are_not_checked() {
    let text = "[a](a.md) `[b](b.md)` and ``[c](c.md)``\n\n```sh\n[d](d.md)\n```\n\
                [e](https://example.com/x) [f](mailto:x@example.com) [g](<g.md> \"title\")\n\
                [h]: h.md#top\n";
    let prose = without_code_spans(&without_fences(text));
    let targets: Vec<_> = link_targets(&prose).into_iter().filter(|t| !has_scheme(t)).collect();
    assert_eq!(targets, ["a.md", "g.md", "h.md#top"]);
}

#[test]
fn a_missing_file_or_anchor_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir(root.join("docs")).unwrap();
    fs::write(
        root.join("README.md"),
        "# Front\n\n[ok](docs/a.md#the-part) [gone](docs/gone.md) [no anchor](docs/a.md#no-such-part)\n\
         [here](#front) [not here](#back) [code](docs/a.md) `[ignored](docs/ignored.md)`\n",
    )
    .unwrap();
    fs::write(
        root.join("docs/a.md"),
        "# A\n\n## The part\n\n[up](../README.md#front) [up](../README.md#nope)\n",
    )
    .unwrap();
    let broken = broken_links_under(root);
    assert_eq!(
        broken,
        [
            "README.md: docs/gone.md: no such file",
            "README.md: docs/a.md#no-such-part: no heading makes the anchor #no-such-part",
            "README.md: #back: no heading makes the anchor #back",
            &format!(
                "{}: ../README.md#nope: no heading makes the anchor #nope",
                Path::new("docs").join("a.md").display()
            ),
        ]
    );
}
