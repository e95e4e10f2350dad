//! Attribute macros that publish Courier events from a service's functions.
//!
//! No macro is exported yet; the crate exists so the workspace layout is final.
