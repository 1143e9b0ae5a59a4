//! The pages a person sees during a browser login: connected, failed, expired, already used,
//! another browser, another account. Self-contained (inline style, no script, no external
//! resource — the Content-Security-Policy forbids loading any), readable on a phone, worded for
//! people: what happened, with which provider and account, and what to do next.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::domain::Token;
use crate::error::ErrorCode;
use crate::oauth::LoginFailure;

/// Nothing may be loaded; only the page's own inline style applies.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// One page: its outcome (`data-outcome`, for tests and scripts), words and an optional link.
pub struct Page<'a> {
    pub status: StatusCode,
    pub outcome: &'static str,
    pub title: &'a str,
    pub lead: String,
    pub next: &'a str,
    pub link: Option<(&'a str, &'a str)>,
}

impl Page<'_> {
    pub fn render(self) -> Response {
        let ok = self.status.is_success();
        let (mark, colour) = if ok {
            ("✓", "#1a7f37")
        } else {
            ("!", "#b3261e")
        };
        let link = self
            .link
            .map(|(href, label)| {
                format!(
                    "<p><a class=\"button\" href=\"{}\">{}</a></p>",
                    escape(href),
                    escape(label)
                )
            })
            .unwrap_or_default();
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <meta name=\"robots\" content=\"noindex\">\
             <title>{title}</title><style>\
             *{{box-sizing:border-box}}\
             body{{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f6f7f9;color:#1f2328}}\
             main{{max-width:34rem;margin:12vh auto 2rem;padding:2rem 1.5rem;background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.12)}}\
             .mark{{width:3rem;height:3rem;border-radius:50%;display:flex;align-items:center;justify-content:center;font-size:1.6rem;font-weight:700;color:#fff;background:{colour}}}\
             h1{{font-size:1.5rem;line-height:1.25;margin:1rem 0 .5rem}}\
             p{{margin:.75rem 0;overflow-wrap:anywhere}}\
             .next{{color:#57606a}}\
             a.button{{display:inline-block;padding:.6rem 1.1rem;border-radius:8px;background:#0969da;color:#fff;text-decoration:none}}\
             @media (max-width:30rem){{main{{margin:0;min-height:100vh;border-radius:0;box-shadow:none}}}}\
             </style></head><body><main data-outcome=\"{outcome}\">\
             <div class=\"mark\" aria-hidden=\"true\">{mark}</div><h1>{title}</h1>\
             <p class=\"lead\">{lead}</p><p class=\"next\">{next}</p>{link}</main></body></html>",
            title = escape(self.title),
            outcome = self.outcome,
            lead = self.lead,
            next = escape(self.next),
        );
        let mut response = (self.status, Html(html)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        response
    }
}

/// The account is connected.
pub fn connected(token: &Token, provider: &str) -> Response {
    let account = token
        .identity
        .as_ref()
        .map(|i| i.label().to_owned())
        .or_else(|| token.user_name.as_ref().map(|u| u.as_str().to_owned()));
    let who = account.map_or_else(
        || "Your account".to_owned(),
        |a| format!("<strong>{}</strong>", escape(&a)),
    );
    let provider = escape(provider);
    if token.refresh_token.is_none() {
        return Page {
            status: StatusCode::OK,
            outcome: "no-refresh",
            title: "Connected for now only",
            lead: format!(
                "{who} is connected to {provider}, but {provider} did not allow offline access, \
                 so the connection ends when the current access expires."
            ),
            next: "To stay connected, start again and allow offline access when asked.",
            link: None,
        }
        .render();
    }
    Page {
        status: StatusCode::OK,
        outcome: "connected",
        title: "Account connected",
        lead: format!("{who} is now connected to {provider}."),
        next: "You can close this window and go back to the application.",
        link: None,
    }
    .render()
}

/// A browser login that did not connect an account.
pub fn failed(failure: &LoginFailure, provider: Option<&str>) -> Response {
    let provider = escape(provider.unwrap_or("the provider"));
    let again = "Go back to the application and choose Connect again to get a new link.";
    let (status, outcome, title, lead, next) = match failure {
        LoginFailure::UnknownLink => (
            StatusCode::BAD_REQUEST,
            "failed",
            "This link does not work",
            "The broker does not know this sign-in link. It may have been copied incompletely.".to_owned(),
            again,
        ),
        LoginFailure::Expired => (
            StatusCode::GONE,
            "expired",
            "This link has expired",
            "Sign-in links work for a few minutes only, and this one is too old.".to_owned(),
            again,
        ),
        LoginFailure::AlreadyUsed => (
            StatusCode::CONFLICT,
            "used",
            "This link was already used",
            "Each sign-in link works once, and this one has been opened before.".to_owned(),
            again,
        ),
        LoginFailure::OtherBrowser => (
            StatusCode::FORBIDDEN,
            "other-browser",
            "Finish in the browser you started in",
            "This sign-in was started in another browser (or its cookies were cleared), so it was \
             stopped: nobody can finish a sign-in that someone else started."
                .to_owned(),
            "Open the application in this browser and choose Connect again.",
        ),
        LoginFailure::Declined => (
            StatusCode::FORBIDDEN,
            "failed",
            "Nothing was connected",
            format!("You declined the request at {provider}, so no account was connected."),
            "If that was a mistake, go back to the application and choose Connect again.",
        ),
        LoginFailure::IdentityMismatch { wanted, logged_in } => (
            StatusCode::FORBIDDEN,
            "mismatch",
            "That was a different account",
            format!(
                "This link was for <strong>{}</strong>, but you signed in to {provider} as \
                 <strong>{}</strong>. Nothing was connected.",
                escape(wanted),
                escape(logged_in)
            ),
            "Sign out of that account at the provider, then start again and sign in as the account the link was for.",
        ),
        LoginFailure::IdentityConflict { logged_in } => (
            StatusCode::CONFLICT,
            "mismatch",
            "Already connected to another account",
            format!(
                "This user is already connected to {provider} with another account, so signing \
                 in as <strong>{}</strong> did not replace it. Nothing was changed.",
                escape(logged_in)
            ),
            "To switch accounts, ask the application to disconnect the old one first.",
        ),
        LoginFailure::ProviderUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "failed",
            "The provider is not answering",
            format!("{provider} could not be reached to finish signing in."),
            "Wait a minute, then go back to the application and choose Connect again.",
        ),
        LoginFailure::Refused { code, message } => (
            if *code == ErrorCode::ProviderError {
                StatusCode::BAD_GATEWAY
            } else {
                StatusCode::BAD_REQUEST
            },
            "failed",
            "Sign-in did not work",
            format!(
                "{provider} did not complete the sign-in: {}.",
                escape(message.trim_end_matches('.'))
            ),
            again,
        ),
        LoginFailure::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            "Something went wrong",
            "The broker could not finish signing in. The problem is on our side, not yours.".to_owned(),
            "Try again in a moment; if it keeps happening, tell the application's support team.",
        ),
    };
    let mut response = Page {
        status,
        outcome,
        title,
        lead,
        next,
        link: None,
    }
    .render();
    response.extensions_mut().insert(ErrorCode::LoginFailed);
    response
}

/// A person opened an address meant for applications (the authorize endpoint without a JWT).
pub fn for_applications() -> Response {
    let mut response = Page {
        status: StatusCode::UNAUTHORIZED,
        outcome: "failed",
        title: "This address is for applications",
        lead: "Sign-in links come from the application you want to connect: it asks the broker \
               for a link and sends you there."
            .to_owned(),
        next: "Go back to the application and choose Connect.",
        link: None,
    }
    .render();
    response.extensions_mut().insert(ErrorCode::Unauthorized);
    response
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
