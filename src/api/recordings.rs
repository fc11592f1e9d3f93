//! `GET /recordings/files?filename=…`: a recording under `recordings.dir`, with Range.

use std::path::{Component, Path};

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::AppState;
use super::envelope::ErrorEnvelope;
use super::envelope::{self, ApiError};

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileQuery {
    /// The recording's path under the recordings directory, as `wavFileUrl` names it.
    #[param(required = true, example = "ai_call/2025/08/16/21/2508162111590110001.wav")]
    filename: Option<String>,
}

/// The bytes of a WAV file (a schema only).
pub struct Wav;

impl utoipa::PartialSchema for Wav {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .content_media_type("audio/wav")
            .into()
    }
}

impl utoipa::ToSchema for Wav {}

/// The recording WAV of a call, with HTTP Range for players that seek.
#[utoipa::path(get, path = "/recordings/files", tag = "recordings", operation_id = "recordingFile",
    params(FileQuery,
        ("Range" = Option<String>, Header, nullable = false, description = "A byte range, for players that seek", example = "bytes=0-1023"),
        ("If-Modified-Since" = Option<String>, Header, nullable = false, description = "An HTTP date: 304 when the file is not newer"),
        ("If-Unmodified-Since" = Option<String>, Header, nullable = false, description = "An HTTP date: 412 when the file is newer")),
    security(("bearer" = []), ("apiKey" = []), ("basic" = [])),
    responses(
        (status = 200, description = "The whole file; or, as JSON, code 405 for a filename that is not a plain \
            relative .wav path under the recordings directory",
            content((Wav = "audio/wav"), (ErrorEnvelope = "application/json"))),
        (status = 206, description = "The range asked for", content_type = "audio/wav", body = Wav,
            headers(("Content-Range" = String, description = "bytes first-last/size"))),
        (status = 304, description = "Not modified since If-Modified-Since"),
        (status = 404, description = "Code 404: there is no such recording", body = ErrorEnvelope),
        (status = 412, description = "Modified since If-Unmodified-Since (empty body)"),
        (status = 416, description = "A Range that is malformed or outside the file (empty body)",
            content_type = "audio/wav", body = Wav,
            headers(("Content-Range" = String, description = "bytes */size"))),
    ))]
pub async fn file(
    State(state): State<AppState>,
    query: Result<Query<FileQuery>, QueryRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad(format!("查询参数不正确：{e}")))?;
    let name =
        q.filename.filter(|f| !f.trim().is_empty()).ok_or_else(|| ApiError::bad("filename 不能为空"))?;
    let relative = Path::new(&name);
    // Only plain relative names: no `..`, no root, no drive, no NUL.
    let plain = relative.components().all(|c| matches!(c, Component::Normal(_))) && !name.contains('\0');
    if !plain || relative.extension().is_none_or(|e| e != "wav") {
        return Err(ApiError::bad(
            "filename 不合法：应为录音目录下的相对路径，如 ai_call/2025/08/16/21/<uuid>.wav",
        ));
    }
    let missing = || envelope::status(StatusCode::NOT_FOUND, 404, "录音文件不存在");
    // Canonical paths, so a symlink cannot lead outside the recordings directory.
    let (Ok(root), Ok(path)) = (
        tokio::fs::canonicalize(&state.config.recordings.dir).await,
        tokio::fs::canonicalize(state.config.recordings.dir.join(relative)).await,
    ) else {
        return Ok(missing());
    };
    if !path.starts_with(&root) {
        return Err(ApiError::bad("filename 不合法：不在录音目录下"));
    }
    if !tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_file()) {
        return Ok(missing());
    }
    let wav = "audio/wav".parse().expect("a valid mime type");
    let served = ServeFile::new_with_mime(&path, &wav).oneshot(req.map(|_| Body::empty())).await;
    match served {
        Ok(response) if response.status() == StatusCode::NOT_FOUND => Ok(missing()),
        Ok(response) => Ok(response.into_response()),
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!("serving {}: {e}", path.display()))),
    }
}
