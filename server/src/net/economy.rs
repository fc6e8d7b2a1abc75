//! A session's economy requests (`Buy`, `Refund`, `GetEconomy` on the control stream,
//! PROTOCOL.md section 3): checked here, rate-limited per session
//! ([`ECONOMY_REQUESTS_PER_S`], burst [`ECONOMY_REQUESTS_BURST`]), at most
//! [`ECONOMY_REQUESTS_IN_FLIGHT_MAX`] waiting; purchases and refunds go through the driver
//! (which checks the session holds the player, and adds the balance in force) to the
//! economy's committer. Their answers are written by the session as they come.
//!
//! A client's keys are its own: they are stored prefixed with [`CLIENT_KEY_PREFIX`], so
//! that no client key can collide with one the node derives (`kill:...`, `starter-kit`).

use std::collections::BTreeMap;

use governor::DefaultDirectRateLimiter;
use tessera_persistence::StoreError;
use tessera_persistence::economy::{
    EconomyStore, EconomyTx, Holdings, OFFER_TTL_MAX_MS, PlayerEconomy, Refusal, TX_ITEM_KINDS_MAX,
    TxKind, TxOutcome, is_valid_key,
};
use tessera_shared::config::RateLimit;
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::limits::{
    ECONOMY_NAME_BYTES_MAX, ECONOMY_REQUESTS_IN_FLIGHT_MAX, TRADE_ITEM_KINDS_MAX, TX_KEY_BYTES_MAX,
};

const _: () = assert!(
    TRADE_ITEM_KINDS_MAX == TX_ITEM_KINDS_MAX
        && tessera_shared::protocol::limits::OFFER_TTL_MAX_MS as u64 == OFFER_TTL_MAX_MS,
    "the protocol's trade bounds are the economy's"
);
use tessera_shared::protocol::messages::*;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::chat::Chat;
use crate::economy::{Economy, now_unix_ms};
use crate::node::{Command, NodeHandle};

/// What a client's idempotency keys are stored under.
pub(crate) const CLIENT_KEY_PREFIX: &str = "client:";

/// When a request refused as `Unavailable` may be sent again.
const RETRY_AFTER_MS: u32 = 1_000;

/// One session's economy requests.
pub(super) struct EconomyRequests {
    economy: Option<Economy>,
    /// Where offers are announced to the player they name, wherever it is.
    chat: Chat,
    limit: RateLimit,
    limiter: DefaultDirectRateLimiter,
    /// The requests waiting for their answers (aborted with the session).
    waiting: JoinSet<Vec<ControlS2c>>,
}

impl EconomyRequests {
    /// Requests over `economy` (none: every request is refused `Unavailable`), at most
    /// `limit`.
    pub(super) fn new(economy: Option<Economy>, limit: RateLimit, chat: Chat) -> EconomyRequests {
        EconomyRequests {
            economy,
            chat,
            limit,
            limiter: super::limiter(limit),
            waiting: JoinSet::new(),
        }
    }

    /// Starts `request` of `player` on `session`: the answers to write now (a refusal), or
    /// none (they come from [`EconomyRequests::next`]).
    pub(super) fn start(
        &mut self,
        request: ControlC2s,
        player: PlayerId,
        session: u64,
        node: &NodeHandle,
    ) -> Vec<ControlS2c> {
        let key = match &request {
            ControlC2s::Buy(b) => Some(b.key.clone()),
            ControlC2s::Refund(r) => Some(r.key.clone()),
            ControlC2s::TradeOffer(o) => Some(o.key.clone()),
            ControlC2s::TradeAccept(a) => Some(a.key.clone()),
            ControlC2s::TradeCancel(c) => Some(c.key.clone()),
            ControlC2s::Hello(_)
            | ControlC2s::Logout
            | ControlC2s::GetEconomy
            | ControlC2s::Chat(_)
            | ControlC2s::Command(_)
            | ControlC2s::GetLeaderboard(_) => None,
        };
        // A refused `GetEconomy` is answered under the empty key (no request has it).
        let refuse = |code, message: String, retry_after_ms| {
            vec![refused(
                key.clone().unwrap_or_default(),
                code,
                message,
                retry_after_ms,
            )]
        };
        if let Some(ms) = super::over_limit(&self.limiter) {
            return refuse(
                RefusalCode::RateLimited,
                format!("at most {} economy requests a second", self.limit.per_s),
                Some(ms),
            );
        }
        if self.waiting.len() >= ECONOMY_REQUESTS_IN_FLIGHT_MAX {
            return refuse(
                RefusalCode::RateLimited,
                format!("at most {ECONOMY_REQUESTS_IN_FLIGHT_MAX} economy requests waiting"),
                Some(RETRY_AFTER_MS),
            );
        }
        let Some(economy) = self.economy.clone() else {
            return refuse(
                RefusalCode::Unavailable,
                "this node keeps no economy".into(),
                None,
            );
        };
        let kind = match request {
            ControlC2s::GetEconomy => {
                self.waiting.spawn(async move {
                    match economy.store().economy_of(player).await {
                        Ok(state) => vec![economy_message(state.unwrap_or_default())],
                        Err(e) => vec![refused(
                            String::new(),
                            RefusalCode::Unavailable,
                            format!("the economy cannot be read: {e}"),
                            Some(RETRY_AFTER_MS),
                        )],
                    }
                });
                return Vec::new();
            }
            ControlC2s::Buy(b) => match check_key(&b.key)
                .and_then(|()| check_name("shop", &b.shop))
                .and_then(|()| check_name("item", &b.item))
            {
                Ok(()) => TxKind::Purchase {
                    shop: b.shop,
                    item: b.item,
                    count: b.count,
                },
                Err(message) => return refuse(RefusalCode::BadRequest, message, None),
            },
            ControlC2s::Refund(r) => {
                match check_key(&r.key).and_then(|()| check_key(&r.purchase)) {
                    Ok(()) => TxKind::Refund {
                        purchase: format!("{CLIENT_KEY_PREFIX}{}", r.purchase),
                    },
                    Err(message) => return refuse(RefusalCode::BadRequest, message, None),
                }
            }
            ControlC2s::TradeOffer(o) => match check_key(&o.key)
                .and_then(|()| goods("give", o.give))
                .and_then(|give| Ok((give, goods("take", o.take)?)))
            {
                Ok((give, take)) => TxKind::Offer {
                    with: o.with,
                    give,
                    take,
                    ttl_ms: u64::from(o.ttl_ms),
                },
                Err(message) => return refuse(RefusalCode::BadRequest, message, None),
            },
            ControlC2s::TradeAccept(a) => {
                match check_key(&a.key).and_then(|()| check_key(&a.offer)) {
                    Ok(()) => TxKind::Accept {
                        from: a.from,
                        offer: format!("{CLIENT_KEY_PREFIX}{}", a.offer),
                    },
                    Err(message) => return refuse(RefusalCode::BadRequest, message, None),
                }
            }
            ControlC2s::TradeCancel(c) => {
                match check_key(&c.key).and_then(|()| check_key(&c.offer)) {
                    Ok(()) => TxKind::Cancel {
                        offer: format!("{CLIENT_KEY_PREFIX}{}", c.offer),
                    },
                    Err(message) => return refuse(RefusalCode::BadRequest, message, None),
                }
            }
            ControlC2s::Hello(_)
            | ControlC2s::Logout
            | ControlC2s::Chat(_)
            | ControlC2s::Command(_)
            | ControlC2s::GetLeaderboard(_) => return Vec::new(),
        };
        let key = key.clone().unwrap_or_default();
        let tx = EconomyTx {
            player,
            key: format!("{CLIENT_KEY_PREFIX}{key}"),
            kind,
            at_ms: now_unix_ms(),
        };
        let (reply, outcome) = oneshot::channel();
        if node
            .try_send(Command::Economy {
                session,
                tx: Box::new(tx),
                reply,
            })
            .is_err()
        {
            return refuse(
                RefusalCode::Unavailable,
                "the node is busy".into(),
                Some(RETRY_AFTER_MS),
            );
        }
        let chat = self.chat.clone();
        self.waiting.spawn(async move {
            let outcome = outcome
                .await
                .unwrap_or_else(|_| Err(StoreError::Unavailable("node stopping".into())));
            if let Ok(TxOutcome::Applied(entry)) = &outcome
                && let Some(terms) = &entry.offer
            {
                // The player it names hears of it, wherever in the cluster it is.
                let offered = TradeOfferedS2c {
                    from: player,
                    offer: key.clone(),
                    give: goods_message(&terms.give),
                    take: goods_message(&terms.take),
                    open_until_ms: terms.open_until_ms,
                };
                chat.notify(terms.with, ControlS2c::TradeOffered(offered))
                    .await;
            }
            let mut answers = vec![ControlS2c::TxResult(TxResultS2c {
                key,
                outcome: outcome_message(&outcome),
            })];
            if let Ok(TxOutcome::Applied(_)) = outcome
                && let Ok(state) = economy.store().economy_of(player).await
            {
                answers.push(economy_message(state.unwrap_or_default()));
            }
            answers
        });
        Vec::new()
    }

    /// The answers of the next request to finish; pending forever while none waits.
    pub(super) async fn next(&mut self) -> Vec<ControlS2c> {
        match self.waiting.join_next().await {
            Some(Ok(answers)) => answers,
            // A panicked request answers nothing (its task is gone); the session goes on.
            Some(Err(_)) => Vec::new(),
            None => std::future::pending().await,
        }
    }
}

/// A `TxResult` refusing the request `key`.
fn refused(
    key: String,
    code: RefusalCode,
    message: String,
    retry_after_ms: Option<u32>,
) -> ControlS2c {
    ControlS2c::TxResult(TxResultS2c {
        key,
        outcome: TxOutcomeS2c::Refused(RefusedS2c {
            code,
            message,
            retry_after_ms,
        }),
    })
}

fn check_key(key: &str) -> Result<(), String> {
    if key.len() <= TX_KEY_BYTES_MAX && is_valid_key(key) {
        Ok(())
    } else {
        Err(format!(
            "key: must be 1 to {TX_KEY_BYTES_MAX} bytes of A-Z a-z 0-9 _ - . :"
        ))
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if (1..=ECONOMY_NAME_BYTES_MAX).contains(&name.len()) {
        Ok(())
    } else {
        Err(format!(
            "{what}: must be 1 to {ECONOMY_NAME_BYTES_MAX} bytes, got {}",
            name.len()
        ))
    }
}

/// The holdings `goods` names, or why they are out of bounds (`what` names the side).
fn goods(what: &str, goods: Goods) -> Result<Holdings, String> {
    if goods.items.len() > TRADE_ITEM_KINDS_MAX {
        return Err(format!(
            "{what}: at most {TRADE_ITEM_KINDS_MAX} item kinds, got {}",
            goods.items.len()
        ));
    }
    let mut items = BTreeMap::new();
    for ItemCount { item, count } in goods.items {
        check_name(what, &item)?;
        if items.insert(item, count).is_some() {
            return Err(format!("{what}: an item listed twice"));
        }
    }
    Ok(Holdings {
        coins: goods.coins,
        items,
    })
}

fn goods_message(h: &Holdings) -> Goods {
    Goods {
        coins: h.coins,
        items: h
            .items
            .iter()
            .map(|(item, &count)| ItemCount {
                item: item.clone(),
                count,
            })
            .collect(),
    }
}

fn economy_message(state: PlayerEconomy) -> ControlS2c {
    ControlS2c::Economy(EconomyS2c {
        coins: state.holdings.coins,
        items: state
            .holdings
            .items
            .into_iter()
            .map(|(item, count)| ItemCount { item, count })
            .collect(),
        xp: state.xp,
        level: state.level,
    })
}

fn outcome_message(outcome: &Result<TxOutcome, StoreError>) -> TxOutcomeS2c {
    let refused = |code, message: String, retry_after_ms| {
        TxOutcomeS2c::Refused(RefusedS2c {
            code,
            message,
            retry_after_ms,
        })
    };
    match outcome {
        Ok(TxOutcome::Applied(_)) => TxOutcomeS2c::Applied,
        Ok(TxOutcome::Duplicate(_)) => TxOutcomeS2c::Duplicate,
        Ok(TxOutcome::Refused(why)) => refused(refusal_code(why), why.to_string(), None),
        Err(e) => refused(
            RefusalCode::Unavailable,
            format!("the economy could not answer: {e}; send again with the same key"),
            Some(RETRY_AFTER_MS),
        ),
    }
}

fn refusal_code(why: &Refusal) -> RefusalCode {
    match why {
        Refusal::UnknownShop(_) => RefusalCode::UnknownShop,
        Refusal::UnknownItem(_) => RefusalCode::UnknownItem,
        Refusal::NotSold { .. } => RefusalCode::NotSold,
        Refusal::InsufficientCoins { .. } => RefusalCode::InsufficientCoins,
        Refusal::InsufficientItems { .. } => RefusalCode::InsufficientItems,
        Refusal::OutOfStock { .. } => RefusalCode::OutOfStock,
        Refusal::InventoryFull { .. } => RefusalCode::InventoryFull,
        Refusal::WalletFull => RefusalCode::WalletFull,
        Refusal::NotRefundable(_) => RefusalCode::NotRefundable,
        Refusal::AlreadyRefunded(_) => RefusalCode::AlreadyRefunded,
        Refusal::OfferNotOpen(_) => RefusalCode::OfferNotOpen,
        Refusal::BadKey
        | Refusal::BadAmount(_)
        | Refusal::AlreadyDelivered
        | Refusal::SamePlayer => RefusalCode::BadRequest,
    }
}
