//! `Message` and `Utf8Bytes`: what each accessor and conversion gives.

use ws_core::{Bytes, CloseCode, CloseFrame, Message, Utf8Bytes};

#[test]
fn utf8_bytes_converts_from_and_into_its_text_without_change() {
    let from_str = Utf8Bytes::from("κόσμε");
    let from_string = Utf8Bytes::from(String::from("κόσμε"));
    let from_static = Utf8Bytes::from_static("κόσμε");
    for t in [&from_str, &from_string, &from_static] {
        assert_eq!(t.as_str(), "κόσμε");
        assert_eq!(t.as_bytes(), "κόσμε".as_bytes());
        assert_eq!(&**t, "κόσμε", "derefs to the str");
        assert_eq!(t.len(), 10);
        assert!(*t == *"κόσμε");
        assert!(*t == "κόσμε");
        assert!(*t != "kosme");
        assert!(*t != *"kosme");
    }
    assert_eq!(from_str, from_string);
    assert_eq!(
        from_str.clone().into_bytes(),
        Bytes::from_static("κόσμε".as_bytes())
    );
    assert!(Utf8Bytes::new().is_empty());
    assert_eq!(Utf8Bytes::default(), Utf8Bytes::new());
}

#[test]
fn utf8_bytes_from_bytes_checks_the_encoding() {
    let ok = Utf8Bytes::try_from(Bytes::from_static(b"ok \xe2\x82\xac")).unwrap();
    assert_eq!(ok, "ok €");
    let err = Utf8Bytes::try_from(Bytes::from_static(b"ok \xe2\x82")).unwrap_err();
    assert_eq!(err.valid_up_to(), 3);
    let err = Utf8Bytes::try_from(Bytes::from_static(b"a\xffb")).unwrap_err();
    assert_eq!((err.valid_up_to(), err.error_len()), (1, Some(1)));
}

#[test]
fn utf8_bytes_prints_as_its_text() {
    let t = Utf8Bytes::from("say \"hi\"");
    assert_eq!(format!("{t}"), "say \"hi\"");
    assert_eq!(format!("{t:?}"), "\"say \\\"hi\\\"\"");
    assert_eq!(
        format!("{:?}", Message::text("x")),
        "Text(\"x\")",
        "a message's Debug shows the text"
    );
}

#[test]
fn only_text_and_binary_are_data_and_each_kind_has_its_payload() {
    let close = CloseFrame::new(CloseCode::NORMAL, "why");
    let cases = [
        (Message::text("t"), true, &b"t"[..]),
        (Message::binary(&b"b"[..]), true, b"b"),
        (Message::Ping(Bytes::from_static(b"pi")), false, b"pi"),
        (Message::Pong(Bytes::from_static(b"po")), false, b"po"),
        (Message::Close(Some(close)), false, b"why"),
        (Message::Close(None), false, b""),
    ];
    for (m, data, payload) in cases {
        assert_eq!(m.is_data(), data, "{m:?}");
        assert_eq!(m.payload(), payload, "{m:?}");
    }
}
