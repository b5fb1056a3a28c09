//! The rules every request passes before a handler runs (SPEC §14), as one middleware:
//!
//! 1. a browser's `Origin`, when sent, must be one `[cors] origins` lists (CSRF);
//! 2. without tokens, the `Host` must be a loopback name (DNS rebinding), and the caller is
//!    [`Caller::Local`]; with tokens, the request must present a known one, except on the open routes
//!    (`/`, `/health`, `/openapi.json`): 401 with `WWW-Authenticate` otherwise;
//! 3. a request with a body must say `Content-Type: application/json` (415): every body this server
//!    takes is JSON, and a browser cannot send JSON cross-origin without a CORS preflight.
//!
//! The caller is put into the request's extensions, where the database extractors find it.

use std::net::{Ipv4Addr, Ipv6Addr};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use outpost_api::{Error, Result};

use super::{token, Access, Caller};
use crate::error::ApiError;
use crate::AppState;

/// Headers a proxy adds: a server without tokens behind a proxy on its own host would otherwise take
/// every caller of the proxy for a loopback one.
const PROXY_HEADERS: [&str; 6] =
    ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip", "via"];

/// Routes anyone may call, token or not.
pub(crate) const OPEN_PATHS: [&str; 3] = ["/", "/health", "/openapi.json"];

pub(crate) async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match admit(&state.access, &mut request) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

/// Why a request goes no further.
enum Refused {
    /// An api error, answered with its kind's status.
    Error(Error),
    /// A body that is not declared JSON (415, which no error kind maps to).
    NotJson(Error),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Error(error) => ApiError(error).into_response(),
            Refused::NotJson(error) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, Json(error)).into_response(),
        }
    }
}

fn admit(access: &Access, request: &mut Request) -> Result<(), Refused> {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        if !access.origins().iter().any(|allowed| allowed == origin) {
            let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            return Err(refuse(Error::forbidden(format!(
                "requests from origin {shown:?} are not allowed; a server lists the origins browsers may call it \
                 from in its config ([cors] origins)"
            ))));
        }
    }
    let caller = if access.requires_tokens() {
        match authenticate(access, headers) {
            Ok(caller) => Some(caller),
            Err(_) if OPEN_PATHS.contains(&request.uri().path()) => None,
            Err(e) => return Err(refuse(e)),
        }
    } else {
        if let Some(name) = PROXY_HEADERS.iter().find(|name| headers.contains_key(**name)) {
            return Err(refuse(Error::forbidden(format!(
                "this server has no access tokens, so it serves loopback callers only, and this request came \
                 through a proxy ({name}): configure [[tokens]] to serve it through one"
            ))));
        }
        if !addressed_to_loopback(headers, request.uri()) {
            return Err(refuse(Error::forbidden(
                "this server has no access tokens, so it answers only requests addressed to a loopback name \
                 (localhost, 127.0.0.1, [::1]); configure [[tokens]] to serve it under other names",
            )));
        }
        Some(Caller::Local)
    };
    // The body's size as its framing says (Content-Length, chunked, or none at all).
    let has_body = axum::body::HttpBody::size_hint(request.body()).upper() != Some(0);
    json_body(request.method(), request.headers(), has_body)?;
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
    Ok(())
}

fn refuse(error: Error) -> Refused {
    Refused::Error(error)
}

/// The caller a request's credentials name; Unauthorized when there are none or they are unknown.
fn authenticate(access: &Access, headers: &HeaderMap) -> Result<Caller> {
    let Some(secret) = token::presented(headers)? else {
        return Err(Error::unauthorized(
            "this server needs an access token: send Authorization: Bearer TOKEN (outpost reads it from \
             OUTPOST_TOKEN or --token-file)",
        ));
    };
    access.token(&secret).map(Caller::Token).ok_or_else(|| {
        Error::unauthorized("the access token is not one this server knows (revoked, mistyped, or for another server)")
    })
}

/// Whether the request names a loopback host (in `Host`, and in an absolute-form target if any). A
/// request without a `Host` is not from a browser, so DNS rebinding cannot be behind it.
fn addressed_to_loopback(headers: &HeaderMap, uri: &Uri) -> bool {
    let host_ok = headers.get(header::HOST).is_none_or(|h| h.to_str().is_ok_and(is_loopback_authority));
    host_ok && uri.authority().is_none_or(|a| is_loopback_authority(a.as_str()))
}

/// `localhost`, `*.localhost`, `127.x.y.z` or `[::1]`, with or without a port.
pub(crate) fn is_loopback_authority(authority: &str) -> bool {
    let authority = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if let Some(rest) = authority.strip_prefix('[') {
        let Some((ip, port)) = rest.split_once(']') else { return false };
        return (port.is_empty() || port.strip_prefix(':').is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())))
            && ip.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        Some(_) => return false,
        None => authority,
    };
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost") || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// 415 for a request whose body (`has_body`: it may have bytes) is not declared JSON.
fn json_body(method: &Method, headers: &HeaderMap, has_body: bool) -> Result<(), Refused> {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return Ok(());
    }
    let declared = headers.get(header::CONTENT_TYPE);
    let is_json = declared
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/json"));
    if is_json || (declared.is_none() && !has_body) {
        return Ok(());
    }
    let what = declared.map_or_else(
        || "no Content-Type".to_owned(),
        |v| format!("Content-Type {:?}", String::from_utf8_lossy(v.as_bytes())),
    );
    let error =
        Error::invalid(format!("the request body must be JSON sent as Content-Type: application/json, not {what}"));
    Err(Refused::NotJson(error))
}

/// A configured origin, `scheme://host[:port]` as browsers send it.
pub(crate) fn parse_origin(text: &str) -> Result<HeaderValue> {
    let lower = text.trim().to_ascii_lowercase();
    let bad =
        || Error::invalid(format!("cors origin {text:?}: expected scheme://host[:port], e.g. https://app.example"));
    let uri: Uri = lower.parse().map_err(|_| bad())?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else { return Err(bad()) };
    if !matches!(scheme, "http" | "https")
        || lower != format!("{scheme}://{authority}")
        || authority.as_str().contains('@')
    {
        return Err(bad());
    }
    HeaderValue::from_str(&lower).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_or_without_ports() {
        for good in [
            "localhost",
            "LOCALHOST:7070",
            "localhost.",
            "app.localhost:1",
            "127.0.0.1",
            "127.9.8.7:80",
            "[::1]",
            "[::1]:7070",
        ] {
            assert!(is_loopback_authority(good), "{good}");
        }
        for bad in [
            "",
            "example.com",
            "localhost.example.com",
            "10.0.0.1:7070",
            "[::2]:1",
            "[::1",
            "127.0.0.1:x",
            "0.0.0.0",
            "evil.com:7070",
            "127.0.0.1.evil.com",
        ] {
            assert!(!is_loopback_authority(bad), "{bad}");
        }
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(parse_origin("https://App.Example").unwrap(), "https://app.example");
        assert_eq!(parse_origin("http://localhost:5173").unwrap(), "http://localhost:5173");
        for bad in ["app.example", "https://app.example/", "https://app.example/x", "ftp://a", "https://u@a", "*"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bodies_must_be_declared_json() {
        let with = |pairs: &[(header::HeaderName, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(name.clone(), HeaderValue::from_str(value).unwrap());
            }
            headers
        };
        let json = with(&[(header::CONTENT_TYPE, "application/json; charset=utf-8")]);
        assert!(json_body(&Method::POST, &json, true).is_ok());
        assert!(json_body(&Method::PUT, &with(&[]), false).is_ok(), "no body, no type");
        assert!(json_body(&Method::GET, &with(&[(header::CONTENT_TYPE, "text/plain")]), true).is_ok());
        for (bad, has_body) in [
            (with(&[(header::CONTENT_TYPE, "text/plain")]), true),
            (with(&[(header::CONTENT_TYPE, "application/x-www-form-urlencoded")]), false),
            (with(&[]), true),
        ] {
            let response =
                json_body(&Method::POST, &bad, has_body).map_err(IntoResponse::into_response).expect_err("415");
            assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
    }
}
