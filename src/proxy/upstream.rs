//! Where a proxied call may go: one of the token's provider's API base URLs, picked by the
//! token's `api_domain`. The caller only ever chooses the path below it.

use url::Url;

use crate::error::{Error, ErrorCode, Result};

/// The URL a call for `rest` (the path and query after `/v1/proxy/{id}`) goes to: below the base
/// of `bases` whose origin is the token's `api_domain`, or the first base for a token without
/// one. Refused (403) when the `api_domain` is none of them, and (400) for a path that would
/// climb out of the base.
pub fn target(bases: &[Url], api_domain: Option<&str>, rest: &str) -> Result<Url> {
    let base = match api_domain.filter(|d| !d.is_empty()) {
        None => bases.first().ok_or_else(|| {
            not_allowed(
                "this token's provider has no API to proxy to (providers.<key>.api_base_urls)",
            )
        })?,
        Some(domain) => {
            let origin = Url::parse(domain)
                .map_err(|_| not_allowed("the token's api_domain is not a URL"))?
                .origin();
            bases.iter().find(|b| b.origin() == origin).ok_or_else(|| {
                not_allowed(
                    "the token's api_domain is not one of its provider's API base URLs \
                         (providers.<key>.api_base_urls)",
                )
            })?
        }
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path
        .split('/')
        .any(|segment| matches!(decoded(segment).as_str(), "." | ".."))
    {
        return Err(Error::bad_request(
            ErrorCode::BadRequest,
            "the proxied path may not contain `.` or `..` segments",
        ));
    }
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query((!query.is_empty()).then_some(query));
    // Setting a path cannot move the URL to another host; checked anyway, it is the one rule.
    if url.origin() != base.origin() {
        return Err(not_allowed("the proxied path leaves the API's origin"));
    }
    Ok(url)
}

fn not_allowed(message: &str) -> Error {
    Error::Upstream {
        code: ErrorCode::UpstreamNotAllowed,
        message: message.into(),
    }
}

/// A path segment with its percent-escapes decoded (so `%2e%2E` counts as `..`).
fn decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bases() -> Vec<Url> {
        [
            "https://www.zohoapis.com",
            "https://sandbox.zohoapis.com/api/",
        ]
        .map(|u| Url::parse(u).unwrap())
        .to_vec()
    }

    fn code(r: Result<Url>) -> ErrorCode {
        r.unwrap_err().code()
    }

    #[test]
    fn the_token_api_domain_picks_the_base_and_the_caller_only_the_path() {
        let b = bases();
        let url = target(&b, Some("https://www.zohoapis.com"), "crm/v8/Leads?page=2").unwrap();
        assert_eq!(url.as_str(), "https://www.zohoapis.com/crm/v8/Leads?page=2");
        let url = target(&b, Some("https://sandbox.zohoapis.com"), "/crm/v8/Leads").unwrap();
        assert_eq!(
            url.as_str(),
            "https://sandbox.zohoapis.com/api/crm/v8/Leads"
        );
        let url = target(&b, None, "crm/v8/org").unwrap();
        assert_eq!(url.as_str(), "https://www.zohoapis.com/crm/v8/org");
        // Whatever the path, the host stays.
        let url = target(&b, None, "//evil.example/x").unwrap();
        assert_eq!(url.host_str(), Some("www.zohoapis.com"));
        let url = target(&b, None, "@evil.example/x").unwrap();
        assert_eq!(url.host_str(), Some("www.zohoapis.com"));
    }

    #[test]
    fn an_api_domain_the_provider_does_not_list_is_refused() {
        let b = bases();
        for domain in [
            "http://169.254.169.254",
            "http://www.zohoapis.com",
            "https://www.zohoapis.com.evil.example",
            "https://www.zohoapis.com:8443",
            "not a url",
        ] {
            assert_eq!(
                code(target(&b, Some(domain), "x")),
                ErrorCode::UpstreamNotAllowed,
                "{domain}"
            );
        }
        assert_eq!(code(target(&[], None, "x")), ErrorCode::UpstreamNotAllowed);
    }

    #[test]
    fn dot_segments_are_refused() {
        let b = bases();
        for path in ["../x", "crm/../../x", "crm/%2e%2E/x", "./x"] {
            assert_eq!(
                code(target(&b, Some("https://sandbox.zohoapis.com"), path)),
                ErrorCode::BadRequest,
                "{path}"
            );
        }
    }
}
