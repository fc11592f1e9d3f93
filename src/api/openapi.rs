//! `GET /api/openapi.json`: generated from the handlers' own types, so it cannot drift.

use axum::Json;
use utoipa::OpenApi;

use super::{dnc, imports, records, stats, tasks};

#[derive(OpenApi)]
#[openapi(
    info(title = "callcenter", description = "AI outbound-call callcenter API. Every answer is an envelope: \
        code 0 success, 405 bad parameters, 500 system error, 401 missing API key."),
    paths(
        records::list,
        records::call_type,
        tasks::list,
        tasks::create,
        tasks::stop,
        imports::import,
        imports::freeswitch_cdr,
        dnc::add,
        dnc::remove,
        dnc::list,
        stats::day
    ),
    components(schemas(crate::domain::Turn, crate::domain::Role)),
    modifiers(&Security)
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
    }
}

/// The document, with every alias of a route described as the route itself.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for (alias, canonical) in super::ALIASES {
        if let Some(item) = doc.paths.paths.get(*canonical).cloned() {
            doc.paths.paths.insert(alias.to_string(), item);
        }
    }
    doc
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
