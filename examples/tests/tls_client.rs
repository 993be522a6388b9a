//! wss:// clients on every runtime (tokio, async-std, smol, blocking)
//! against a TLS echo server written in the test with rustls over std
//! (`tls_echo`), with certificates made at run time from a test CA:
//! `connect_tls` and `Client::with_tls` exchange text and binary, whole and
//! split, and close with TLS close_notify; a client that trusts only the
//! test CA refuses a certificate for another name and one from another CA
//! with distinct errors; a plain server and a silent one fail clearly;
//! `ws-client --ca` works through pipes.
//!
//! The body of each test is written once in the macro below: the async
//! runtimes run it with `.await` after each call, the blocking one without.

#[macro_use]
mod support;
mod tls_echo;

use std::time::{Duration, Instant};

use examples::Runtime;
use support::spawned::ws_client;
use tls_echo::{Ending, TestCa, TlsEchoServer, not_tls_server};
use ws_core::rt::tls::{TlsError, TlsErrorKind};

/// The kind of the TLS error inside `err` (panics if it is not one).
fn tls_kind(err: &ws_core::Error) -> TlsErrorKind {
    match TlsError::find(err) {
        Some(tls) => tls.kind(),
        None => panic!("not a TLS error: {err:?}"),
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// A certificate for every name a test connects by.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

macro_rules! tls_client {
    (
        $name:ident,
        rt = $($rt:ident)::+,
        krate = $krate:ident,
        runtime = $runtime:expr,
        block_on = $block_on:expr,
        [$($aw:tt)*]
    ) => {
        mod $name {
            use super::*;
            use $($rt)::+::{Client, connect_tls, connect_with};
            use $krate::{CloseCode, Config, Error, Message};

            #[test]
            fn wss_round_trip_whole_split_and_client() {
                let ca = TestCa::new("ws test CA");
                let server = TlsEchoServer::start(&ca.issue(&LOCAL_NAMES));
                #[allow(clippy::redundant_closure_call)]
                $block_on(async {
                    // The stream, by IP address (an IP server name).
                    let (mut ws, response) =
                        connect_tls(&server.url("/"), Config::default(), ca.client_config())
                            $($aw)*
                            .unwrap();
                    assert_eq!(response.status(), 101);
                    assert!(ws.get_ref().is_tls());
                    ws.send(Message::text("hello")) $($aw)*.unwrap();
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), Message::text("hello"));
                    let big = Message::binary(payload(1 << 20));
                    ws.send(big.clone()) $($aw)*.unwrap();
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), big);

                    // Split halves over one TLS session.
                    let (mut reader, mut writer) = ws.split();
                    writer.send_text("split") $($aw)*.unwrap();
                    writer.send_binary(&[1, 2, 3]) $($aw)*.unwrap();
                    assert_eq!(reader.recv() $($aw)*.unwrap().unwrap(), Message::text("split"));
                    assert_eq!(
                        reader.recv() $($aw)*.unwrap().unwrap(),
                        Message::binary(vec![1u8, 2, 3])
                    );
                    writer.send(big.clone()) $($aw)*.unwrap();
                    assert_eq!(reader.recv() $($aw)*.unwrap().unwrap(), big);
                    writer.close(CloseCode::NORMAL, "bye") $($aw)*.unwrap();
                    assert!(matches!(reader.recv() $($aw)*, Some(Ok(Message::Close(_)))));
                    assert!(reader.recv() $($aw)*.is_none());

                    // The client, by DNS name.
                    let url = format!("wss://localhost:{}/client", server.addr().port());
                    let mut client = Client::new(&url).unwrap().with_tls(ca.client_config());
                    client.connect() $($aw)*.unwrap();
                    client.send_message("hi") $($aw)*.unwrap();
                    assert_eq!(client.recv() $($aw)*.unwrap().unwrap(), Message::text("hi"));
                    client.send_binary(&[9, 8]) $($aw)*.unwrap();
                    assert_eq!(
                        client.recv() $($aw)*.unwrap().unwrap(),
                        Message::binary(vec![9u8, 8])
                    );
                    client.close() $($aw)*.unwrap();
                    assert!(client.recv() $($aw)*.is_none());
                });
                // Both ended the closing handshake with TLS close_notify.
                assert_eq!(
                    server.wait_endings(2),
                    [Ending::CloseNotify, Ending::CloseNotify]
                );
            }

            #[test]
            fn tls_failures_are_distinct_errors() {
                let ca = TestCa::new("ws test CA");
                let other = TestCa::new("another CA");
                let wrong_name = TlsEchoServer::start(&ca.issue(&["wrong.example"]));
                let foreign = TlsEchoServer::start(&other.issue(&LOCAL_NAMES));
                let good = TlsEchoServer::start(&ca.issue(&LOCAL_NAMES));
                let http = not_tls_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                let silent = not_tls_server(b"");
                let trust_ca = || ca.client_config();
                #[allow(clippy::redundant_closure_call)]
                $block_on(async {
                    let config = Config::default;
                    let err = connect_tls(&wrong_name.url("/"), config(), trust_ca())
                        $($aw)*
                        .unwrap_err();
                    assert_eq!(tls_kind(&err), TlsErrorKind::NameMismatch, "{err}");

                    let err = connect_tls(&foreign.url("/"), config(), trust_ca())
                        $($aw)*
                        .unwrap_err();
                    assert_eq!(tls_kind(&err), TlsErrorKind::UntrustedCertificate, "{err}");
                    assert!(err.to_string().contains("not trusted"), "{err}");

                    // The Client reports the same.
                    let mut client = Client::new(&foreign.url("/")).unwrap().with_tls(trust_ca());
                    let err = client.connect() $($aw)*.unwrap_err();
                    assert_eq!(tls_kind(&err), TlsErrorKind::UntrustedCertificate, "{err}");

                    // The default roots do not include the test CA.
                    let err = connect_with(&good.url("/"), config()) $($aw)*.unwrap_err();
                    assert_eq!(tls_kind(&err), TlsErrorKind::UntrustedCertificate, "{err}");

                    // Plain HTTP where TLS was expected.
                    let err = connect_tls(&format!("wss://{http}/"), config(), trust_ca())
                        $($aw)*
                        .unwrap_err();
                    assert_eq!(tls_kind(&err), TlsErrorKind::Protocol, "{err}");

                    // A server that never answers the ClientHello: the
                    // handshake timeout bounds the TLS handshake.
                    let quick = config().handshake_timeout(Duration::from_millis(300));
                    let started = Instant::now();
                    let err = connect_tls(&format!("wss://{silent}/"), quick, trust_ca())
                        $($aw)*
                        .unwrap_err();
                    assert!(
                        matches!(err, Error::Timeout(ws_core::TimeoutKind::Handshake)),
                        "{err:?}"
                    );
                    assert!(started.elapsed() < Duration::from_secs(5));

                    // After all that, the right certificate still works.
                    let (mut ws, _) = connect_tls(&good.url("/"), config(), trust_ca())
                        $($aw)*
                        .unwrap();
                    ws.send(Message::text("still fine")) $($aw)*.unwrap();
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), Message::text("still fine"));
                    ws.close(CloseCode::NORMAL, "") $($aw)*.unwrap();

                    // Other schemes stay a clear URL error.
                    let err = Client::new("https://127.0.0.1:1/").unwrap_err();
                    assert!(matches!(err, Error::Url(_)), "{err:?}");
                    assert!(err.to_string().contains("expected ws:// or wss://"), "{err}");
                });
            }

            #[test]
            fn tcp_ending_without_close_notify_is_an_error_only_before_the_closing_handshake() {
                let ca = TestCa::new("ws test CA");
                let server = TlsEchoServer::start(&ca.issue(&LOCAL_NAMES));
                server.skip_close_notify();
                let url = server.url("/");
                let connect = || connect_tls(&url, Config::default(), ca.client_config());
                #[allow(clippy::redundant_closure_call)]
                $block_on(async {
                    // After both close frames nothing can be cut off: a server
                    // that then ends TCP without close_notify closes cleanly,
                    // whole or split.
                    let (mut ws, _) = connect() $($aw)*.unwrap();
                    ws.send(Message::text("x")) $($aw)*.unwrap();
                    assert_eq!(ws.recv() $($aw)*.unwrap().unwrap(), Message::text("x"));
                    ws.close(CloseCode::NORMAL, "") $($aw)*.unwrap();
                    let (ws, _) = connect() $($aw)*.unwrap();
                    let (mut reader, mut writer) = ws.split();
                    writer.close(CloseCode::NORMAL, "") $($aw)*.unwrap();
                    assert!(matches!(reader.recv() $($aw)*, Some(Ok(Message::Close(_)))));
                    assert!(reader.recv() $($aw)*.is_none());

                    // Before it, the missing close_notify is reported.
                    let (mut ws, _) = connect() $($aw)*.unwrap();
                    ws.send(Message::text(tls_echo::DROP_NOW)) $($aw)*.unwrap();
                    match ws.recv() $($aw)* {
                        Some(Err(Error::Io(e))) => {
                            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
                            assert!(e.to_string().contains("close_notify"), "{e}");
                        }
                        other => panic!("{other:?}"),
                    }
                });
            }

            #[test]
            fn ws_client_trusts_ca_files_through_pipes() {
                super::ws_client_through_pipes($runtime);
            }
        }
    };
}

on_every_runtime!(tls_client);

/// `ws-client wss://... --ca FILE` echoes through pipes; without `--ca` it
/// refuses the test CA's certificate (exit 1, a clear message); with
/// `--insecure` it connects and warns.
fn ws_client_through_pipes(rt: Runtime) {
    let ca = TestCa::new("ws test CA");
    let server = TlsEchoServer::start(&ca.issue(&LOCAL_NAMES));
    let pem = ca.pem_file();
    let ca_file = pem.0.to_str().unwrap();
    let url = format!("wss://localhost:{}/", server.addr().port());
    let lines = ["hello over TLS", "κόσμε ☃"];

    let (ok, got, stderr) = ws_client(
        &[&url, "--runtime", rt.name(), "--ca", ca_file],
        &[],
        &lines,
    );
    assert!(ok, "{stderr}");
    assert_eq!(got, lines, "{stderr}");
    assert!(!stderr.contains("WARNING"), "{stderr}");

    let (ok, got, stderr) = ws_client(&[&url, "--runtime", rt.name()], &[], &lines);
    assert!(!ok);
    assert!(got.is_empty(), "{got:?}");
    assert!(stderr.contains("certificate is not trusted"), "{stderr}");

    let (ok, got, stderr) = ws_client(&[&url, "--runtime", rt.name(), "--insecure"], &[], &lines);
    assert!(ok, "{stderr}");
    assert_eq!(got, lines, "{stderr}");
    assert!(stderr.contains("WARNING: --insecure"), "{stderr}");

    // Two sessions ended with close_notify; the refused one failed.
    let endings = server.wait_endings(3);
    let notified = endings.iter().filter(|e| **e == Ending::CloseNotify);
    assert_eq!(notified.count(), 2, "{endings:?}");
}
