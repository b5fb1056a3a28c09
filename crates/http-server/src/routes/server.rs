//! About the server itself: `/`, `/health`, `/openapi.json`.

use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /`.
#[derive(Serialize, ToSchema)]
pub struct ServerInfo {
    /// Always `outpost`.
    pub name: String,
    /// The server's version.
    pub version: String,
}

/// `GET /health`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` while the server answers.
    pub status: String,
}

/// Who answers.
#[utoipa::path(
    get, path = "/", tag = "server", operation_id = "server_info",
    responses((status = 200, body = ServerInfo))
)]
pub async fn root() -> Json<ServerInfo> {
    Json(ServerInfo { name: "outpost".into(), version: env!("CARGO_PKG_VERSION").into() })
}

/// Liveness.
#[utoipa::path(
    get, path = "/health", tag = "server", operation_id = "health",
    responses((status = 200, body = Health))
)]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

/// This API as OpenAPI 3.1, generated from the handlers.
#[utoipa::path(
    get, path = "/openapi.json", tag = "server", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json"))
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi())
}
