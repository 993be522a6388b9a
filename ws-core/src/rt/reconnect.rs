//! When a client reconnects, written once for every adapter's `Client`:
//! exponential backoff with jitter and a cap ([`Backoff`]), and which
//! endings are final ([`Reconnect::is_final_error`],
//! [`Reconnect::is_final_close`]). The adapters only sleep and connect.
//!
//! Jitter is "equal jitter": each delay is drawn uniformly from the upper
//! half of the exponential step, so a fleet of clients that lost the same
//! server spreads its reconnects out instead of arriving in waves, while
//! no client retries much sooner than the step says.

use std::time::{Duration, Instant};

use crate::close::CloseCode;
use crate::error::Error;
use crate::handshake::HandshakeError;
use crate::proxy::ProxyError;

/// A reconnecting client's policy. Defaults: first delay 100 ms, doubling
/// up to 30 s, attempts unlimited, a connection counts as stable after 5 s,
/// no close code final.
///
/// A connection that ends before it was [stable](Self::stable_after) does
/// not reset the backoff: the next attempt waits the next step first, so a
/// server that accepts and closes at once is not hammered.
///
/// A refusal at the upgrade with a 4xx status (401, 403, 404, ...) always
/// ends the retries: the server answered, and asking again will not change
/// its mind. So does a close with a code marked
/// [`final_close_code`](Self::final_close_code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    initial_delay: Duration,
    max_delay: Duration,
    max_attempts: Option<u32>,
    stable_after: Duration,
    final_codes: Vec<CloseCode>,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            initial_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(30),
            max_attempts: None,
            stable_after: Duration::from_secs(5),
            final_codes: Vec::new(),
        }
    }
}

impl Reconnect {
    /// The default policy.
    pub fn new() -> Self {
        Self::default()
    }

    /// The step before the first retry (each later step doubles, up to
    /// [`max_delay`](Self::max_delay)).
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The cap on one step.
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Gives up after `attempts` failed connection attempts in a row (so
    /// at most `attempts - 1` waits; 0 behaves as 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// How long a connection must last to count as stable: only then does
    /// its end start the next outage from the first step.
    pub fn stable_after(mut self, d: Duration) -> Self {
        self.stable_after = d;
        self
    }

    /// A close with `code` from the server ends the client for good (for
    /// example 1008 for a banned user, or an application code such as 4001).
    pub fn final_close_code(mut self, code: CloseCode) -> Self {
        self.final_codes.push(code);
        self
    }

    /// Whether a failed connection attempt is final: the server refused the
    /// upgrade with a 4xx status, the HTTP proxy refused the tunnel with
    /// one (407: our credentials; 403: the target is not allowed; a 5xx
    /// such as 502 is retried), the URL itself is unusable, or (with TLS)
    /// the server's certificate was refused or our TLS configuration is
    /// unusable (`TlsErrorKind::is_final`, with the `tls` feature):
    /// waiting does not change a certificate, and retrying would only hide
    /// the error.
    pub fn is_final_error(&self, e: &Error) -> bool {
        match e {
            Error::Handshake(HandshakeError::UnexpectedStatus(r)) => {
                (400..500).contains(&r.status())
            }
            Error::Proxy(p) => match p.status() {
                Some(status) => (400..500).contains(&status),
                // A proxy that cannot be used (a SOCKS URL) stays so; a
                // garbled or cut-off answer may not.
                None => matches!(
                    p,
                    ProxyError::UnsupportedScheme(_)
                        | ProxyError::InvalidUrl(_)
                        | ProxyError::Env(_)
                ),
            },
            Error::Url(_) => true,
            #[cfg(feature = "tls")]
            Error::Io(_) => crate::rt::tls::TlsError::find(e).is_some_and(|t| t.kind().is_final()),
            _ => false,
        }
    }

    /// Whether the server closing with `code` is final.
    pub fn is_final_close(&self, code: CloseCode) -> bool {
        self.final_codes.contains(&code)
    }

    /// A backoff that follows this policy.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            policy: self.clone(),
            attempt: 0,
            connected_at: None,
        }
    }
}

/// The delays between attempts of one outage. [`reset`](Self::reset) it
/// once connected, so the next outage starts from the first step.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: Reconnect,
    attempt: u32,
    /// When the last attempt succeeded (the connection that may end next).
    connected_at: Option<Instant>,
}

impl Backoff {
    /// The policy.
    pub fn policy(&self) -> &Reconnect {
        &self.policy
    }

    /// Failed attempts so far in this outage.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Counts a failed attempt and returns how long to wait before the
    /// next, or `None` once the attempts are used up. `unit` in `[0, 1)`
    /// places the delay in the upper half of the step (pass
    /// [`random_unit`] outside tests).
    pub fn next_delay_with(&mut self, unit: f64) -> Option<Duration> {
        if self
            .policy
            .max_attempts
            .is_some_and(|max| self.attempt + 1 >= max)
        {
            return None;
        }
        let step = self
            .policy
            .initial_delay
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.policy.max_delay);
        self.attempt += 1;
        Some(step.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0)))
    }

    /// [`next_delay_with`](Self::next_delay_with) a random unit.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.next_delay_with(random_unit())
    }

    /// Starts over from the first step.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// An attempt succeeded at `now`.
    pub fn connected(&mut self, now: Instant) {
        self.connected_at = Some(now);
    }

    /// Before connecting at `now`: how long to wait first. Nothing for the
    /// first connection or after a stable one (whose end resets the steps);
    /// the next step after a connection that ended before it was stable.
    /// `None` once the attempts are used up.
    pub fn before_connect(&mut self, now: Instant) -> Option<Duration> {
        match self.connected_at.take() {
            None => Some(Duration::ZERO),
            Some(at) if now.saturating_duration_since(at) >= self.policy.stable_after => {
                self.reset();
                Some(Duration::ZERO)
            }
            Some(_) => self.next_delay(),
        }
    }
}

/// A uniformly random number in `[0, 1)`.
pub fn random_unit() -> f64 {
    rand::random::<f64>()
}

/// Connects with `connect` until it succeeds, the failure is final
/// ([`Reconnect::is_final_error`]) or the attempts are used up, sleeping
/// `sleep(delay)` (the runtime's timer) between attempts. After a
/// connection that ended before it was stable it first waits the next step
/// ([`Backoff::before_connect`]). Every async adapter's reconnecting
/// `Client` is this loop.
///
/// # Errors
///
/// The last attempt's error.
pub async fn connect_with_retries<T, C, CF, S, SF>(
    backoff: &mut Backoff,
    mut connect: C,
    mut sleep: S,
) -> Result<T, Error>
where
    C: FnMut() -> CF,
    CF: Future<Output = Result<T, Error>>,
    S: FnMut(Duration) -> SF,
    SF: Future<Output = ()>,
{
    match backoff.before_connect(Instant::now()) {
        Some(Duration::ZERO) => {}
        Some(wait) => sleep(wait).await,
        None => return Err(Error::Closed),
    }
    loop {
        match connect().await {
            Ok(t) => {
                backoff.connected(Instant::now());
                return Ok(t);
            }
            Err(e) if backoff.policy().is_final_error(&e) => return Err(e),
            Err(e) => match backoff.next_delay() {
                Some(delay) => sleep(delay).await,
                None => return Err(e),
            },
        }
    }
}

/// The blocking form of [`connect_with_retries`], for ws-blocking.
///
/// # Errors
///
/// The last attempt's error.
pub fn connect_with_retries_blocking<T>(
    backoff: &mut Backoff,
    mut connect: impl FnMut() -> Result<T, Error>,
) -> Result<T, Error> {
    match backoff.before_connect(Instant::now()) {
        Some(Duration::ZERO) => {}
        Some(wait) => std::thread::sleep(wait),
        None => return Err(Error::Closed),
    }
    loop {
        match connect() {
            Ok(t) => {
                backoff.connected(Instant::now());
                return Ok(t);
            }
            Err(e) if backoff.policy().is_final_error(&e) => return Err(e),
            Err(e) => match backoff.next_delay() {
                Some(delay) => std::thread::sleep(delay),
                None => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::ClientHandshake;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn steps_double_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let mut b = Reconnect::new()
            .initial_delay(ms(100))
            .max_delay(ms(1000))
            .backoff();
        let top: Vec<_> = (0..6).map(|_| b.next_delay_with(1.0).unwrap()).collect();
        assert_eq!(
            top,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert_eq!(b.next_delay_with(0.0), Some(ms(50)), "half the first step");
        for _ in 0..4 {
            b.next_delay();
        }
        for _ in 0..100 {
            let d = b.next_delay().unwrap();
            assert!(d >= ms(500) && d <= ms(1000), "{d:?}");
        }
    }

    #[test]
    fn the_configured_steps_are_used_and_the_policy_is_kept() {
        let policy = Reconnect::new()
            .initial_delay(ms(30))
            .max_delay(ms(70))
            .final_close_code(CloseCode(4002));
        let mut b = policy.backoff();
        assert_eq!(b.policy(), &policy);
        let steps: Vec<_> = (0..3).map(|_| b.next_delay_with(1.0).unwrap()).collect();
        assert_eq!(steps, [ms(30), ms(60), ms(70)]);
    }

    #[test]
    fn the_random_unit_is_in_range_and_varies() {
        let draws: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)), "{draws:?}");
        assert!(draws.iter().any(|u| *u != draws[0]), "not constant");
        assert!(draws.iter().any(|u| *u > 0.0) && draws.iter().any(|u| *u < 1.0));
    }

    /// Runs a future that never waits for anything (the closures below
    /// return ready futures) to completion.
    fn run_ready<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        for _ in 0..10_000 {
            if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
                return out;
            }
        }
        panic!("the future kept waiting");
    }

    #[test]
    fn the_async_retry_loop_sleeps_between_attempts_and_stops_at_a_final_refusal() {
        let mut b = Reconnect::new()
            .initial_delay(ms(10))
            .max_attempts(5)
            .backoff();
        let mut calls = 0;
        let mut slept = Vec::new();
        let r: Result<(), _> = run_ready(connect_with_retries(
            &mut b,
            || {
                calls += 1;
                let e = if calls < 3 {
                    Error::Io(std::io::ErrorKind::ConnectionRefused.into())
                } else {
                    refused(403)
                };
                std::future::ready(Err(e))
            },
            |d| {
                slept.push(d);
                std::future::ready(())
            },
        ));
        assert!(r.unwrap_err().is_handshake());
        assert_eq!(calls, 3, "two retries, then the 403 ended it");
        assert_eq!(slept.len(), 2);
        assert!(
            slept[0] >= ms(5) && slept[0] <= ms(10) && slept[1] >= ms(10),
            "{slept:?}"
        );
        // A connection that ends at once: the next call waits a step first.
        let mut b = Reconnect::new().initial_delay(ms(10)).backoff();
        let mut slept = Vec::new();
        let ok = run_ready(connect_with_retries(
            &mut b,
            || std::future::ready(Ok(1)),
            |d| {
                slept.push(d);
                std::future::ready(())
            },
        ));
        assert_eq!(ok.unwrap(), 1);
        assert!(slept.is_empty(), "the first connect does not wait");
        let ok = run_ready(connect_with_retries(
            &mut b,
            || std::future::ready(Ok(2)),
            |d| {
                slept.push(d);
                std::future::ready(())
            },
        ));
        assert_eq!(ok.unwrap(), 2);
        assert_eq!(slept.len(), 1, "a short-lived connection's end waits first");
    }

    #[test]
    fn attempts_run_out_after_the_maximum() {
        let mut b = Reconnect::new().max_attempts(3).backoff();
        assert!(b.next_delay().is_some(), "after the first failed attempt");
        assert!(b.next_delay().is_some(), "after the second");
        assert_eq!(b.next_delay(), None, "the third was the last");
        let mut calls = 0;
        let r: Result<(), _> = connect_with_retries_blocking(
            &mut Reconnect::new()
                .initial_delay(ms(1))
                .max_attempts(2)
                .backoff(),
            || {
                calls += 1;
                Err(Error::AbnormalClosure)
            },
        );
        assert!(r.is_err());
        assert_eq!(calls, 2, "max_attempts(2) is two attempts");
    }

    #[test]
    fn a_connection_that_ends_before_it_is_stable_does_not_reset_the_steps() {
        let policy = Reconnect::new()
            .initial_delay(ms(100))
            .stable_after(Duration::from_secs(5));
        let mut b = policy.backoff();
        let t0 = Instant::now();
        assert_eq!(
            b.before_connect(t0),
            Some(Duration::ZERO),
            "the first connect"
        );
        b.connected(t0);
        // Closed after 1 s: wait a step before reconnecting, and the next
        // short one waits longer.
        let first = b.before_connect(t0 + Duration::from_secs(1)).unwrap();
        assert!(first >= ms(50) && first <= ms(100), "{first:?}");
        b.connected(t0 + Duration::from_secs(1));
        let second = b.before_connect(t0 + Duration::from_secs(2)).unwrap();
        assert!(second >= ms(100) && second <= ms(200), "{second:?}");
        // A connection that lasted: reconnect at once, from the first step.
        b.connected(t0 + Duration::from_secs(2));
        assert_eq!(
            b.before_connect(t0 + Duration::from_secs(8)),
            Some(Duration::ZERO)
        );
        assert_eq!(b.attempts(), 0);
    }

    fn refused(status: u16) -> Error {
        let (mut hs, _) =
            ClientHandshake::new(&crate::handshake::ClientRequest::new("localhost", 80, "/"));
        let raw = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        Error::Handshake(hs.feed(raw.as_bytes()).unwrap_err())
    }

    #[test]
    fn a_4xx_refusal_is_final_and_a_5xx_or_io_error_is_not() {
        let p = Reconnect::new();
        assert!(p.is_final_error(&refused(401)));
        assert!(p.is_final_error(&refused(404)));
        assert!(!p.is_final_error(&refused(503)));
        assert!(!p.is_final_error(&Error::Io(std::io::ErrorKind::ConnectionRefused.into())));
        assert!(!p.is_final_error(&Error::AbnormalClosure));
        let bad_url = crate::url::WsUrl::parse("http://x/").unwrap_err();
        assert!(
            p.is_final_error(&Error::Url(bad_url)),
            "a bad URL never gets better"
        );
    }

    #[test]
    fn a_proxy_refusing_with_407_or_403_is_final_and_502_is_not() {
        let p = Reconnect::new();
        let proxy_refused = |status| {
            Error::Proxy(ProxyError::Refused {
                status,
                reason: "".into(),
            })
        };
        assert!(p.is_final_error(&proxy_refused(407)));
        assert!(p.is_final_error(&proxy_refused(403)));
        assert!(!p.is_final_error(&proxy_refused(502)));
        assert!(!p.is_final_error(&proxy_refused(503)));
        assert!(!p.is_final_error(&Error::Proxy(ProxyError::Closed)));
        assert!(!p.is_final_error(&Error::Proxy(ProxyError::Malformed("x"))));
        let socks = crate::proxy::Proxy::parse("socks5://h:1").unwrap_err();
        assert!(p.is_final_error(&Error::Proxy(socks)));
    }

    #[cfg(feature = "tls")]
    #[test]
    fn a_refused_certificate_is_final_and_a_tls_protocol_error_is_not() {
        use crate::rt::tls::{TlsError, rustls};
        let p = Reconnect::new();
        let tls = |e: rustls::Error| {
            TlsError::from_handshake(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        };
        let cert = |c| tls(rustls::Error::InvalidCertificate(c));
        assert!(p.is_final_error(&cert(rustls::CertificateError::UnknownIssuer)));
        assert!(p.is_final_error(&cert(rustls::CertificateError::NotValidForName)));
        assert!(p.is_final_error(&cert(rustls::CertificateError::Expired)));
        assert!(!p.is_final_error(&tls(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!p.is_final_error(&Error::Io(reset)));
    }

    #[test]
    fn only_marked_close_codes_are_final() {
        let p = Reconnect::new().final_close_code(CloseCode(4001));
        assert!(p.is_final_close(CloseCode(4001)));
        assert!(!p.is_final_close(CloseCode::GOING_AWAY));
    }

    #[test]
    fn the_retry_loop_stops_at_a_final_refusal_and_returns_on_success() {
        let mut b = Reconnect::new()
            .initial_delay(ms(1))
            .max_attempts(10)
            .backoff();
        let mut calls = 0;
        let r: Result<(), _> = connect_with_retries_blocking(&mut b, || {
            calls += 1;
            Err(if calls < 3 {
                Error::Io(std::io::ErrorKind::ConnectionRefused.into())
            } else {
                refused(401)
            })
        });
        assert!(r.unwrap_err().is_handshake());
        assert_eq!(calls, 3, "two retries, then the 401 ended it");
        let mut calls = 0;
        let r = connect_with_retries_blocking(&mut b, || {
            calls += 1;
            if calls < 2 {
                Err(Error::AbnormalClosure)
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 2);
        assert_eq!(
            b.attempts(),
            3,
            "failures stay counted until the connection proves stable"
        );
    }
}
