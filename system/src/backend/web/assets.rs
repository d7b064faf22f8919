//! The browser client, compiled into the binary: plain HTML, CSS and JavaScript with no build
//! step, and Leaflet 1.9.4 (BSD-2-Clause, its LICENSE served beside it) from the npm registry.
//! Nothing is fetched from the internet.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use super::AppState;

macro_rules! asset {
    ($route:literal, $file:literal, $type:literal) => {
        (
            $route,
            $type,
            include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/web/", $file)) as &[u8],
        )
    };
}

/// Every asset: route, content type, bytes.
pub(super) const ASSETS: &[(&str, &str, &[u8])] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/fences.js", "fences.js", "text/javascript; charset=utf-8"),
    asset!("/app.css", "app.css", "text/css; charset=utf-8"),
    asset!(
        "/vendor/leaflet/leaflet.js",
        "vendor/leaflet/leaflet.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "/vendor/leaflet/leaflet.css",
        "vendor/leaflet/leaflet.css",
        "text/css; charset=utf-8"
    ),
    asset!(
        "/vendor/leaflet/LICENSE",
        "vendor/leaflet/LICENSE",
        "text/plain; charset=utf-8"
    ),
    asset!(
        "/vendor/leaflet/images/marker-icon.png",
        "vendor/leaflet/images/marker-icon.png",
        "image/png"
    ),
    asset!(
        "/vendor/leaflet/images/marker-icon-2x.png",
        "vendor/leaflet/images/marker-icon-2x.png",
        "image/png"
    ),
    asset!(
        "/vendor/leaflet/images/marker-shadow.png",
        "vendor/leaflet/images/marker-shadow.png",
        "image/png"
    ),
    asset!(
        "/vendor/leaflet/images/layers.png",
        "vendor/leaflet/images/layers.png",
        "image/png"
    ),
    asset!(
        "/vendor/leaflet/images/layers-2x.png",
        "vendor/leaflet/images/layers-2x.png",
        "image/png"
    ),
];

/// A route per asset.
pub(super) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for &(route, content_type, bytes) in ASSETS {
        router = router.route(
            route,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    bytes,
                )
                    .into_response()
            }),
        );
    }
    router
}
