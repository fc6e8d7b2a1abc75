//! What the driver sends one session: its newest state, and everything else in order.
//!
//! A state matters only until the next one: each is a delta against the newest state the
//! client acknowledged, so a newer one makes up for any not sent. States therefore go
//! into a slot that holds one, a newer state replacing one the session has not sent yet:
//! a session that falls behind holds one state (not a queue of stale ones, each several
//! hundred bytes, per connection) and sends the newest. Events must arrive, in order: they
//! go through a bounded queue of [`SESSION_OUTBOX_LEN_MAX`] messages (boxed or small).
//! What ends the session (a kick, a redirect) has a slot of its own, taken after the
//! queued messages: it is never dropped for a full queue (a dropped kick left the session
//! open, and its client, seeing no more states, resumed into the world it was kicked
//! from).

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};

use super::Outgoing;

/// Control messages queued from the driver to one session (events, kicks, redirects):
/// many ticks' worth of events; a session that does not drain them loses the newest.
pub const SESSION_OUTBOX_LEN_MAX: usize = 64;

/// A new session's outbox (the driver's side) and inbox (the session's).
pub fn session_outbox() -> (SessionOutbox, SessionInbox) {
    let (control, control_rx) = mpsc::channel(SESSION_OUTBOX_LEN_MAX);
    let state = Arc::new(StateSlot::default());
    (
        SessionOutbox {
            control,
            state: state.clone(),
        },
        SessionInbox {
            control: control_rx,
            state,
        },
    )
}

/// The driver's side of a session's outbox.
#[derive(Clone, Debug)]
pub struct SessionOutbox {
    control: mpsc::Sender<Outgoing>,
    state: Arc<StateSlot>,
}

/// Why a message was not queued, or what it replaced.
#[derive(Debug, PartialEq, Eq)]
pub enum NotSent {
    /// The session is gone.
    Closed,
    /// A control message found the queue full: it is dropped.
    Full,
    /// A state replaced one the session had not sent yet (that one is dropped).
    Replaced,
}

impl SessionOutbox {
    /// Queues `message` without waiting: a state into the slot (replacing any not sent),
    /// anything else at the end of the queue.
    pub fn try_send(&self, message: Outgoing) -> Result<(), NotSent> {
        if self.control.is_closed() {
            return Err(NotSent::Closed);
        }
        match message {
            Outgoing::Datagram(_) | Outgoing::Stream(_) => {
                let replaced = self.state.put(message);
                self.state.ready.notify_one();
                if replaced {
                    Err(NotSent::Replaced)
                } else {
                    Ok(())
                }
            }
            Outgoing::Kick(_) | Outgoing::Redirect { .. } => {
                // The first end stands: the session ends with it.
                let mut end = lock(&self.state.end);
                if end.is_none() {
                    *end = Some(message);
                }
                drop(end);
                self.state.ready.notify_one();
                Ok(())
            }
            other => self.control.try_send(other).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => NotSent::Full,
                mpsc::error::TrySendError::Closed(_) => NotSent::Closed,
            }),
        }
    }

    /// A session's outbox whose inbox is dropped at once: for a view kept with nobody
    /// to send to (an avatar waiting for its player's login).
    pub fn detached() -> SessionOutbox {
        session_outbox().0
    }
}

/// The session's side of its outbox.
#[derive(Debug)]
pub struct SessionInbox {
    control: mpsc::Receiver<Outgoing>,
    state: Arc<StateSlot>,
}

impl SessionInbox {
    /// The next message: the state waiting if any, otherwise the next control message,
    /// waiting for either; `None` once the driver dropped its side and the queue and the
    /// slots are drained. Cancel-safe: a message is taken only when it is returned.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        loop {
            if let Some(message) = self.try_recv() {
                return Some(message);
            }
            tokio::select! {
                biased;
                // A notification is kept when nobody waits, so one sent between the take
                // above and this wait is not lost.
                () = self.state.ready.notified() => {}
                // The queue closed: the driver let go, possibly right after putting a
                // kick or a last state in their slots. Their wake-up may have come between
                // the polls of the two branches (the driver runs on another thread), so
                // the slots are looked at once more: a kick is never lost to that race.
                message = self.control.recv() => return message.or_else(|| self.try_recv()),
            }
        }
    }

    /// The next message if one is waiting: the state first, then the queue, then what
    /// ends the session.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        self.state
            .take()
            .or_else(|| self.control.try_recv().ok())
            .or_else(|| lock(&self.state.end).take())
    }
}

/// The newest state not sent yet, and what ends the session.
#[derive(Debug, Default)]
struct StateSlot {
    state: Mutex<Option<Outgoing>>,
    end: Mutex<Option<Outgoing>>,
    ready: Notify,
}

fn lock<T>(slot: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(|e| e.into_inner())
}

impl StateSlot {
    /// Puts `state` in the slot; whether it replaced one.
    fn put(&self, state: Outgoing) -> bool {
        let mut slot = self.state.lock().unwrap_or_else(|e| e.into_inner());
        slot.replace(state).is_some()
    }

    fn take(&self) -> Option<Outgoing> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_shared::protocol::messages::{ControlS2c, EventS2c};

    fn state(byte: u8) -> Outgoing {
        Outgoing::Datagram(vec![byte].into())
    }

    fn byte_of(message: Option<Outgoing>) -> Option<u8> {
        match message {
            Some(Outgoing::Datagram(bytes)) => Some(bytes[0]),
            _ => None,
        }
    }

    #[test]
    fn a_newer_state_replaces_one_not_sent_and_control_messages_all_arrive_in_order() {
        let (outbox, mut inbox) = session_outbox();
        assert_eq!(outbox.try_send(state(1)), Ok(()));
        assert_eq!(outbox.try_send(state(2)), Err(NotSent::Replaced));
        for _ in 0..3 {
            let event = ControlS2c::Event(EventS2c::Respawn);
            assert_eq!(outbox.try_send(Outgoing::Control(Box::new(event))), Ok(()));
        }
        assert_eq!(byte_of(inbox.try_recv()), Some(2), "the newest state only");
        for _ in 0..3 {
            assert!(matches!(inbox.try_recv(), Some(Outgoing::Control(_))));
        }
        assert!(inbox.try_recv().is_none());
    }

    /// A kick is never dropped: after a full queue's messages, and after the driver let
    /// go of the session, it still arrives, last.
    #[test]
    fn a_kick_arrives_after_a_full_queue_and_after_the_driver_let_go() {
        use tessera_shared::protocol::messages::{KickReason, KickedS2c};
        let (outbox, mut inbox) = session_outbox();
        for _ in 0..SESSION_OUTBOX_LEN_MAX {
            let event = ControlS2c::Event(EventS2c::Respawn);
            outbox.try_send(Outgoing::Control(Box::new(event))).unwrap();
        }
        let kick = |message: &str| {
            Outgoing::Kick(KickedS2c {
                reason: KickReason::Admin,
                message: message.into(),
            })
        };
        assert_eq!(outbox.try_send(kick("first")), Ok(()));
        assert_eq!(outbox.try_send(kick("second")), Ok(()));
        drop(outbox);
        for _ in 0..SESSION_OUTBOX_LEN_MAX {
            assert!(matches!(inbox.try_recv(), Some(Outgoing::Control(_))));
        }
        match inbox.try_recv() {
            Some(Outgoing::Kick(k)) => assert_eq!(k.message, "first"),
            other => panic!("the kick, last: {other:?}"),
        }
        assert!(inbox.try_recv().is_none());
    }

    #[test]
    fn a_full_queue_drops_control_messages_and_a_gone_session_refuses_everything() {
        let (outbox, inbox) = session_outbox();
        for _ in 0..SESSION_OUTBOX_LEN_MAX {
            let event = ControlS2c::Event(EventS2c::Respawn);
            outbox.try_send(Outgoing::Control(Box::new(event))).unwrap();
        }
        let event = ControlS2c::Event(EventS2c::Respawn);
        assert_eq!(
            outbox.try_send(Outgoing::Control(Box::new(event))),
            Err(NotSent::Full)
        );
        assert_eq!(outbox.try_send(state(1)), Ok(()), "states have their slot");
        drop(inbox);
        assert_eq!(outbox.try_send(state(2)), Err(NotSent::Closed));
    }

    #[tokio::test]
    async fn recv_waits_for_a_state_or_a_message_and_ends_when_the_driver_lets_go() {
        let (outbox, mut inbox) = session_outbox();
        let sender = tokio::spawn(async move {
            tokio::task::yield_now().await;
            outbox.try_send(state(7)).unwrap();
            outbox
        });
        assert_eq!(byte_of(inbox.recv().await), Some(7));
        drop(sender.await.unwrap());
        assert!(inbox.recv().await.is_none());
    }

    #[tokio::test]
    async fn a_kick_put_as_the_driver_lets_go_is_received_whatever_woke_the_session() {
        use std::future::Future;
        use tessera_shared::protocol::messages::{KickReason, KickedS2c};
        let (outbox, mut inbox) = session_outbox();
        let mut recv = Box::pin(inbox.recv());
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        assert!(recv.as_mut().poll(&mut cx).is_pending(), "nothing sent yet");
        // The driver puts the kick while the session is between its two polls: the
        // notification is missed, and the queue's closing is what the session sees.
        *lock(&outbox.state.end) = Some(Outgoing::Kick(KickedS2c {
            reason: KickReason::Admin,
            message: "maintenance".into(),
        }));
        drop(outbox);
        match recv.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(Some(Outgoing::Kick(k))) => assert_eq!(k.message, "maintenance"),
            other => panic!("the kick, got {other:?}"),
        }
        drop(recv);
        assert!(inbox.recv().await.is_none(), "then the end");
    }
}
