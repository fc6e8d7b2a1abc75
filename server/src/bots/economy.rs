//! A bot's economy and chat, in a mix like players': once a second it may buy bread or a
//! potion from the default shop, refund its last purchase, offer a player it sees a trade
//! (one bread for two coins), look at its wallet, say something (now and then to the
//! whole cluster) or ask `/who`; it accepts every offer made to it. It counts what it was
//! answered, the chat it heard, and the coins it held first and last.

use std::collections::BTreeMap;

use serde::Serialize;
use tessera_shared::client::Client;
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::messages::{
    ChatChannel, ControlS2c, Goods, ItemCount, TxOutcomeS2c, TxResultS2c,
};

/// The shop the bots buy from (in the embedded default `balance.toml`).
pub const SHOP: &str = "general_store";
/// How long a bot's trade offer stays open, in milliseconds.
const OFFER_TTL_MS: u32 = 10_000;

/// What one bot's economy requests came to.
#[derive(Clone, Debug, Default)]
pub(super) struct EconomyFigures {
    /// Requests sent (purchases, refunds, offers, acceptances; not wallet looks).
    pub(super) requests: u64,
    /// Applied.
    pub(super) applied: u64,
    /// Answered `Duplicate`.
    pub(super) duplicates: u64,
    /// Refused, by code.
    pub(super) refused: BTreeMap<String, u64>,
    /// Offers made to it that it accepted and that were applied.
    pub(super) trades: u64,
    /// The coins of the first `Economy` it was sent, and of the last.
    pub(super) coins_first: Option<u64>,
    /// The coins of the last `Economy`.
    pub(super) coins_last: Option<u64>,
    /// Chat messages and commands sent.
    pub(super) chat_sent: u64,
    /// Chat messages and commands refused.
    pub(super) chat_refused: u64,
    /// Chat messages heard.
    pub(super) chat_heard: u64,
}

/// The economy summed over the bots that played to the end.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EconomySummary {
    /// Requests sent.
    pub requests: u64,
    /// Applied, per second of the run (all bots together).
    pub applied_per_s: f64,
    /// Applied.
    pub applied: u64,
    /// Answered `Duplicate`.
    pub duplicates: u64,
    /// Refused, by code, most frequent first.
    pub refused: Vec<(String, u64)>,
    /// Trades completed by an acceptance.
    pub trades: u64,
    /// Coins the bots held when first told, summed (after their starter kits, where the
    /// kit came first).
    pub coins_first: u64,
    /// Coins they held when last told.
    pub coins_last: u64,
    /// Chat messages and commands sent.
    pub chat_sent: u64,
    /// Of which refused.
    pub chat_refused: u64,
    /// Chat messages heard (each recipient counts).
    pub chat_heard: u64,
}

impl EconomySummary {
    /// The sum of `figures` over a run of `seconds`.
    pub(super) fn of<'a>(figures: impl Iterator<Item = &'a EconomyFigures>, seconds: f64) -> Self {
        let mut s = EconomySummary::default();
        let mut refused: BTreeMap<String, u64> = BTreeMap::new();
        for f in figures {
            s.requests += f.requests;
            s.applied += f.applied;
            s.duplicates += f.duplicates;
            s.trades += f.trades;
            s.coins_first += f.coins_first.unwrap_or(0);
            s.coins_last += f.coins_last.unwrap_or(0);
            s.chat_sent += f.chat_sent;
            s.chat_refused += f.chat_refused;
            s.chat_heard += f.chat_heard;
            for (code, n) in &f.refused {
                *refused.entry(code.clone()).or_default() += n;
            }
        }
        s.applied_per_s = if seconds > 0.0 {
            s.applied as f64 / seconds
        } else {
            0.0
        };
        s.refused = refused.into_iter().collect();
        s.refused
            .sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        s
    }
}

/// One bot's economy.
pub(super) struct Trader {
    rng: u64,
    /// Keys sent so far (each key is `<bot>-<n>`).
    sent: u64,
    bot: u64,
    last_purchase: Option<String>,
    /// Acceptances sent, by key, to count the trades they complete.
    accepting: Vec<String>,
    pub(super) figures: EconomyFigures,
}

impl Trader {
    /// The economy of bot `bot` (its keys are its own), randomised by `seed`.
    pub(super) fn new(bot: u64, seed: u64) -> Trader {
        Trader {
            rng: seed.wrapping_mul(0xA24B_AED4_963E_E407) | 1,
            sent: 0,
            bot,
            last_purchase: None,
            accepting: Vec::new(),
            figures: EconomyFigures::default(),
        }
    }

    fn next_key(&mut self) -> String {
        self.sent += 1;
        format!("bot{}-{}", self.bot, self.sent)
    }

    fn roll(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100
    }

    /// Once a second: maybe one request. `near` are the players the bot sees.
    pub(super) fn act(&mut self, client: &Client, near: &[PlayerId]) {
        let roll = self.roll();
        let sent = match roll {
            0..30 => {
                let key = self.next_key();
                let (item, count) = if roll < 20 {
                    ("bread", 1 + (roll % 2) as u32)
                } else {
                    ("health_potion", 1)
                };
                let sent = client.buy(&key, SHOP, item, count).is_ok();
                self.last_purchase = Some(key);
                sent
            }
            30..38 => match self.last_purchase.take() {
                Some(purchase) => {
                    let key = self.next_key();
                    client.refund(&key, &purchase).is_ok()
                }
                None => false,
            },
            38..58 if !near.is_empty() => {
                let with = near[(self.rng as usize / 100) % near.len()];
                let key = self.next_key();
                let give = Goods {
                    coins: 0,
                    items: vec![ItemCount {
                        item: "bread".into(),
                        count: 1,
                    }],
                };
                let take = Goods {
                    coins: 2,
                    items: Vec::new(),
                };
                client
                    .trade_offer(&key, with, give, take, OFFER_TTL_MS)
                    .is_ok()
            }
            58..63 => {
                let _ = client.get_economy();
                false
            }
            63..78 => {
                self.sent += 1;
                let (channel, text) = if roll < 65 {
                    (ChatChannel::Global, "hello, world")
                } else {
                    (ChatChannel::Say, "anyone hunting wolves?")
                };
                let id = u32::try_from(self.sent).unwrap_or(u32::MAX);
                self.figures.chat_sent += u64::from(client.chat(id, channel, text).is_ok());
                false
            }
            78..81 => {
                self.sent += 1;
                let id = u32::try_from(self.sent).unwrap_or(u32::MAX);
                self.figures.chat_sent += u64::from(client.command(id, "/who").is_ok());
                false
            }
            _ => false,
        };
        if sent {
            self.figures.requests += 1;
        }
    }

    /// A control message for the bot: answers are counted, offers accepted.
    pub(super) fn on_control(&mut self, client: &Client, message: ControlS2c) {
        match message {
            ControlS2c::TxResult(TxResultS2c { key, outcome }) => {
                let accepted = self.accepting.iter().position(|k| *k == key);
                if let Some(i) = accepted {
                    self.accepting.swap_remove(i);
                }
                match outcome {
                    TxOutcomeS2c::Applied => {
                        self.figures.applied += 1;
                        self.figures.trades += u64::from(accepted.is_some());
                    }
                    TxOutcomeS2c::Duplicate => self.figures.duplicates += 1,
                    TxOutcomeS2c::Refused(r) => {
                        *self
                            .figures
                            .refused
                            .entry(format!("{:?}", r.code))
                            .or_default() += 1;
                    }
                }
            }
            ControlS2c::Reply(reply) => {
                self.figures.chat_refused += u64::from(reply.refused.is_some());
            }
            ControlS2c::Chat(_) => self.figures.chat_heard += 1,
            ControlS2c::Economy(e) => {
                self.figures.coins_first.get_or_insert(e.coins);
                self.figures.coins_last = Some(e.coins);
            }
            ControlS2c::TradeOffered(offer) => {
                let key = self.next_key();
                if client.trade_accept(&key, offer.from, &offer.offer).is_ok() {
                    self.figures.requests += 1;
                    // Bounded: answers remove them; a bot accepts a few offers a second.
                    if self.accepting.len() < 64 {
                        self.accepting.push(key);
                    }
                }
            }
            _ => {}
        }
    }
}
