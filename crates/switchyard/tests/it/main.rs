//! End-to-end tests through HTTP: a real server on a loopback port, a real data directory,
//! and the file destination as the receiver.

mod admin;
mod attacks;
mod chaos;
mod cli;
mod clock_driven;
mod conn;
mod corruption;
mod crash;
mod damage;
mod disk;
mod egress;
mod faults;
mod forward;
mod functions;
mod harness;
mod hostile;
mod ingest;
mod ingest_size;
mod isolation;
mod log_tail;
mod nats;
mod old_log;
mod profiles;
mod receiver;
mod replay_log;
mod sdk;
mod signing;
mod soak;
mod sources;
mod store_format;
mod stream;
mod warehouse;
mod webhook;
mod webhook_in;
