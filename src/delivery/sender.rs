//! The HTTP side of a delivery: one keep-alive client (HTTP/1.1 and HTTP/2 over rustls), no
//! redirects, per-attempt timeouts, and DNS answers filtered by the address policy so eventd only
//! ever connects to an address that passed (no DNS rebinding).

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address::AddressPolicy;
use crate::config::DeliveryConfig;

/// How many response body bytes an attempt record keeps.
pub const RESPONSE_PREFIX_BYTES: usize = 256;
/// How much of a response body is read (so the connection can be reused); the rest is dropped.
const RESPONSE_READ_LIMIT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    pub status: Option<u16>,
    pub error: Option<String>,
    pub response_prefix: Option<String>,
    pub retry_after: Option<Duration>,
}

impl SendResult {
    pub fn succeeded(&self) -> bool {
        self.error.is_none() && self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// An attempt eventd stopped waiting for because it is shutting down.
    pub fn cut_off() -> Self {
        Self::failed("shutdown: the attempt was cut off because eventd was stopping".to_owned())
    }

    fn failed(error: String) -> Self {
        SendResult {
            status: None,
            error: Some(error),
            response_prefix: None,
            retry_after: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{host} resolves only to addresses eventd may not connect to")]
struct RefusedAddress {
    host: String,
}

struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(RefusedAddress { host }) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    timeout: Duration,
}

impl Sender {
    pub fn new(config: &DeliveryConfig) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(AddressPolicy::new(config.allow_private_targets.0.clone()));
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.attempt_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // Several destinations may share a host (and so a pool): keep as many connections
            // as there can be attempts in flight, or each one beyond would open and close its own.
            .pool_max_idle_per_host(config.max_in_flight)
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            .build()?;
        Ok(Sender {
            client,
            policy,
            timeout: config.attempt_timeout,
        })
    }

    /// True unless the URL's host is an IP literal the policy refuses (names are judged when resolved).
    pub fn literal_host_permitted(policy: &AddressPolicy, url: &str) -> bool {
        url::Url::parse(url).map_or(true, |u| Self::host_permitted(policy, &u))
    }

    fn host_permitted(policy: &AddressPolicy, url: &url::Url) -> bool {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => policy.permits(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => policy.permits(IpAddr::V6(ip)),
            _ => true,
        }
    }

    /// POSTs `body` to `url` exactly as stored, with Stripe's delivery headers. The URL is parsed
    /// once, for the address policy and the request both.
    pub async fn post(&self, url: &str, signature: &str, body: bytes::Bytes) -> SendResult {
        let url = match url::Url::parse(url) {
            Ok(url) => url,
            Err(e) => return SendResult::failed(format!("invalid_url: {e}")),
        };
        if !Self::host_permitted(&self.policy, &url) {
            return SendResult::failed(
                "refused_address: the URL's address is not one eventd may connect to".to_owned(),
            );
        }
        let request = self
            .client
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "user-agent",
                "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            )
            .header("accept", "*/*; q=0.5, application/xml")
            .header("cache-control", "no-cache")
            .header("stripe-signature", signature)
            .body(body);
        match request.send().await {
            Ok(response) => self.read(response).await,
            Err(e) => SendResult::failed(self.describe(&e)),
        }
    }

    async fn read(&self, mut response: reqwest::Response) -> SendResult {
        let status = response.status().as_u16();
        let retry_after = if status == 429 || status == 503 {
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
        } else {
            None
        };
        let mut prefix = Vec::new();
        let mut read = 0usize;
        let mut error = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = RESPONSE_PREFIX_BYTES.saturating_sub(prefix.len());
                    prefix.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    read += chunk.len();
                    if read > RESPONSE_READ_LIMIT {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) if (200..300).contains(&status) => {
                    // The status arrived: the receiver accepted the event even if its body broke off.
                    tracing::debug!(error = %e, "response body incomplete after a 2xx");
                    break;
                }
                Err(e) => {
                    error = Some(self.describe(&e));
                    break;
                }
            }
        }
        let error = error.or_else(|| {
            (!(200..300).contains(&status))
                .then(|| format!("http_status: the receiver answered {status}"))
        });
        SendResult {
            status: Some(status),
            error,
            response_prefix: (!prefix.is_empty()).then(|| text_prefix(&prefix)),
            retry_after,
        }
    }

    fn describe(&self, e: &reqwest::Error) -> String {
        let mut source: Option<&dyn StdError> = e.source();
        let mut root = e.to_string();
        while let Some(s) = source {
            if let Some(refused) = s.downcast_ref::<RefusedAddress>() {
                return format!("refused_address: {refused}");
            }
            root = s.to_string();
            source = s.source();
        }
        if e.is_timeout() {
            format!("timeout: no complete answer within {:?}", self.timeout)
        } else if e.is_connect() {
            format!("connection_error: {root}")
        } else {
            format!("request_error: {root}")
        }
    }
}

/// The body prefix as text of at most `RESPONSE_PREFIX_BYTES` bytes, cut at a character boundary
/// (a character split by the byte limit is dropped, invalid bytes become U+FFFD).
fn text_prefix(bytes: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(bytes).into_owned();
    if let Err(e) = std::str::from_utf8(bytes) {
        if e.error_len().is_none() {
            // Only the last character was cut off by the limit: drop it rather than replace it.
            text = String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned();
        }
    }
    let mut end = text.len().min(RESPONSE_PREFIX_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_prefixes_stay_within_the_limit() {
        for body in ["a".repeat(10_000), "ü🦀".repeat(2_000), "🦀".repeat(100)] {
            let bytes = body.as_bytes();
            let prefix = text_prefix(&bytes[..bytes.len().min(RESPONSE_PREFIX_BYTES)]);
            assert!(prefix.len() <= RESPONSE_PREFIX_BYTES, "{}", prefix.len());
            assert!(body.starts_with(&prefix));
        }
        assert_eq!(text_prefix(&[0xff, b'a']), "\u{fffd}a");
    }
}
