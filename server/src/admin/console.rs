//! The operator console (`GET /console`): one page of plain HTML, CSS and JavaScript,
//! compiled into the binary (no CDN, no build step), that speaks the admin API with the
//! key its user logs in with. The assets themselves need no key: they hold no data.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The page.
const INDEX_HTML: &str = include_str!("console/index.html");
/// Its script.
const CONSOLE_JS: &str = include_str!("console/console.js");
/// Its style sheet.
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// What the page may load and talk to: itself only (its API, its feed, the heat map it
/// draws as a data URL).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes.
pub(super) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(|| async { asset("text/html", INDEX_HTML) }))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route(
            "/console/console.js",
            get(|| async { asset("text/javascript", CONSOLE_JS) }),
        )
        .route(
            "/console/console.css",
            get(|| async { asset("text/css", CONSOLE_CSS) }),
        )
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, format!("{kind}; charset=utf-8")),
            // Assets change with the binary: revalidated on every load.
            (header::CACHE_CONTROL, "no-cache".to_owned()),
            (
                header::CONTENT_SECURITY_POLICY,
                CONTENT_SECURITY_POLICY.to_owned(),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_assets_load_nothing_from_elsewhere() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("console.js", CONSOLE_JS),
            ("console.css", CONSOLE_CSS),
        ] {
            for (at, _) in text.match_indices("//") {
                let before = &text[at.saturating_sub(6)..at];
                // Only the SVG namespace URI, which names and loads nothing.
                let allowed = text[at..].starts_with("//www.w3.org/2000/svg");
                assert!(
                    !(before.ends_with("http:") || before.ends_with("https:")) || allowed,
                    "{name} refers to another origin at byte {at}"
                );
            }
            assert!(!text.contains("@import"), "{name} imports a style sheet");
        }
        assert!(INDEX_HTML.contains("src=\"/console/console.js\""));
        assert!(INDEX_HTML.contains("href=\"/console/console.css\""));
    }
}
