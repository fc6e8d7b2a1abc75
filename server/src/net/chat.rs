//! A session's chat messages and slash commands (`Chat`, `Command` on the control stream,
//! PROTOCOL.md section 3): checked here (rate limits per kind from `[chat]` of
//! tessera.toml, text length and characters, the blocked-words list, mutes), then sent:
//! `say` and region messages by the driver, global messages and whispers to players on
//! other nodes over the cluster's chat ([`crate::chat`]). Each request is answered with a
//! `Reply` under its id; at most [`CHAT_REQUESTS_WAITING_MAX`] wait for their answer.
//!
//! Commands: `/help`, `/who`, `/w <player> <text>`, `/inventory`, `/top <xp|kills|coins>`,
//! `/buy <shop> <item> [count]`, `/trade <player> <n> <item|coins> for <n> <item|coins>`.
//! `GetLeaderboard` is answered here too (under the commands' limit). The economy's are
//! the structured requests' shorthand: they become a `GetEconomy`, `Buy` or `TradeOffer`
//! under a key of their own (`cmd-<ms>-<id>`, in the `Reply`) and are answered as those
//! are, after the `Reply`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::DefaultDirectRateLimiter;
use tessera_persistence::audit::{Sanction, SanctionRecord};
use tessera_persistence::leaderboard::{Board, Leaderboards, Standing};
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::limits::{
    CHAT_TEXT_BYTES_MAX, COMMAND_LINE_BYTES_MAX, LEADERBOARD_TOP_MAX, REPLY_TEXT_BYTES_MAX,
};
use tessera_shared::protocol::messages::*;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::auth::unix_now_s;
use crate::chat::Chat;
use crate::economy::now_unix_ms;
use crate::node::{Command, NodeHandle};
use crate::players::Players;

use super::command::{Parsed, parse};

/// Chat messages and commands of one session waiting for their answer; past it a request
/// is refused `RateLimited`.
pub(super) const CHAT_REQUESTS_WAITING_MAX: usize = 8;
/// How long a session trusts the mute it read last before reading it again (a mute or
/// unmute takes effect within this).
pub(super) const MUTE_RECHECK: Duration = Duration::from_secs(5);
/// How long an offer made with `/trade` stays open.
const COMMAND_OFFER_TTL_MS: u32 = 60_000;
/// When a request refused for a busy node or bus may be sent again.
const RETRY_AFTER_MS: u32 = 1_000;

const HELP: &str = "commands: /who (the players of your region), /w <player> <text> (whisper), \
/inventory, /top <xp|kills|coins>, /buy <shop> <item> [count], \
/trade <player> <n> <item|coins> for <n> <item|coins>, /help";
/// Entries `/top` lists.
const TOP_LISTED: usize = 10;

/// What a request comes to.
pub(super) struct Started {
    /// Answers to write now.
    pub answers: Vec<ControlS2c>,
    /// An economy request a command stands for, for the session's economy requests.
    pub economy: Option<ControlC2s>,
}

impl Started {
    fn answer(message: ControlS2c) -> Started {
        Started {
            answers: vec![message],
            economy: None,
        }
    }
}

/// The mute last read, and when.
type MuteCache = Arc<Mutex<Option<(Instant, Option<SanctionRecord>)>>>;

/// One session's chat messages and commands.
pub(super) struct ChatRequests {
    chat: Chat,
    players: Arc<Players>,
    leaderboards: Option<Leaderboards>,
    player: PlayerId,
    name: String,
    chat_limiter: DefaultDirectRateLimiter,
    command_limiter: DefaultDirectRateLimiter,
    mute: MuteCache,
    waiting: JoinSet<ControlS2c>,
}

impl ChatRequests {
    /// Requests of `player` (display name `name`) on this session.
    pub(super) fn new(
        chat: Chat,
        players: Arc<Players>,
        leaderboards: Option<Leaderboards>,
        player: PlayerId,
        name: String,
    ) -> ChatRequests {
        let config = chat.config();
        ChatRequests {
            chat_limiter: super::limiter(config.chat),
            command_limiter: super::limiter(config.commands),
            chat,
            players,
            leaderboards,
            player,
            name,
            mute: Arc::new(Mutex::new(None)),
            waiting: JoinSet::new(),
        }
    }

    /// Starts a `Chat` or a `Command` of the session `session`.
    pub(super) fn start(
        &mut self,
        request: ControlC2s,
        session: u64,
        node: &NodeHandle,
    ) -> Started {
        let started = match request {
            ControlC2s::Chat(chat) => self.start_chat(chat, session, node),
            ControlC2s::Command(command) => self.start_command(command, session, node),
            ControlC2s::GetLeaderboard(get) => self.start_leaderboard(get),
            _ => return Started::answer(refused(0, RefusalCode::BadRequest, "not chat".into())),
        };
        let refusals = started
            .answers
            .iter()
            .filter(|a| matches!(a, ControlS2c::Reply(r) if r.refused.is_some()))
            .count();
        self.chat
            .stats()
            .refused
            .fetch_add(refusals as u64, std::sync::atomic::Ordering::Relaxed);
        started
    }

    /// The refusal of request `id` when [`CHAT_REQUESTS_WAITING_MAX`] already wait.
    fn full(&self, id: u32) -> Option<Started> {
        (self.waiting.len() >= CHAT_REQUESTS_WAITING_MAX).then(|| {
            Started::answer(rate_limited(
                id,
                format!("at most {CHAT_REQUESTS_WAITING_MAX} chat requests waiting"),
                RETRY_AFTER_MS,
            ))
        })
    }

    fn start_chat(&mut self, chat: ChatC2s, session: u64, node: &NodeHandle) -> Started {
        let id = chat.id;
        if let Some(ms) = super::over_limit(&self.chat_limiter) {
            let limit = self.chat.config().chat.per_s;
            return Started::answer(rate_limited(
                id,
                format!("at most {limit} chat messages a second"),
                ms,
            ));
        }
        if let Err((code, message)) = check_text("text", &chat.text, CHAT_TEXT_BYTES_MAX) {
            return Started::answer(refused(id, code, message));
        }
        if let Some(word) = self.chat.blocked().find(&chat.text) {
            return Started::answer(refused(
                id,
                RefusalCode::Moderated,
                format!("the message holds a blocked word ({word:?})"),
            ));
        }
        if chat.channel == ChatChannel::Whisper(self.player) {
            return Started::answer(refused(
                id,
                RefusalCode::BadRequest,
                "a whisper to yourself".into(),
            ));
        }
        if let Some(full) = self.full(id) {
            return full;
        }
        let channel = chat.channel;
        let message = ChatS2c {
            channel,
            from: self.player,
            from_name: self.name.clone(),
            text: chat.text,
        };
        let (chat, node, players, mute) = (
            self.chat.clone(),
            node.clone(),
            self.players.clone(),
            self.mute.clone(),
        );
        let player = self.player;
        self.waiting.spawn(async move {
            if let Some(why) = muted(&players, &mute, player).await {
                return refused(id, RefusalCode::Muted, why);
            }
            match send(&chat, &node, session, message).await {
                Ok(()) => {
                    chat.stats().sent[channel_index(channel)]
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    done(id, String::new())
                }
                Err((code, why)) => refused(id, code, why),
            }
        });
        Started {
            answers: Vec::new(),
            economy: None,
        }
    }

    fn start_command(&mut self, command: CommandC2s, session: u64, node: &NodeHandle) -> Started {
        let id = command.id;
        if let Some(ms) = super::over_limit(&self.command_limiter) {
            let limit = self.chat.config().commands.per_s;
            return Started::answer(rate_limited(
                id,
                format!("at most {limit} commands a second"),
                ms,
            ));
        }
        let parsed = check_text("line", &command.line, COMMAND_LINE_BYTES_MAX)
            .and_then(|()| parse(&command.line, self.player));
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err((code, message)) => return Started::answer(refused(id, code, message)),
        };
        let key = || format!("cmd-{}-{id}", now_unix_ms());
        match parsed {
            Parsed::Help => Started::answer(done(id, HELP.into())),
            Parsed::Whisper { to, text } => {
                let chat = ChatC2s {
                    id,
                    channel: ChatChannel::Whisper(to),
                    text,
                };
                self.start_chat(chat, session, node)
            }
            Parsed::Who => {
                if let Some(full) = self.full(id) {
                    return full;
                }
                let (chat, node, player) = (self.chat.clone(), node.clone(), self.player);
                self.waiting
                    .spawn(async move { who(id, &chat, &node, player).await });
                Started {
                    answers: Vec::new(),
                    economy: None,
                }
            }
            Parsed::Top(board) => {
                if let Some(full) = self.full(id) {
                    return full;
                }
                let Some(leaderboards) = self.leaderboards.clone() else {
                    return Started::answer(refused(
                        id,
                        RefusalCode::Unavailable,
                        "this node keeps no leaderboards".into(),
                    ));
                };
                let (chat, player) = (self.chat.clone(), self.player);
                self.waiting
                    .spawn(async move { top(id, &chat, &leaderboards, board, player).await });
                Started {
                    answers: Vec::new(),
                    economy: None,
                }
            }
            Parsed::Inventory => Started {
                answers: vec![done(id, String::new())],
                economy: Some(ControlC2s::GetEconomy),
            },
            Parsed::Buy { shop, item, count } => {
                let key = key();
                Started {
                    answers: vec![done(
                        id,
                        format!("buying {count} {item} from {shop}: key {key}"),
                    )],
                    economy: Some(ControlC2s::Buy(BuyC2s {
                        key,
                        shop,
                        item,
                        count,
                    })),
                }
            }
            Parsed::Trade { with, give, take } => {
                let key = key();
                Started {
                    answers: vec![done(
                        id,
                        format!("offering player {} a trade: key {key}", with.0),
                    )],
                    economy: Some(ControlC2s::TradeOffer(TradeOfferC2s {
                        key,
                        with,
                        give,
                        take,
                        ttl_ms: COMMAND_OFFER_TTL_MS,
                    })),
                }
            }
        }
    }

    fn start_leaderboard(&mut self, get: GetLeaderboardC2s) -> Started {
        if let Some(ms) = super::over_limit(&self.command_limiter) {
            let limit = self.chat.config().commands.per_s;
            return Started::answer(rate_limited(
                0,
                format!("at most {limit} commands a second"),
                ms,
            ));
        }
        if !(1..=LEADERBOARD_TOP_MAX).contains(&get.count) {
            return Started::answer(refused(
                0,
                RefusalCode::BadRequest,
                format!("count: 1 to {LEADERBOARD_TOP_MAX}, got {}", get.count),
            ));
        }
        if let Some(full) = self.full(0) {
            return full;
        }
        let Some(leaderboards) = self.leaderboards.clone() else {
            return Started::answer(refused(
                0,
                RefusalCode::Unavailable,
                "this node keeps no leaderboards".into(),
            ));
        };
        let player = self.player;
        self.waiting.spawn(async move {
            let board = board_of(get.board);
            let read = async {
                let top = leaderboards.top(board, usize::from(get.count)).await?;
                let you = leaderboards.standing(board, player).await?;
                Ok::<_, tessera_persistence::leaderboard::LeaderboardError>((top, you))
            };
            match read.await {
                Ok((top, you)) => ControlS2c::Leaderboard(LeaderboardS2c {
                    board: get.board,
                    top: top.iter().map(standing_message).collect(),
                    you: you.as_ref().map(standing_message),
                }),
                Err(e) => refused(0, RefusalCode::Unavailable, e.to_string()),
            }
        });
        Started {
            answers: Vec::new(),
            economy: None,
        }
    }

    /// The answer of the next request to finish; pending forever while none waits.
    pub(super) async fn next(&mut self) -> ControlS2c {
        loop {
            match self.waiting.join_next().await {
                Some(Ok(answer)) => {
                    if matches!(&answer, ControlS2c::Reply(r) if r.refused.is_some()) {
                        self.chat
                            .stats()
                            .refused
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return answer;
                }
                // A panicked request answers nothing (its task is gone); the session goes on.
                Some(Err(_)) => continue,
                None => std::future::pending().await,
            }
        }
    }
}

/// Why `player` may not chat now (its mute in force), read through `cache`.
async fn muted(players: &Players, cache: &MuteCache, player: PlayerId) -> Option<String> {
    let known = lock(cache)
        .as_ref()
        .filter(|(at, _)| at.elapsed() < MUTE_RECHECK)
        .map(|(_, mute)| mute.clone());
    let mute = match known {
        Some(mute) => mute,
        None => {
            // A store that cannot answer does not silence everyone: the last mute read
            // holds, or none.
            let read = players.sanction(Sanction::Mute, player, unix_now_s()).await;
            let mut cache = lock(cache);
            match read {
                Ok(mute) => {
                    *cache = Some((Instant::now(), mute.clone()));
                    mute
                }
                Err(_) => cache.as_ref().and_then(|(_, mute)| mute.clone()),
            }
        }
    };
    let mute = mute.filter(|m| m.is_in_force(unix_now_s()))?;
    Some(match mute.until_unix_s {
        Some(until) => format!("muted until {until} (Unix seconds): {}", mute.reason),
        None => format!("muted: {}", mute.reason),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends `message` on its channel.
async fn send(
    chat: &Chat,
    node: &NodeHandle,
    session: u64,
    message: ChatS2c,
) -> Result<(), (RefusalCode, String)> {
    let busy = || {
        (
            RefusalCode::Unavailable,
            "the node is busy; send again".to_string(),
        )
    };
    let from = message.from;
    let radius_m = match message.channel {
        ChatChannel::Say => Some(Some(chat.config().say_radius_m as f32)),
        ChatChannel::Region => Some(None),
        ChatChannel::Global | ChatChannel::Whisper(_) => None,
    };
    if let Some(radius_m) = radius_m {
        let (reply, reached) = oneshot::channel();
        let command = Command::Chat {
            from,
            session,
            radius_m,
            message: Box::new(message),
            reply,
        };
        node.try_send(command).map_err(|_| busy())?;
        return match reached.await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err((
                RefusalCode::Unavailable,
                "you are not in the world on this node".into(),
            )),
            Err(_) => Err(busy()),
        };
    }
    if let ChatChannel::Whisper(to) = message.channel {
        // Here: straight to its session. Elsewhere in the cluster: over the chat.
        let (reply, reached) = oneshot::channel();
        let command = Command::DeliverChat {
            message: Box::new(message.clone()),
            reply: Some(reply),
        };
        node.try_send(command).map_err(|_| busy())?;
        if reached.await.unwrap_or(false) {
            return Ok(());
        }
        if !chat.is_elsewhere(to).await {
            return Err((
                RefusalCode::PlayerNotFound,
                format!("player {} is not in the world", to.0),
            ));
        }
    }
    if chat.publish(&message).await {
        Ok(())
    } else {
        Err((
            RefusalCode::Unavailable,
            "the cluster's chat is unavailable; send again".into(),
        ))
    }
}

/// The `/who` answer.
async fn who(id: u32, chat: &Chat, node: &NodeHandle, player: PlayerId) -> ControlS2c {
    let (reply, list) = oneshot::channel();
    if node.try_send(Command::Who { player, reply }).is_err() {
        return refused(
            id,
            RefusalCode::Unavailable,
            "the node is busy; send again".into(),
        );
    }
    let Ok(Some(list)) = list.await else {
        return refused(
            id,
            RefusalCode::Unavailable,
            "you are not in the world on this node".into(),
        );
    };
    let names = chat.names(&list.players);
    let mut text = format!(
        "region {}: {} players ({} on this node)",
        list.region.0, list.region_total, list.node_total
    );
    for (i, (player, name)) in list.players.iter().zip(names).enumerate() {
        let entry = if name.is_empty() {
            format!("{} {}", if i == 0 { ":" } else { "," }, player.0)
        } else {
            format!("{} {} {name}", if i == 0 { ":" } else { "," }, player.0)
        };
        if text.len() + entry.len() > REPLY_TEXT_BYTES_MAX - 16 {
            break;
        }
        text.push_str(&entry);
    }
    if list.region_total > list.players.len() {
        text.push_str(", ...");
    }
    done(id, text)
}

/// The `/top` answer: the first [`TOP_LISTED`] of `board` and the player's standing.
async fn top(
    id: u32,
    chat: &Chat,
    leaderboards: &Leaderboards,
    board: Board,
    player: PlayerId,
) -> ControlS2c {
    let read = async {
        let top = leaderboards.top(board, TOP_LISTED).await?;
        let you = leaderboards.standing(board, player).await?;
        Ok::<_, tessera_persistence::leaderboard::LeaderboardError>((top, you))
    };
    let (top, you) = match read.await {
        Ok(read) => read,
        Err(e) => return refused(id, RefusalCode::Unavailable, e.to_string()),
    };
    let players: Vec<PlayerId> = top.iter().map(|s| s.player).collect();
    let names = chat.names(&players);
    let mut text = format!("top {}:", board.name());
    for (s, name) in top.iter().zip(names) {
        let who = if name.is_empty() {
            format!("player {}", s.player.0)
        } else {
            name
        };
        text.push_str(&format!(" {}. {who} {},", s.rank, s.score));
    }
    text.pop();
    match you {
        Some(s) => text.push_str(&format!("; you: {}. with {}", s.rank, s.score)),
        None => text.push_str("; you are not on it yet"),
    }
    done(id, text)
}

fn board_of(kind: LeaderboardKind) -> Board {
    match kind {
        LeaderboardKind::Xp => Board::Xp,
        LeaderboardKind::Kills => Board::Kills,
        LeaderboardKind::Coins => Board::Coins,
    }
}

fn standing_message(s: &Standing) -> StandingS2c {
    StandingS2c {
        rank: s.rank,
        player: s.player,
        score: s.score,
    }
}

/// Why `text` (the field `what`) may not be sent: empty or only spaces, over `max` bytes,
/// or holding control or bidirectional-override characters.
fn check_text(what: &str, text: &str, max: usize) -> Result<(), (RefusalCode, String)> {
    let bad = |message: String| Err((RefusalCode::BadRequest, message));
    if text.len() > max {
        return bad(format!("{what}: at most {max} bytes, got {}", text.len()));
    }
    if text.trim().is_empty() {
        return bad(format!("{what}: empty"));
    }
    let forbidden =
        |c: char| c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    if let Some(c) = text.chars().find(|&c| forbidden(c)) {
        return bad(format!(
            "{what}: control and direction-override characters are not allowed (U+{:04X})",
            c as u32
        ));
    }
    Ok(())
}

fn channel_index(channel: ChatChannel) -> usize {
    match channel {
        ChatChannel::Say => 0,
        ChatChannel::Region => 1,
        ChatChannel::Global => 2,
        ChatChannel::Whisper(_) => 3,
    }
}

fn done(id: u32, text: String) -> ControlS2c {
    ControlS2c::Reply(ReplyS2c {
        id,
        refused: None,
        text,
    })
}

fn refused(id: u32, code: RefusalCode, message: String) -> ControlS2c {
    reply_refused(id, code, message, None)
}

fn rate_limited(id: u32, message: String, retry_after_ms: u32) -> ControlS2c {
    reply_refused(id, RefusalCode::RateLimited, message, Some(retry_after_ms))
}

fn reply_refused(
    id: u32,
    code: RefusalCode,
    message: String,
    retry_after_ms: Option<u32>,
) -> ControlS2c {
    ControlS2c::Reply(ReplyS2c {
        id,
        refused: Some(RefusedS2c {
            code,
            message,
            retry_after_ms,
        }),
        text: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_bounded_and_printable() {
        assert!(check_text("text", "hello, world ✓", 64).is_ok());
        for bad in ["", "   ", "a\nb", "a\u{0}b", "evil\u{202E}txt", "\u{2066}x"] {
            assert!(check_text("text", bad, 64).is_err(), "{bad:?}");
        }
        assert!(check_text("text", &"x".repeat(65), 64).is_err());
    }
}
