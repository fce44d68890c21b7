//! Request bodies built once, with fixed-width messageId slots rewritten per request.

use bytes::Bytes;

const SLOT: &str = "00000000000000000000";
/// Where a user id goes when events are spread over a population of users.
const USER_SLOT: &str = "uuuuuuuuuuuu";

pub struct Template {
    bytes: Vec<u8>,
    slots: Vec<usize>,
    user_slots: Vec<usize>,
    users: u64,
    counter: u64,
}

impl Template {
    /// `names` > 1 spreads the events of a batch over `Event 0` … `Event {names-1}`;
    /// `users` > 0 gives each event one of that many user ids, scattered.
    pub fn new(
        mode: &str,
        events: usize,
        event_bytes: usize,
        prefix: &str,
        names: usize,
        users: u64,
    ) -> Template {
        let one = |i: usize| {
            let name = if names > 1 {
                format!("Event {}", i % names)
            } else {
                "Order Completed".to_owned()
            };
            let mut e = serde_json::json!({
                "type": "track", "event": name,
                "userId": if users > 0 { format!("user-{USER_SLOT}") } else { format!("user-{i}") },
                "messageId": format!("{prefix}-{SLOT}"), "timestamp": "2026-11-22T04:18:16.688Z",
                "properties": {"order_id": "50314b8e9bcf000000000000", "total": 27.5, "currency": "USD",
                    "products": [{"product_id": "507f1f77bcf86cd799439011", "sku": "45790-32", "name": "Monopoly: 3rd Edition", "price": 19, "quantity": 1}]},
                "context": {"library": {"name": "loadgen", "version": "1"}, "ip": "203.0.113.7",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
                    "page": {"path": "/checkout", "url": "https://shop.example.com/checkout", "title": "Checkout"}},
            });
            let size = e.to_string().len();
            if size < event_bytes {
                e["properties"]["pad"] =
                    serde_json::Value::String("x".repeat(event_bytes - size - 9));
            }
            e.to_string()
        };
        // A KnoCommerce survey response (examples/knocommerce), with a fresh response id.
        let kno = || {
            serde_json::json!({
                "id": format!("resp-{prefix}-{SLOT}"), "topic": "response/create",
                "createdAt": "2026-11-20T14:03:11.482Z", "customerId": "gid://shopify/Customer/6623948201",
                "email": "dana.reyes@example.com", "orderId": "gid://shopify/Order/5301928374",
                "survey": {"id": "srv_post_purchase", "title": "Post-purchase survey"},
                "responses": [
                    {"questionId": "q_hdyhau", "question": "How did you hear about us?", "answerType": "single_choice", "answer": "Podcast"},
                    {"questionId": "q_nps", "question": "How likely are you to recommend us to a friend?", "answerType": "nps", "answer": 9}],
                "attribution": {"channel": "Podcast", "source": "The Daily Grind", "firstTouch": false},
            })
        };
        let text = if mode == "webhook" {
            kno().to_string()
        } else if mode == "kno-track" {
            // The event the KnoCommerce function emits for that payload.
            serde_json::json!({"type": "track", "event": "KnoCommerce Webhook Event",
                "userId": "gid://shopify/Customer/6623948201", "messageId": format!("{prefix}-{SLOT}"),
                "properties": kno()}).to_string()
        } else if mode == "batch" {
            let items: Vec<String> = (0..events).map(one).collect();
            format!(
                "{{\"batch\":[{}],\"sentAt\":\"2026-11-22T04:18:16.700Z\"}}",
                items.join(",")
            )
        } else {
            one(0)
        };
        let bytes = text.into_bytes();
        let slots = find_all(&bytes, format!("{prefix}-{SLOT}").as_bytes())
            .into_iter()
            .map(|p| p + prefix.len() + 1)
            .collect();
        let user_slots = find_all(&bytes, USER_SLOT.as_bytes());
        Template {
            bytes,
            slots,
            user_slots,
            users,
            counter: 0,
        }
    }

    /// The next body, with fresh ids in every slot.
    pub fn next_body(&mut self) -> Bytes {
        for &at in &self.slots {
            self.counter += 1;
            let digits = format!("{:020}", self.counter);
            self.bytes[at..at + SLOT.len()].copy_from_slice(digits.as_bytes());
        }
        for &at in &self.user_slots {
            self.counter += 1;
            // A multiplicative hash scatters consecutive requests over the population.
            let user = self.counter.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.users;
            let digits = format!("{user:012}");
            self.bytes[at..at + USER_SLOT.len()].copy_from_slice(digits.as_bytes());
        }
        Bytes::copy_from_slice(&self.bytes)
    }
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}
