//! `GET /docs`: the API reference (Redoc 2.5.2) over `/openapi.json`. Redoc's script is embedded
//! in the binary (`assets/redoc`) and served from `/docs/redoc.standalone.js`; the page's CSP lets
//! it load nothing from anywhere else, so it works offline and leaks no visit to a CDN.

use axum::http::header;
use axum::response::IntoResponse;

const REDOC_JS: &str = include_str!("../../assets/redoc/redoc.standalone.js");

/// The one address in Redoc's bundle outside the broker: the sidebar's "Redocly" logo, fetched
/// from a CDN. It is served as an empty image instead, so the page makes no request elsewhere
/// (the CSP would block it anyway, but a browser still tries).
const CDN_LOGO: &str = "https://cdn.redoc.ly/redoc/logo-mini.svg";
const EMPTY_IMAGE: &str = "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E";

fn redoc_js() -> &'static str {
    static JS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    JS.get_or_init(|| REDOC_JS.replace(CDN_LOGO, EMPTY_IMAGE))
}

/// Scripts and data from the broker only; Redoc's inline styles and its search worker (a blob).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
                   worker-src 'self' blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>token-broker API</title><style>body{margin:0;padding:0}</style></head>\
<body><redoc spec-url=\"/openapi.json\" hide-download-button></redoc>\
<script src=\"/docs/redoc.standalone.js\"></script></body></html>";

/// The reference page.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}

/// Redoc's script, cached by browsers for a day (it changes only with the binary).
pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        redoc_js(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_served_bundle_names_no_other_host() {
        let js = super::redoc_js();
        assert!(!js.contains(super::CDN_LOGO));
        assert!(!js.contains("cdn.redoc.ly"));
    }
}
