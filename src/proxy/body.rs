//! What passes through the proxy besides the URL: the headers each way (never the hop-by-hop
//! ones, never the caller's own credentials) and the bodies, streamed under a size bound, with a
//! small request body held so the call can be sent again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, HeaderName};
use futures::{stream, Stream, StreamExt, TryStreamExt};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), and the caller's
/// own credentials for the broker. Never sent on, either way.
const NOT_FORWARDED: [HeaderName; 12] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::AUTHORIZATION,
    header::COOKIE,
];

/// `headers` without the hop-by-hop ones (those above and those `Connection` names) and without
/// the caller's `Authorization` and `Cookie`.
pub fn forwarded(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    headers
        .iter()
        .filter(|(name, _)| !NOT_FORWARDED.contains(name))
        .filter(|(name, _)| !named.iter().any(|n| n == name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

/// A request body on its way to the API.
pub enum RequestBody {
    /// Small enough to hold: it can be sent twice.
    Held(Bytes),
    /// Streams through once; `too_large` turns true if it outgrows the bound on the way.
    Streaming {
        body: reqwest::Body,
        too_large: Arc<AtomicBool>,
    },
}

impl RequestBody {
    /// Reads up to `hold` bytes of `body`; a longer body streams through, cut off past `max`.
    pub async fn read(body: Body, hold: usize, max: u64) -> Result<Self, BodyError> {
        let mut chunks = body.into_data_stream();
        let mut held: Vec<Bytes> = Vec::new();
        let mut size = 0usize;
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|_| BodyError::Unreadable)?;
            size += chunk.len();
            if size as u64 > max {
                return Err(BodyError::TooLarge);
            }
            held.push(chunk);
            if size > hold {
                let too_large = Arc::new(AtomicBool::new(false));
                let rest = bounded(
                    chunks.map_err(std::io::Error::other),
                    max - size as u64,
                    too_large.clone(),
                );
                let start = stream::iter(held.into_iter().map(Ok::<_, std::io::Error>));
                return Ok(Self::Streaming {
                    body: reqwest::Body::wrap_stream(start.chain(rest)),
                    too_large,
                });
            }
        }
        Ok(Self::Held(held.concat().into()))
    }

    /// The body to send (a held one stays held for another attempt).
    pub fn send(&mut self) -> reqwest::Body {
        match self {
            Self::Held(bytes) => reqwest::Body::from(bytes.clone()),
            Self::Streaming { body, .. } => {
                std::mem::replace(body, reqwest::Body::from(Bytes::new()))
            }
        }
    }

    pub fn can_replay(&self) -> bool {
        matches!(self, Self::Held(_))
    }

    /// Whether a streaming body was cut off for outgrowing the bound.
    pub fn was_too_large(&self) -> bool {
        match self {
            Self::Held(_) => false,
            Self::Streaming { too_large, .. } => too_large.load(Ordering::Acquire),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Unreadable,
}

/// `chunks`, ending in an error once more than `max` bytes went through (and flagging it).
pub fn bounded<S>(
    chunks: S,
    max: u64,
    flag: Arc<AtomicBool>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
{
    let mut left = max;
    chunks.map(move |chunk| {
        let chunk = chunk?;
        match left.checked_sub(chunk.len() as u64) {
            Some(rest) => {
                left = rest;
                Ok(chunk)
            }
            None => {
                flag.store(true, Ordering::Release);
                Err(std::io::Error::other("body larger than the proxy's bound"))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn hop_by_hop_headers_and_the_callers_credentials_stay_behind() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer caller-jwt"),
            ("cookie", "session=1"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("host", "broker"),
            ("content-type", "application/json"),
            ("x-custom", "kept"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let kept = forwarded(&h);
        let mut names: Vec<&str> = kept.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-type", "x-custom"]);
    }

    #[tokio::test]
    async fn a_small_body_is_held_and_a_large_one_streams_under_the_bound() {
        let mut small = RequestBody::read(Body::from("hello"), 16, 100)
            .await
            .unwrap();
        assert!(small.can_replay());
        let _ = small.send();
        assert!(small.can_replay(), "still held after sending");

        let large = RequestBody::read(Body::from(vec![b'x'; 64]), 16, 100)
            .await
            .unwrap();
        assert!(!large.can_replay());

        let too_large = RequestBody::read(Body::from(vec![b'x'; 101]), 200, 100).await;
        assert_eq!(too_large.err(), Some(BodyError::TooLarge));
    }
}
