// Segment's own FQL, as a test oracle: reads {"cases": [{"fql": "...", "events": [...]}]}
// on stdin and prints, for each case, Segment's parse (or its error) and whether each event
// matches. Used by crates/switchyard/tests/oracle/fql.rs; not part of Switchyard itself.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const { parseFql, validate } = require('@segment/destination-subscriptions');

const input = JSON.parse(readFileSync(0, 'utf8'));
const out = input.cases.map(({ fql, events }) => {
  const ast = parseFql(fql);
  return {
    error: ast.error ? String(ast.error.message ?? ast.error) : null,
    ast: ast.error ? null : ast,
    results: events.map((e) => validate(ast, e)),
  };
});
process.stdout.write(JSON.stringify(out));
