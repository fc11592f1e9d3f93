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
use super::envelope::{self, ApiError};

#[derive(Deserialize)]
pub struct FileQuery {
    filename: Option<String>,
}

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
        tokio::fs::canonicalize(&state.settings.recordings.dir).await,
        tokio::fs::canonicalize(state.settings.recordings.dir.join(relative)).await,
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
