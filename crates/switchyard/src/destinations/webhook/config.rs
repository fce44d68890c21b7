//! The `webhook` destination's `settings:` (signing) as written, and the compile of the
//! whole destination: signing, then the engine's shared `delivery:`, `retry:` and
//! `mappings:` (`delivery/config.rs`).

use serde::Deserialize;

use crate::config::compile::Cx;
use crate::config::raw::RawDestination;
use crate::config::{ServerConfig, Signing, WebhookConfig};
use crate::delivery::config::{delivery_and_retry, mappings};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhookSettings {
    shared_secret: Option<String>,
    #[serde(rename = "sharedSecret")]
    shared_secret_alias: Option<String>,
    signing: Option<String>,
}

/// The `webhook` destination: Segment's "Webhooks (Actions)", up to five mappings, each
/// event signed with the shared secret when one is set.
pub(crate) fn compile_webhook(
    cx: &mut Cx,
    raw: &RawDestination,
    path: &str,
    server: &ServerConfig,
) -> Option<WebhookConfig> {
    let settings: RawWebhookSettings = cx
        .section(raw.settings.as_ref(), &format!("{path}.settings"))
        .unwrap_or_default();
    let signing = signing(cx, settings, &format!("{path}.settings"));
    let (delivery, retry) = delivery_and_retry(cx, raw, path);
    let mappings = mappings(cx, raw.mappings.as_ref(), path, server);
    Some(WebhookConfig {
        signing,
        mappings,
        delivery,
        retry,
    })
}

/// `settings.signing` and the shared secret (also spelled `sharedSecret`, as Segment
/// exports it); no secret, no signature.
fn signing(cx: &mut Cx, s: RawWebhookSettings, path: &str) -> Signing {
    let secret = s
        .shared_secret
        .or(s.shared_secret_alias)
        .filter(|s| !s.is_empty());
    match (s.signing.as_deref().unwrap_or("segment"), secret) {
        (_, None) => Signing::None,
        ("segment", Some(secret)) => Signing::Segment(secret),
        ("standard_webhooks", Some(secret)) => {
            match crate::signing::StandardWebhooks::from_secret(&secret) {
                Ok(k) => Signing::StandardWebhooks(k),
                Err(e) => {
                    cx.err(format!("{path}.shared_secret"), e.to_string());
                    Signing::None
                }
            }
        }
        (other, Some(_)) => {
            cx.err(
                format!("{path}.signing"),
                format!("unknown signing {other:?}; expected segment or standard_webhooks"),
            );
            Signing::None
        }
    }
}
