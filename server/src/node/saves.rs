//! Saves and snapshots at the driver: every player saved once per
//! [`super::PLAYER_SAVE_INTERVAL`] and at a graceful stop; departed players' final states
//! handed to the save writer; region captures handed to the snapshot encoder.

use std::time::{Duration, Instant};

use tessera_regions::io::SavedPlayer;
use tessera_shared::ids::{NetId, PlayerId};
use tokio::sync::{mpsc, oneshot};

use super::Driver;
use crate::players::{SaveReply, SaveRequest};

impl Driver {
    /// Queues the periodic save of the players whose turn it is this tick (each player
    /// once per [`PLAYER_SAVE_INTERVAL`], spread over it by id).
    pub(super) fn save_due_players(&mut self, tick: u64) {
        if self.saves.is_none() {
            return;
        }
        let interval = self.save_interval_ticks;
        let phase = tick % interval;
        let mut due: Vec<PlayerId> = self
            .clients
            .keys()
            .filter(|p| p.0 % interval == phase)
            .copied()
            .collect();
        due.sort_unstable();
        let at_ms = crate::economy::now_unix_ms();
        for player in due {
            self.queue_save(player, None);
            if let Some(&region) = self.region_of.get(&player) {
                self.tell_directory(tessera_persistence::directory::PresenceUpdate::Seen {
                    player,
                    node: self.config.node.name.clone(),
                    region,
                    at_ms,
                });
            }
        }
    }

    /// Queues a save of `player`'s current state; `false` if it could not be queued (no
    /// store, no avatar, or a full queue: counted).
    fn queue_save(&mut self, player: PlayerId, done: Option<SaveReply>) -> bool {
        let Some((position, health)) = self
            .region_of
            .get(&player)
            .and_then(|&region| self.local.region(region))
            .and_then(|r| r.position_and_health(NetId::of_player(player)))
        else {
            return false;
        };
        self.send_save(SaveRequest {
            player,
            state: SavedPlayer { position, health },
            done,
        })
    }

    /// Hands `request` to the save writer without waiting: `false` if it could not be
    /// (a full queue: counted, and a caller waiting on it is told). Without a writer the
    /// save is not made and a waiting caller is answered at once.
    pub(super) fn send_save(&mut self, request: SaveRequest) -> bool {
        let Some(saves) = &self.saves else {
            if let Some(done) = request.done {
                let _ = done.send(Ok(()));
            }
            return false;
        };
        match saves.try_send(request) {
            Ok(()) => true,
            Err(
                mpsc::error::TrySendError::Full(request)
                | mpsc::error::TrySendError::Closed(request),
            ) => {
                self.stats.counters.saves_dropped += 1;
                if let Some(done) = request.done {
                    let _ = done.send(Err(tessera_persistence::StoreError::Unavailable(
                        "the save queue is full".into(),
                    )));
                }
                false
            }
        }
    }

    /// Saves every player still in the world (a graceful shutdown) and waits up to
    /// `timeout` for the saves to be durable. Returns how many were.
    pub fn save_all_players(&mut self, timeout: Duration) -> usize {
        let players: Vec<PlayerId> = self.clients.keys().copied().collect();
        let mut waiting = Vec::new();
        for player in players {
            let (done, answer) = oneshot::channel();
            if self.queue_save(player, Some(done)) {
                waiting.push(answer);
            }
        }
        let deadline = Instant::now() + timeout;
        let mut durable = 0;
        for mut answer in waiting {
            loop {
                match answer.try_recv() {
                    Ok(result) => {
                        durable += usize::from(result.is_ok());
                        break;
                    }
                    Err(oneshot::error::TryRecvError::Empty) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => break,
                }
            }
        }
        durable
    }

    /// Captures every region's state for the snapshot writer (if there is one), which
    /// encodes the changed cells off this thread. Skipped (and counted) while the
    /// encoder is still behind by more than its queue holds: the next capture then
    /// carries every change since the last one taken, so nothing is lost.
    pub(super) fn capture_snapshots(&mut self) {
        if let Some(snapshots) = &self.snapshots {
            if !snapshots.has_room_for(self.local.regions().len()) {
                self.stats.counters.captures_skipped += 1;
                return;
            }
            let started = Instant::now();
            for (region, records) in self.local.capture_records() {
                snapshots.offer_records(region, records);
            }
            self.stats.last_capture = started.elapsed();
        }
    }

    /// Captures every region one last time and waits up to `timeout` for the snapshot
    /// outbox to be durable (a graceful shutdown). Returns whether it all was.
    pub fn flush_snapshots(&mut self, timeout: Duration) -> bool {
        self.capture_snapshots();
        self.snapshots
            .as_ref()
            .is_none_or(|s| s.flush_blocking(timeout))
    }
}

impl Driver {
    /// Hands this tick's kills to the economy (their loot and XP).
    pub(super) fn commit_kills(&mut self) {
        if self.economy.is_none() {
            return;
        }
        let at_ms = crate::economy::now_unix_ms();
        let txs: Vec<_> = self
            .local
            .regions()
            .iter()
            .flat_map(|r| r.output().kills.iter())
            .map(|kill| crate::economy::kill_tx(&self.balance, kill, at_ms))
            .collect();
        for tx in txs {
            self.send_economy(tx);
        }
    }

    /// Hands `tx` to the economy's committer without waiting: a full queue drops it
    /// (counted). Without a committer nothing happens.
    pub(super) fn send_economy(&mut self, tx: tessera_persistence::economy::EconomyTx) {
        self.send_economy_request(tx, None);
    }

    /// Like [`Driver::send_economy`]; `done` is answered with the outcome, or at once
    /// when the request cannot be queued.
    pub(super) fn send_economy_request(
        &mut self,
        tx: tessera_persistence::economy::EconomyTx,
        done: Option<crate::economy::TxReply>,
    ) {
        use tessera_persistence::StoreError;
        let Some(economy) = &self.economy else {
            if let Some(done) = done {
                let _ = done.send(Err(StoreError::Unavailable(
                    "this node keeps no economy".into(),
                )));
            }
            return;
        };
        let request = crate::economy::EconomyRequest {
            tx,
            balance: self.balance.clone(),
            done,
        };
        if let Err(e) = economy.try_send(request) {
            self.stats.counters.economy_dropped += 1;
            let request = match e {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            if let Some(done) = request.done {
                let _ = done.send(Err(StoreError::Unavailable(
                    "the economy's queue is full".into(),
                )));
            }
        }
    }
}
