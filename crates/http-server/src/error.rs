//! The one mapping from `outpost_api::Error` to an HTTP response (docs/HTTP.md, Errors), and the
//! middleware that gives responses made outside our handlers (unknown route, wrong method, timeout)
//! the same JSON body.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_api::{Error, ErrorKind};

/// An api error on its way to the client: status from [`ErrorKind::http_status`], body the serde form
/// of [`Error`]. A 5xx body carries a generic message; the detail goes to the log.
#[derive(Debug)]
pub struct ApiError(pub Error);

/// What a handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

impl From<Error> for ApiError {
    /// An error from below the handlers (storage, the engine). An Unauthorized among them is the
    /// server's own credentials failing — a PostgreSQL login, say — not the caller's: it is answered
    /// 503 (logged with its detail), so that clients retry instead of doubting a good token. The
    /// caller's 401s are made by the access rules, which construct `ApiError` directly.
    fn from(e: Error) -> Self {
        if e.kind == ErrorKind::Unauthorized {
            tracing::error!(message = %e.message, "the server's own credentials were refused");
            return ApiError(Error::unavailable("the server cannot reach its storage; its operator has been told"));
        }
        ApiError(e)
    }
}

/// The message a client sees for a server-side failure (the detail stays in the log).
fn generic_message(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unavailable => "the service is temporarily unavailable; retry later",
        _ => "internal server error; the server log has the details",
    }
}

/// `error` as the client may see it: 5xx details are logged here and replaced by a generic message.
pub(crate) fn public(error: Error) -> Error {
    if error.kind.http_status() < 500 {
        return error;
    }
    match error.kind {
        ErrorKind::Unavailable => tracing::warn!(kind = %error.kind, message = %error.message, "request failed"),
        _ => tracing::error!(kind = %error.kind, message = %error.message, "request failed"),
    }
    Error::new(error.kind, generic_message(error.kind))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = public(self.0);
        let status = StatusCode::from_u16(error.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let unauthorized = error.kind == ErrorKind::Unauthorized;
        let mut response = (status, Json(error)).into_response();
        if unauthorized {
            // RFC 9110 §11.6.1: a 401 names the scheme to use.
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"outpost\""));
        }
        response
    }
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Middleware: an error response without our JSON body (axum's 404 for an unknown route, 405 for a
/// wrong method, the timeout layer's 503, ...) gets one, keeping its status and headers such as `Allow`.
pub(crate) async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let error = match status {
        StatusCode::NOT_FOUND => Error::not_found(format!("no route for {method} {path}")),
        StatusCode::METHOD_NOT_ALLOWED => Error::invalid(format!("method {method} is not allowed on {path}")),
        StatusCode::SERVICE_UNAVAILABLE => Error::unavailable(format!("{method} {path} did not finish in time")),
        StatusCode::PAYLOAD_TOO_LARGE => Error::too_large("the request body exceeds the size limit"),
        s => Error::new(ErrorKind::from_http_status(s.as_u16()), s.canonical_reason().unwrap_or("request failed")),
    };
    let (mut parts, _) = response.into_parts();
    let body = public(error);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    let json = serde_json::to_vec(&body).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(json))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn every_kind_answers_its_status_and_5xx_hide_the_detail() {
        for kind in ErrorKind::ALL {
            let response = ApiError(Error::new(kind, "secret detail")).into_response();
            assert_eq!(response.status().as_u16(), kind.http_status());
            let body = body_of(response).await;
            assert_eq!(body["error"], kind.as_str());
            let message = body["message"].as_str().expect("message");
            assert_eq!(message == "secret detail", kind.http_status() < 500, "{kind}: {message}");
        }
        let conflict = Error::conflict("stale", Some("2-00000000000000000000000000000000".parse().unwrap()));
        let body = body_of(ApiError(conflict).into_response()).await;
        assert_eq!(body["current_rev"], "2-00000000000000000000000000000000");
    }

    #[tokio::test]
    async fn the_servers_own_refused_credentials_are_503_not_401() {
        let storage = Error::unauthorized(
            "postgres: password authentication failed for user \"outpost\" [postgres://outpost@db/x]",
        );
        let response = ApiError::from(storage).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
        let body = body_of(response).await;
        assert_eq!(body["error"], "unavailable");
        assert!(!body["message"].as_str().unwrap().contains("postgres"), "{body}");
        // The caller's own 401 keeps its status and challenge.
        let caller = ApiError(Error::unauthorized("this server needs an access token")).into_response();
        assert_eq!(caller.status(), StatusCode::UNAUTHORIZED);
        assert!(caller.headers().get(header::WWW_AUTHENTICATE).is_some());
    }

    #[tokio::test]
    async fn error_responses_made_outside_handlers_get_the_json_body() {
        let app = Router::new()
            .route("/slow", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .route("/teapot", get(|| async { (StatusCode::IM_A_TEAPOT, "short and stout") }))
            .route("/ok", get(|| async { "plain text is fine" }))
            .layer(axum::middleware::from_fn(json_errors));
        for (uri, status, kind) in
            [("/slow", 503, "unavailable"), ("/teapot", 418, "invalid_input"), ("/nope", 404, "not_found")]
        {
            let response = app.clone().oneshot(Request::get(uri).body(Body::empty()).unwrap()).await.unwrap();
            assert_eq!(response.status().as_u16(), status, "{uri}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
            assert_eq!(body_of(response).await["error"], kind, "{uri}");
        }
        let response = app.oneshot(Request::get("/ok").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
