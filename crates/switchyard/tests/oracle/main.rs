//! Segment's own code as the oracle for Switchyard's trigger conditions and mappings: the
//! npm packages `@segment/destination-subscriptions` (FQL `parseFql` / `validate`) and
//! `@segment/actions-core` (mapping-kit `transform`), run by small node scripts in
//! `tests/sdk/`, which `.ci/run` installs with `npm ci` (dev dependencies; never shipped).
//! Without node or the packages these tests skip loudly, unless
//! `SWITCHYARD_REQUIRE_SERVICES=1`, which makes them fail.

mod fql;
mod fql_sweep;
mod mapping;
mod node;
