//! `/ui`: the web console, served by the binary itself. Plain HTML, CSS and JavaScript modules
//! kept in `src/api/ui/` and compiled in with `include_bytes!`: no build step, no npm, nothing
//! fetched from elsewhere (operators' networks often reach nothing else).
//!
//! The files hold no secrets and no data: they are served to anyone, outside the admin side's
//! rate and concurrency limits (they are constant, small and cheap). Everything the console
//! shows comes from `/v1` with the token the user signs in with, so the API's own checks decide
//! what a token sees. Every answer carries a strict Content-Security-Policy: scripts and styles
//! from this origin only (no inline script or style), images from here or `blob:` (the map's SVG,
//! fetched with the token), requests to this origin only, never framed.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::AppState;

/// What the console's pages may load and do.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' blob:; connect-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// The console's files: name under `/ui/`, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("ui/index.html"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("ui/console.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/dom.js"),
    ),
    (
        "overview.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/overview.js"),
    ),
    (
        "context.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/context.js"),
    ),
    (
        "dead_letters.js",
        "text/javascript; charset=utf-8",
        include_bytes!("ui/dead_letters.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("ui/favicon.svg"),
    ),
];

/// `/ui` (sent on to `/ui/`, so that the pages' relative links resolve), `/ui/` and its files.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { file("index.html") }))
        .route(
            "/ui/{*name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        )
}

/// One of [`FILES`], or 404.
fn file(name: &str) -> Response {
    let Some((_, content_type, bytes)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return secured((StatusCode::NOT_FOUND, "no such file in the console\n").into_response());
    };
    secured(([(header::CONTENT_TYPE, *content_type)], *bytes).into_response())
}

/// The headers every console answer carries.
fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // A new binary brings new files: always ask (they are small).
        (header::CACHE_CONTROL, "no-cache"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_pages_name_is_served() {
        let index = std::str::from_utf8(FILES[0].2).unwrap();
        let modules: Vec<&str> = FILES
            .iter()
            .filter(|(name, _, _)| name.ends_with(".js"))
            .map(|(_, _, bytes)| std::str::from_utf8(bytes).unwrap())
            .collect();
        let mut named = Vec::new();
        for text in modules.iter().chain([&index]) {
            for quote in ['"', '\''] {
                for piece in text.split(quote).skip(1).step_by(2) {
                    let piece = piece.trim_start_matches("./");
                    let is_file = [".js", ".css", ".svg"]
                        .iter()
                        .any(|suffix| piece.ends_with(suffix))
                        && !piece.contains('/')
                        && !piece.contains(' ');
                    if is_file {
                        named.push(piece.to_owned());
                    }
                }
            }
        }
        assert!(named.contains(&"app.js".to_owned()), "{named:?}");
        for name in named {
            assert!(
                FILES.iter().any(|(file, _, _)| *file == name),
                "{name} is named by the console but not served"
            );
        }
    }

    #[test]
    fn no_page_carries_inline_script_or_style() {
        let index = std::str::from_utf8(FILES[0].2).unwrap();
        assert!(!index.contains("<script>"), "inline script");
        assert!(!index.contains("<style"), "inline style");
        assert!(!index.contains("style="), "style attribute");
        let handler = index.split_whitespace().any(|word| {
            word.starts_with("on")
                && word.contains('=')
                && word[2..].starts_with(char::is_alphabetic)
        });
        assert!(!handler, "inline event handler");
    }
}
