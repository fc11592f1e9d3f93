//! `GET /api/openapi.json`: generated from the handlers' own types, so it cannot drift.
//! Each handler's annotation says what it answers itself; the answers of the layers every
//! route stands behind (the API key, the body limit, the load shedder and the timeout)
//! are added here, once, to every operation they apply to.

use axum::Json;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::OneOfBuilder;
use utoipa::openapi::{Content, Ref, RefOr};
use utoipa::{OpenApi, ToSchema};

use super::envelope::ErrorEnvelope;
use super::{campaigns, console, dnc, health, imports, manual, recordings, records, stats, tasks};

#[derive(OpenApi)]
#[openapi(
    info(title = "callcenter", description = "AI outbound-call callcenter API. Every JSON answer is an envelope \
        `{code, msg, data}` (lists: `{code, msg, total, rows}`); clients read `code`: 0 success, 405 bad \
        parameters, 500 system error (both with HTTP 200), 401 missing or invalid API key (HTTP 401, only when \
        keys are configured), 413 body too large (HTTP 413), 408 body not received in time (HTTP 408). When the server is overloaded or a request takes \
        too long the answer is HTTP 503 with code 500. An unknown path answers HTTP 404 with code 404, and a \
        known path asked with the wrong method HTTP 405 with code 405. Every route is described under each of \
        its names; an alias is the same operation."),
    paths(
        records::list,
        records::call_type,
        tasks::list,
        tasks::create,
        tasks::stop,
        campaigns::save,
        campaigns::list,
        campaigns::pause,
        campaigns::resume,
        campaigns::stop,
        manual::call,
        imports::import,
        imports::freeswitch_cdr,
        dnc::add,
        dnc::remove,
        dnc::list,
        stats::day,
        recordings::file,
        serve,
        health::healthz,
        health::readyz,
        health::metrics,
        console::index,
        console::script,
        console::style
    ),
    components(schemas(crate::domain::Turn, crate::domain::Role, ErrorEnvelope)),
    modifiers(&Security, &LayerAnswers)
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        // For clients that can send nothing else (FreeSWITCH's mod_json_cdr): any user name,
        // the key as the password.
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("Any user name; the API key as the password."))
                    .build(),
            ),
        );
    }
}

/// The answers of the layers around every route, added to each operation they apply to:
/// 401 where a key is asked for, 413 and 408 where there is a body to read, 503 and 500
/// everywhere.
struct LayerAnswers;

/// Whether a layer's answer applies to an operation.
type Applies = fn(&Operation) -> bool;

impl utoipa::Modify for LayerAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let error = || RefOr::Ref(Ref::from_schema_name(ErrorEnvelope::name()));
        let answer = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", Content::new(Some(error())))
        };
        let shared: [(&str, &str, Response, Applies); 5] = [
            (
                "401",
                "Unauthorized",
                answer("Code 401: no API key, or a wrong one (only when `auth.api_keys` is set)").build(),
                |op| op.security.as_ref().is_some_and(|s| !s.is_empty()),
            ),
            (
                "413",
                "TooLarge",
                answer("Code 413: the body is larger than `api.max_body_bytes`").build(),
                |op| op.request_body.is_some(),
            ),
            (
                "408",
                "BodyTimeout",
                answer("Code 408: the body did not arrive within `api.body_read_timeout_secs`").build(),
                |op| op.request_body.is_some(),
            ),
            (
                "503",
                "Unavailable",
                answer(
                    "Code 500: too many requests at once (`api.max_concurrent_requests`), or the request \
                    took longer than `api.request_timeout_secs`; try again later",
                )
                .build(),
                |_| true,
            ),
            (
                "500",
                "Failed",
                answer("Code 500: a failure around the handler; the detail is in the server's log").build(),
                |_| true,
            ),
        ];
        let components = doc.components.get_or_insert_with(Default::default);
        for (_, name, response, _) in &shared {
            components.responses.insert(name.to_string(), RefOr::T(response.clone()));
        }
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                for (status, name, _, applies) in &shared {
                    if !applies(op) {
                        continue;
                    }
                    let shared_ref = RefOr::Ref(Ref::new(format!("#/components/responses/{name}")));
                    match op.responses.responses.get_mut(*status) {
                        // The handler answers this status itself (readyz's 503): either shape.
                        Some(RefOr::T(own)) => match own.content.get_mut("application/json") {
                            Some(json) => {
                                let mine = json.schema.take().expect("a JSON answer has a schema");
                                json.schema = Some(OneOfBuilder::new().item(mine).item(error()).into());
                            }
                            None => {
                                own.content.insert("application/json".into(), Content::new(Some(error())));
                            }
                        },
                        Some(RefOr::Ref(_)) => {}
                        None => {
                            op.responses.responses.insert(status.to_string(), shared_ref);
                        }
                    }
                }
            }
        }
    }
}

/// The document, with every alias of a route described as the route itself, under an
/// operationId of its own (they must be unique in a document).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (alias, canonical) in super::ALIASES {
        let Some(mut item) = doc.paths.paths.get(*canonical).cloned() else { continue };
        for (method, op) in [("GET", &mut item.get), ("POST", &mut item.post)] {
            if let Some(op) = op {
                op.operation_id = Some(camel_case(alias));
                let note = format!("Another name of `{method} {canonical}`, as the spec's clients use it.");
                op.description = Some(match op.description.take() {
                    Some(d) => format!("{note}\n\n{d}"),
                    None => note,
                });
            }
        }
        doc.paths.paths.insert(alias.to_string(), item);
    }
    doc
}

/// `/aicall/api/records/list` → `aicallApiRecordsList`.
fn camel_case(path: &str) -> String {
    let mut out = String::new();
    for word in path.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()) {
        let mut chars = word.chars();
        if let Some(first) = chars.next() {
            match out.is_empty() {
                true => out.push(first.to_ascii_lowercase()),
                false => out.push(first.to_ascii_uppercase()),
            }
            out.extend(chars);
        }
    }
    out
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", operation_id = "openapiDocument",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API (no key needed)",
        content_type = "application/json", body = Object)))]
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_operation_ids_are_the_path_in_camel_case() {
        assert_eq!(camel_case("/aicall/api/records/list"), "aicallApiRecordsList");
        assert_eq!(camel_case("/aicall/stopTasks"), "aicallStopTasks");
    }
}
