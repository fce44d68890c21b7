// Sends one event of each type with @segment/analytics-node to a Switchyard server.
// usage: node send_node.mjs HOST WRITE_KEY PREFIX   (message ids are PREFIX-<type>)
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, prefix] = process.argv.slice(2)
const errors = []
const analytics = new Analytics({ writeKey, host, flushAt: 3, maxRetries: 2 })
analytics.on('error', (e) => errors.push(String(e && (e.reason || e.code || e))))
const userId = `${prefix}-user`
analytics.track({ userId, event: 'Order Completed', properties: { revenue: 12.5 }, messageId: `${prefix}-track`, timestamp: new Date('2024-01-01T00:00:00Z') })
analytics.identify({ userId, traits: { email: 'node@example.com' }, messageId: `${prefix}-identify` })
analytics.page({ userId, category: 'Docs', name: 'Home', properties: { path: '/' }, messageId: `${prefix}-page` })
analytics.group({ userId, groupId: 'g-1', traits: { name: 'Acme' }, messageId: `${prefix}-group` })
analytics.alias({ userId, previousId: `${prefix}-anon`, messageId: `${prefix}-alias` })
await analytics.closeAndFlush({ timeout: 20000 })
if (errors.length) {
  console.error('SDK errors:', errors)
  process.exit(1)
}
