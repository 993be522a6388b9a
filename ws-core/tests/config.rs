//! `Config`: defaults, and every setter read back through its getter.

use std::time::Duration;
use ws_core::Config;

#[test]
fn defaults_are_the_documented_ones() {
    let c = Config::default();
    assert_eq!(c.get_handshake_timeout(), Duration::from_secs(10));
    assert_eq!(c.get_close_timeout(), Duration::from_secs(5));
    assert_eq!(c.get_max_message_size(), 64 << 20);
    assert_eq!(c.get_write_buffer_limit(), 1 << 20);
}

#[test]
fn setters_are_read_back_by_the_getters() {
    let c = Config::default()
        .handshake_timeout(Duration::from_millis(1500))
        .close_timeout(Duration::from_millis(250))
        .max_message_size(12_345)
        .write_buffer_limit(0);
    assert_eq!(c.get_handshake_timeout(), Duration::from_millis(1500));
    assert_eq!(c.get_close_timeout(), Duration::from_millis(250));
    assert_eq!(c.get_max_message_size(), 12_345);
    assert_eq!(c.get_write_buffer_limit(), 1, "at least one byte");
}
