use super::*;

fn server(cfg: DeflateConfig, headers: &[&str]) -> Option<(DeflateParams, String)> {
    cfg.accept(headers.iter().map(|h| h.as_bytes()))
}

fn on() -> DeflateConfig {
    DeflateConfig::enabled()
}

fn answer(cfg: DeflateConfig, headers: &[&str]) -> Result<Option<DeflateParams>, HandshakeError> {
    cfg.check_answer(headers.iter().map(|h| h.as_bytes()))
}

fn params(snct: bool, cnct: bool, smwb: Option<u8>, cmwb: Option<u8>) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: snct,
        client_no_context_takeover: cnct,
        server_max_window_bits: smwb,
        client_max_window_bits: cmwb,
    }
}

// ------------------------------------------------------------ server side

#[test]
fn disabled_server_declines_everything() {
    assert_eq!(
        server(DeflateConfig::default(), &["permessage-deflate"]),
        None
    );
    assert!(!DeflateConfig::default().is_enabled());
}

#[test]
fn plain_offer_is_accepted_with_nothing_added() {
    let (p, h) = server(on(), &["permessage-deflate"]).unwrap();
    assert_eq!(p, DeflateParams::default());
    assert_eq!(h, "permessage-deflate");
}

#[test]
fn extension_names_and_parameter_names_are_case_insensitive() {
    let (p, _) = server(on(), &["PerMessage-Deflate; Server_No_Context_Takeover"]).unwrap();
    assert!(p.server_no_context_takeover);
}

#[test]
fn server_no_context_takeover_requested_is_answered() {
    let (p, h) = server(on(), &["permessage-deflate; server_no_context_takeover"]).unwrap();
    assert_eq!(p, params(true, false, None, None));
    assert_eq!(h, "permessage-deflate; server_no_context_takeover");
}

#[test]
fn server_no_context_takeover_is_answered_unasked_when_configured() {
    let cfg = on().server_no_context_takeover(true);
    let (p, h) = server(cfg, &["permessage-deflate"]).unwrap();
    assert_eq!(p, params(true, false, None, None));
    assert_eq!(h, "permessage-deflate; server_no_context_takeover");
}

#[test]
fn client_no_context_takeover_is_echoed_or_asked_for() {
    let (p, _) = server(on(), &["permessage-deflate; client_no_context_takeover"]).unwrap();
    assert_eq!(p, params(false, true, None, None));
    let cfg = on().client_no_context_takeover(true);
    let (p, h) = server(cfg, &["permessage-deflate"]).unwrap();
    assert_eq!(p, params(false, true, None, None));
    assert_eq!(h, "permessage-deflate; client_no_context_takeover");
}

#[test]
fn server_max_window_bits_takes_the_smaller_of_asked_and_configured() {
    let (p, h) = server(on(), &["permessage-deflate; server_max_window_bits=10"]).unwrap();
    assert_eq!(p.server_max_window_bits, Some(10));
    assert_eq!(h, "permessage-deflate; server_max_window_bits=10");
    let cfg = on().server_max_window_bits(11);
    let (p, _) = server(cfg, &["permessage-deflate; server_max_window_bits=13"]).unwrap();
    assert_eq!(p.server_max_window_bits, Some(11));
    let (p, _) = server(cfg, &["permessage-deflate; server_max_window_bits=9"]).unwrap();
    assert_eq!(p.server_max_window_bits, Some(9));
    // Announced unasked when below 15.
    let (p, _) = server(cfg, &["permessage-deflate"]).unwrap();
    assert_eq!(p.server_max_window_bits, Some(11));
}

#[test]
fn server_max_window_bits_8_is_accepted_and_limits_our_compressor() {
    let (p, h) = server(on(), &["permessage-deflate; server_max_window_bits=8"]).unwrap();
    assert_eq!(p.server_max_window_bits, Some(8));
    assert_eq!(h, "permessage-deflate; server_max_window_bits=8");
}

#[test]
fn client_max_window_bits_without_value_is_allowed_in_an_offer() {
    let (p, h) = server(on(), &["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!(p.client_max_window_bits, None);
    assert_eq!(h, "permessage-deflate");
    let cfg = on().client_max_window_bits(10);
    let (p, h) = server(cfg, &["permessage-deflate; client_max_window_bits"]).unwrap();
    assert_eq!(p.client_max_window_bits, Some(10));
    assert_eq!(h, "permessage-deflate; client_max_window_bits=10");
}

#[test]
fn client_max_window_bits_is_only_answered_when_offered() {
    let cfg = on().client_max_window_bits(10);
    let (p, h) = server(cfg, &["permessage-deflate"]).unwrap();
    assert_eq!(p.client_max_window_bits, None);
    assert_eq!(h, "permessage-deflate");
}

#[test]
fn client_max_window_bits_with_a_value_is_lowered_to_the_policy_or_echoed() {
    let cfg = on().client_max_window_bits(10);
    let (p, _) = server(cfg, &["permessage-deflate; client_max_window_bits=12"]).unwrap();
    assert_eq!(p.client_max_window_bits, Some(10));
    let (p, _) = server(cfg, &["permessage-deflate; client_max_window_bits=9"]).unwrap();
    assert_eq!(p.client_max_window_bits, Some(9));
    let (p, _) = server(on(), &["permessage-deflate; client_max_window_bits=15"]).unwrap();
    assert_eq!(p.client_max_window_bits, None);
}

#[test]
fn server_never_asks_for_client_max_window_bits_8() {
    let cfg = on().client_max_window_bits(9);
    let (p, h) = server(cfg, &["permessage-deflate; client_max_window_bits=8"]).unwrap();
    assert_eq!(p.client_max_window_bits, None);
    assert_eq!(h, "permessage-deflate");
    // And the policy cannot be set to 8.
    assert_eq!(on().client_max_window_bits(8).client_max_window_bits, 9);
    assert_eq!(on().server_max_window_bits(8).server_max_window_bits, 9);
    assert_eq!(on().server_max_window_bits(99).server_max_window_bits, 15);
}

#[test]
fn quoted_values_are_unquoted() {
    let (p, _) = server(on(), &["permessage-deflate; server_max_window_bits=\"10\""]).unwrap();
    assert_eq!(p.server_max_window_bits, Some(10));
    let (p, _) = server(
        on(),
        &["permessage-deflate; server_max_window_bits=\"1\\0\""],
    )
    .unwrap();
    assert_eq!(p.server_max_window_bits, Some(10));
    // A quoted comma does not split the list, and the offer is declined for
    // its bad value; the next one is taken.
    let (p, _) = server(
        on(),
        &["permessage-deflate; server_max_window_bits=\"1,0\", permessage-deflate; server_max_window_bits=12"],
    )
    .unwrap();
    assert_eq!(p.server_max_window_bits, Some(12));
}

#[test]
fn bad_window_values_decline_the_offer() {
    for bad in [
        "7", "16", "0", "08", "+9", "9.0", "", "x", "\"\"", "100", "\"7\"", "-1",
    ] {
        for p in ["server_max_window_bits", "client_max_window_bits"] {
            let h = format!("permessage-deflate; {p}={bad}");
            assert_eq!(server(on(), &[&h]), None, "{h}");
        }
    }
    assert_eq!(
        server(on(), &["permessage-deflate; server_max_window_bits"]),
        None
    );
}

#[test]
fn flags_with_values_decline_the_offer() {
    for h in [
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=\"x\"",
    ] {
        assert_eq!(server(on(), &[h]), None, "{h}");
    }
}

#[test]
fn repeated_parameters_decline_the_offer() {
    for h in [
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
    ] {
        assert_eq!(server(on(), &[h]), None, "{h}");
    }
}

#[test]
fn unknown_parameters_decline_the_offer() {
    assert_eq!(server(on(), &["permessage-deflate; foo"]), None);
    assert_eq!(server(on(), &["permessage-deflate; mux=1"]), None);
}

#[test]
fn the_first_acceptable_offer_wins_in_one_header_and_across_headers() {
    let (p, _) = server(
        on(),
        &["permessage-deflate; foo, permessage-deflate; server_max_window_bits=10, permessage-deflate"],
    )
    .unwrap();
    assert_eq!(p.server_max_window_bits, Some(10));
    let (p, _) = server(
        on(),
        &[
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=99",
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
        ],
    )
    .unwrap();
    assert_eq!(p, params(false, true, None, None));
}

#[test]
fn malformed_elements_are_skipped() {
    for h in [
        "permessage-deflate; server_max_window_bits=\"10",
        "permessage deflate",
        "; server_no_context_takeover",
        "permessage-deflate; =10",
        "permessage-deflate; a b",
    ] {
        assert_eq!(server(on(), &[h]), None, "{h}");
    }
    let (p, _) = server(on(), &["permessage deflate, ,permessage-deflate"]).unwrap();
    assert_eq!(p, DeflateParams::default());
}

#[test]
fn other_extensions_are_ignored() {
    assert_eq!(server(on(), &["x-foo; a=1, deflate-frame"]), None);
}

// ------------------------------------------------------------ client side

#[test]
fn client_offers_by_its_policy() {
    assert_eq!(DeflateConfig::default().offer(), None);
    assert_eq!(
        on().offer().unwrap(),
        "permessage-deflate; client_max_window_bits"
    );
    let cfg = on()
        .server_no_context_takeover(true)
        .client_no_context_takeover(true)
        .server_max_window_bits(10)
        .client_max_window_bits(12);
    assert_eq!(
        cfg.offer().unwrap(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=12"
    );
}

#[test]
fn our_offer_is_accepted_by_our_server() {
    let cfg = on()
        .server_no_context_takeover(true)
        .server_max_window_bits(10)
        .client_max_window_bits(12);
    let offer = cfg.offer().unwrap();
    let (p, header) = server(on(), &[&offer]).unwrap();
    assert_eq!(answer(cfg, &[&header]).unwrap(), Some(p));
    assert_eq!(p, params(true, false, Some(10), Some(12)));
}

#[test]
fn no_answer_means_no_compression() {
    assert_eq!(answer(on(), &[]).unwrap(), None);
    assert_eq!(answer(on(), &[""]).unwrap(), None);
    assert_eq!(answer(DeflateConfig::default(), &[" "]).unwrap(), None);
}

#[test]
fn an_answer_not_offered_fails() {
    let e = answer(DeflateConfig::default(), &["permessage-deflate"]).unwrap_err();
    assert!(matches!(&e, HandshakeError::ExtensionNotOffered(x) if &**x == "permessage-deflate"));
    let e = answer(on(), &["x-webkit-deflate-frame"]).unwrap_err();
    assert!(matches!(e, HandshakeError::ExtensionNotOffered(_)));
    let e = answer(on(), &["permessage-deflate", "permessage-deflate"]).unwrap_err();
    assert!(matches!(e, HandshakeError::ExtensionNotOffered(_)));
    let e = answer(on(), &["permessage-deflate, permessage-deflate"]).unwrap_err();
    assert!(matches!(e, HandshakeError::ExtensionNotOffered(_)));
}

#[test]
fn answer_parameters_are_taken() {
    let p = answer(
        on(),
        &[
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
           server_max_window_bits=9; client_max_window_bits=10",
        ],
    )
    .unwrap();
    assert_eq!(p, Some(params(true, true, Some(9), Some(10))));
    // An unrequested server limit is fine, including 8.
    let p = answer(on(), &["permessage-deflate; server_max_window_bits=8"]).unwrap();
    assert_eq!(p, Some(params(false, false, Some(8), None)));
    // So is client_max_window_bits=8 (we then send uncompressed).
    let p = answer(on(), &["permessage-deflate; client_max_window_bits=8"]).unwrap();
    assert_eq!(p, Some(params(false, false, None, Some(8))));
}

#[test]
fn requested_client_no_context_takeover_holds_even_unanswered() {
    let cfg = on().client_no_context_takeover(true);
    let p = answer(cfg, &["permessage-deflate"]).unwrap().unwrap();
    assert!(p.client_no_context_takeover);
}

#[test]
fn bad_answers_fail() {
    let invalid = |cfg: DeflateConfig, h: &str| {
        let e = answer(cfg, &[h]).unwrap_err();
        assert!(matches!(e, HandshakeError::InvalidExtension(_)), "{h}: {e}");
    };
    for h in [
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=1; server_max_window_bits=9",
        // Without a value only in an offer.
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=016",
        "permessage-deflate; client_max_window_bits=\"9",
        "permessage deflate",
    ] {
        invalid(on(), h);
    }
    // Requested but not answered, or answered above the request.
    let cfg = on().server_no_context_takeover(true);
    invalid(cfg, "permessage-deflate");
    let cfg = on().server_max_window_bits(10);
    invalid(cfg, "permessage-deflate");
    invalid(cfg, "permessage-deflate; server_max_window_bits=11");
    assert_eq!(
        answer(cfg, &["permessage-deflate; server_max_window_bits=10"]).unwrap(),
        Some(params(false, false, Some(10), None))
    );
    let cfg = on().client_max_window_bits(10);
    invalid(cfg, "permessage-deflate; client_max_window_bits=11");
    assert_eq!(
        answer(cfg, &["permessage-deflate; client_max_window_bits=10"]).unwrap(),
        Some(params(false, false, None, Some(10)))
    );
}

#[test]
fn settings_are_readable_and_clamped() {
    let cfg = on().level(12).threshold(7).enable(false);
    assert_eq!(cfg.get_level(), 9);
    assert_eq!(cfg.get_threshold(), 7);
    assert!(!cfg.is_enabled());
    assert_eq!(DeflateConfig::disabled(), DeflateConfig::default());
}

#[test]
fn response_header_lists_every_parameter() {
    assert_eq!(
        params(true, true, Some(9), Some(10)).response_header(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=9; client_max_window_bits=10"
    );
}
