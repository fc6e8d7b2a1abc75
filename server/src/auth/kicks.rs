//! Operators' recent kicks, which refuse the kicked sessions' resume tickets.

use tessera_shared::ids::PlayerId;

use super::{TICKET_LEEWAY_S, TICKET_TTL_S, Ticket, TicketKind};

/// How long a kick is remembered: a ticket issued before it cannot be valid for longer.
pub const KICK_MEMORY_MS: u64 = (TICKET_TTL_S + TICKET_LEEWAY_S) * 1_000;
/// Kicks remembered at most (above a bulk job's 100,000 players); past it the oldest is
/// forgotten early, and a client that missed that kick may resume. About 40 bytes each.
pub const KICKS_REMEMBERED_MAX: usize = 131_072;

/// The players an operator kicked in the last [`KICK_MEMORY_MS`], with the reason they
/// were given. A kick ends a session whichever way the client learns of it: the
/// `Kicked` frame may be lost (the connection was already dropping, the avatar was
/// waiting for a resume, the frame was not read before the close), and a client that
/// missed it reconnects with its resume ticket. Such a ticket, from a session that began
/// at or before the kick, is answered with the kick instead of a login (PROTOCOL.md
/// section 6 rule 7). Written by the driver, read by logins; one per node (tickets resume
/// on the node that issued them).
#[derive(Debug, Default)]
pub struct Kicks {
    inner: std::sync::Mutex<KicksInner>,
}

#[derive(Debug, Default)]
struct KicksInner {
    /// Each kicked player's latest kick.
    latest: std::collections::HashMap<PlayerId, Kick>,
    /// Every kick remembered, oldest first (a player kicked twice is here twice; only
    /// its entry in `latest` counts).
    order: std::collections::VecDeque<(u64, PlayerId)>,
}

/// An operator's kick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kick {
    /// When, Unix ms (the node's clock).
    pub at_ms: u64,
    /// The reason the player was given.
    pub reason: std::sync::Arc<str>,
}

impl Kicks {
    /// Remembers that `player` was kicked at `now_ms` for `reason`.
    pub fn record(&self, player: PlayerId, reason: &str, now_ms: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.forget_before(now_ms.saturating_sub(KICK_MEMORY_MS));
        if inner.order.len() >= KICKS_REMEMBERED_MAX {
            inner.forget_oldest();
        }
        // A bulk job kicks thousands for one reason: they share it.
        let reason = match inner.order.back().and_then(|(_, p)| inner.latest.get(p)) {
            Some(last) if *last.reason == *reason => last.reason.clone(),
            _ => std::sync::Arc::from(reason),
        };
        inner.order.push_back((now_ms, player));
        inner.latest.insert(
            player,
            Kick {
                at_ms: now_ms,
                reason,
            },
        );
    }

    /// The kick that ended the session `ticket` resumes, if it was kicked (at `now_ms`).
    pub fn ended(&self, ticket: &Ticket, now_ms: u64) -> Option<Kick> {
        if ticket.kind != TicketKind::Resume {
            return None;
        }
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .latest
            .get(&ticket.player)
            .filter(|kick| ticket.session_began_ms <= kick.at_ms)
            .filter(|kick| now_ms.saturating_sub(kick.at_ms) < KICK_MEMORY_MS)
            .cloned()
    }

    /// Kicks remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .latest
            .len()
    }
}

impl KicksInner {
    fn forget_before(&mut self, cutoff_ms: u64) {
        while self.order.front().is_some_and(|&(at, _)| at < cutoff_ms) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        let Some((at, player)) = self.order.pop_front() else {
            return;
        };
        if self
            .latest
            .get(&player)
            .is_some_and(|kick| kick.at_ms == at)
        {
            self.latest.remove(&player);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resume_ticket(player: u64, began_ms: u64) -> Ticket {
        Ticket {
            player: PlayerId(player),
            kind: TicketKind::Resume,
            region: None,
            name: String::new(),
            session_began_ms: began_ms,
        }
    }

    #[test]
    fn a_kick_ends_the_resume_tickets_of_sessions_that_began_before_it() {
        let kicks = Kicks::default();
        let t0 = 1_000_000;
        kicks.record(PlayerId(1), "spamming", t0);
        // The kicked session's tickets, however fresh: refused with the kick.
        let kick = kicks.ended(&resume_ticket(1, t0 - 5_000), t0 + 10).unwrap();
        assert_eq!((kick.at_ms, &*kick.reason), (t0, "spamming"));
        assert!(kicks.ended(&resume_ticket(1, t0), t0 + 10).is_some());
        // A session that began after the kick (a login with the token), another player,
        // a redirect: untouched.
        assert_eq!(kicks.ended(&resume_ticket(1, t0 + 1), t0 + 10), None);
        assert_eq!(kicks.ended(&resume_ticket(2, t0 - 5_000), t0 + 10), None);
        let redirect = Ticket {
            kind: TicketKind::Redirect,
            ..resume_ticket(1, t0 - 5_000)
        };
        assert_eq!(kicks.ended(&redirect, t0 + 10), None);
        // Remembered as long as a ticket from before could still be valid, not longer.
        assert!(
            kicks
                .ended(&resume_ticket(1, t0 - 5_000), t0 + KICK_MEMORY_MS - 1)
                .is_some()
        );
        assert_eq!(
            kicks.ended(&resume_ticket(1, t0 - 5_000), t0 + KICK_MEMORY_MS),
            None
        );
        kicks.record(PlayerId(2), "spamming", t0 + KICK_MEMORY_MS + 1);
        assert_eq!(kicks.len(), 1, "the first kick is forgotten");
        // A second kick of the same player replaces the first.
        kicks.record(PlayerId(2), "again", t0 + KICK_MEMORY_MS + 2);
        let ticket = resume_ticket(2, t0 + KICK_MEMORY_MS + 2);
        let kick = kicks.ended(&ticket, t0 + KICK_MEMORY_MS + 3).unwrap();
        assert_eq!(&*kick.reason, "again");
    }

    #[test]
    fn kicks_are_bounded_forgetting_the_oldest_and_share_a_bulk_reason() {
        let kicks = Kicks::default();
        let t0 = 1_000_000;
        for i in 0..KICKS_REMEMBERED_MAX as u64 + 10 {
            kicks.record(PlayerId(i + 1), "maintenance", t0);
        }
        assert_eq!(kicks.len(), KICKS_REMEMBERED_MAX);
        assert_eq!(kicks.ended(&resume_ticket(10, t0), t0), None);
        let a = kicks.ended(&resume_ticket(11, t0), t0).unwrap();
        let b = kicks.ended(&resume_ticket(12, t0), t0).unwrap();
        assert!(std::sync::Arc::ptr_eq(&a.reason, &b.reason));
    }
}
