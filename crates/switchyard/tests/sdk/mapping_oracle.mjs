// Segment's own mapping-kit, as a test oracle: reads {"cases": [{"mapping": ..., "event": ...}]}
// on stdin and prints, for each case, {"ok": payload} or {"error": message} from
// @segment/actions-core's transform. Used by crates/switchyard/tests/oracle/mapping.rs.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const { transform } = require('@segment/actions-core');

const input = JSON.parse(readFileSync(0, 'utf8'));
const out = input.cases.map(({ mapping, event }) => {
  try {
    const payload = transform(mapping, event);
    // JSON.stringify drops undefined keys as Switchyard does.
    return { ok: payload === undefined ? null : JSON.parse(JSON.stringify(payload)) };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
});
process.stdout.write(JSON.stringify(out));
