//! CORS for the origins a config lists (`[cors] origins`): credentials allowed for exactly those,
//! preflights answered, the headers a browser client needs exposed. No origins, no CORS headers.

use std::time::Duration;

use axum::http::{header, HeaderName, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::Access;

/// How long a browser may cache a preflight's answer.
const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// The CORS layer for `access`'s origins, or `None` when it lists none.
pub(crate) fn cors(access: &Access) -> Option<CorsLayer> {
    if access.origins().is_empty() {
        return None;
    }
    let request_id = HeaderName::from_static("x-request-id");
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(access.origins().iter().cloned()))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::HEAD, Method::PUT, Method::POST, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                header::IF_MATCH,
                header::IF_RANGE,
                header::RANGE,
                HeaderName::from_static("last-event-id"),
                request_id.clone(),
            ])
            .expose_headers([
                header::CONTENT_RANGE,
                header::CONTENT_LENGTH,
                header::ACCEPT_RANGES,
                header::LAST_MODIFIED,
                header::WWW_AUTHENTICATE,
                request_id,
            ])
            .max_age(PREFLIGHT_MAX_AGE),
    )
}
