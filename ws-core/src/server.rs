//! Layer 3: the `Server` the runtime crates share, as sans-IO application
//! logic: HTTP routing and the test page ([`site`]), one server-side
//! connection's behaviour ([`session::ServerSession`]: echo or broadcast,
//! back-pressure, closing), and the broadcast registry with its flow
//! control ([`hub::Hub`]). Nothing here is RFC 6455; it is what the demo
//! chat/echo server does with it.
//!
//! Behind the `server` cargo feature (on by default).

pub mod hub;
pub mod session;
pub mod site;
