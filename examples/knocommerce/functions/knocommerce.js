/**
* onRequest is called whenever the webhook sends data to this Function's URL.
*/
async function onRequest(request, settings) {
const data = request.json(); // Parse incoming JSON payload

// Determine an event name. If the payload has no explicit name, use a default.
const eventName = data.event || data.type || "KnoCommerce Webhook Event";

// Determine a user identifier for the event
// Use an ID or email from the payload if available (KnoCommerce may provide a customer id, email, etc.)
const userId = data.customerId || data.userId || data.email || data.id || null;

// Send the event into Segment
Segment.track({
event: eventName, // Use the derived or default event name
userId: userId || undefined, // userId is optional but recommended; undefined if not available
anonymousId: userId ? undefined : "knocommerce-anon", // if no userId, use an anonymousId
properties: data // attach the entire payload as event properties
});
}
