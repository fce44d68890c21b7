//! The delivery engine (destinations that call out over the network).

pub mod store;
