//! How a server task is woken by the hub, written once for the async
//! adapters: a flag and an [`AtomicWaker`], so a wake that comes while the
//! task is not polling is kept for its next poll. Also the application's
//! broadcast that waits while the hub is congested.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;

/// A wake a task polls: ready once after each [`wake`](Self::wake).
#[derive(Debug, Default)]
pub struct TaskWake {
    woken: AtomicBool,
    waker: AtomicWaker,
}

impl TaskWake {
    /// Wakes the task (or marks it woken for its next poll).
    pub fn wake(&self) {
        self.woken.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready (once) after a wake; otherwise registers `cx`.
    pub fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        if self.woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Resolves after the next wake (at once if one came since the last).
    pub async fn woken(&self) {
        poll_fn(|cx| self.poll(cx)).await
    }
}

#[cfg(feature = "server")]
impl crate::server::hub::Wake for TaskWake {
    fn wake(&self) {
        TaskWake::wake(self);
    }
}

/// Queues `msg` for `target` (every client, a topic, one client) under the same rules as a
/// client's message ([`Hub::offer`](crate::server::hub::Hub::offer)): while
/// the hub is congested it waits, for the congestion to clear or at most
/// until the stalled client's deadline (`sleep_until`, the runtime's timer),
/// then offers again. Every async `ServerHandle::broadcast` and
/// `ServerHandle::publish` is this.
#[cfg(feature = "server")]
pub async fn broadcast<F: std::future::Future<Output = ()>>(
    hub: &crate::server::hub::Hub,
    target: crate::server::hub::Target<'_>,
    msg: &crate::PreparedMessage,
    mut sleep_until: impl FnMut(std::time::Instant) -> F,
) -> crate::server::hub::BroadcastReport {
    let waiter = std::sync::Arc::new(TaskWake::default());
    let wake: std::sync::Arc<dyn crate::server::hub::Wake> = waiter.clone();
    let mut registered = None;
    loop {
        let now = std::time::Instant::now();
        match hub.offer(target, msg, &wake, &mut registered, now) {
            Ok(report) => return report,
            Err(deadline) => {
                let mut sleep = std::pin::pin!(sleep_until(deadline.unwrap_or(now)));
                poll_fn(|cx| {
                    if waiter.poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
                        Poll::Ready(())
                    } else {
                        Poll::Pending
                    }
                })
                .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_wake_before_the_poll_is_kept_and_counted_once() {
        let w = TaskWake::default();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(w.poll(&mut cx).is_pending());
        w.wake();
        w.wake();
        assert!(w.poll(&mut cx).is_ready());
        assert!(
            w.poll(&mut cx).is_pending(),
            "two wakes before a poll are one"
        );
    }

    #[test]
    fn woken_waits_for_a_wake_and_then_resolves() {
        use std::future::Future;
        use std::pin::pin;
        let w = TaskWake::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut fut = pin!(w.woken());
        assert!(fut.as_mut().poll(&mut cx).is_pending(), "no wake yet");
        w.wake();
        assert!(fut.as_mut().poll(&mut cx).is_ready());
    }

    #[cfg(feature = "server")]
    #[test]
    fn broadcast_waits_while_congested_and_queues_once_it_clears() {
        use crate::server::hub::{FlowControl, Hub, Pop};
        use crate::{Message, PreparedMessage};
        use std::future::Future;
        use std::pin::pin;
        use std::sync::Arc;
        let hub = Arc::new(Hub::new(FlowControl::default().high_water(1, 1 << 20)));
        let slow = hub.register(Arc::new(TaskWake::default()));
        let x = PreparedMessage::new(&Message::text("x")).unwrap();
        hub.broadcast(&x, std::time::Instant::now());
        hub.broadcast(&x, std::time::Instant::now());
        assert!(hub.is_congested());
        let app = PreparedMessage::new(&Message::text("app")).unwrap();
        let mut fut = pin!(broadcast(
            &hub,
            crate::server::hub::Target::All,
            &app,
            |_| std::future::pending::<()>()
        ));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            fut.as_mut().poll(&mut cx).is_pending(),
            "waits while congested"
        );
        assert_eq!(slow.len(), 2, "not queued yet");
        assert!(matches!(slow.pop(), Pop::Message(_)));
        let Poll::Ready(report) = fut.as_mut().poll(&mut cx) else {
            panic!("queued once the congestion cleared")
        };
        assert_eq!(report.delivered, 1);
        assert_eq!(slow.len(), 2);
    }
}
