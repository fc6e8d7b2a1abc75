//! Leaderboards: players ranked by XP, kills and coins ([`Board`]), highest first, ties
//! by player id (lowest first). A view of the economy, never its truth: scores are set
//! from a player's committed economy after each applied transaction, and a board can be
//! rebuilt whole from the store ([`Leaderboards::rebuild`]) after a loss or drift.
//!
//! Two implementations behind [`Leaderboards`]:
//! - in process (the embedded default): a sorted set per board behind one mutex;
//! - Redis (a cluster): a sorted set per board, [`KEY_PREFIX`]`:<board>`, shared by
//!   the cluster's nodes. Members are player ids zero-padded to 20 digits and scores are
//!   negated, so that `ZRANGE` (ascending) lists the highest score first and ties by
//!   ascending id, as in process. Redis scores are doubles: a score above 2^53 is rounded.
//!
//! Limits: [`TOP_MAX`] entries per read; a rebuild writes [`REBUILD_BATCH`] players per
//! round trip.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use redis::aio::ConnectionManager;
use tessera_shared::ids::PlayerId;

use crate::economy::PlayerEconomy;

/// Where the cluster's boards are: `tessera:leaderboard:<board>`.
pub const KEY_PREFIX: &str = "tessera:leaderboard";
/// Most entries one read returns.
pub const TOP_MAX: usize = 100;
/// Players written per round trip by a rebuild.
pub const REBUILD_BATCH: usize = 1_000;

/// What a board ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Board {
    /// Experience gained.
    Xp,
    /// NPCs killed.
    Kills,
    /// Coins held.
    Coins,
}

impl Board {
    /// Every board.
    pub const ALL: [Board; 3] = [Board::Xp, Board::Kills, Board::Coins];

    /// Its name in keys, URLs and commands.
    pub fn name(self) -> &'static str {
        match self {
            Board::Xp => "xp",
            Board::Kills => "kills",
            Board::Coins => "coins",
        }
    }

    /// The board named `name`.
    pub fn named(name: &str) -> Option<Board> {
        Board::ALL.into_iter().find(|b| b.name() == name)
    }

    /// `economy`'s score on this board.
    pub fn score(self, economy: &PlayerEconomy) -> u64 {
        match self {
            Board::Xp => economy.xp,
            Board::Kills => economy.kills,
            Board::Coins => economy.holdings.coins,
        }
    }

    fn key(self, prefix: &str) -> String {
        format!("{prefix}:{}", self.name())
    }
}

/// A player's place on a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Standing {
    /// 1 for the highest score.
    pub rank: u64,
    /// The player.
    pub player: PlayerId,
    /// Its score.
    pub score: u64,
}

/// Why a leaderboard could not be read or written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("leaderboard unavailable: {0}")]
pub struct LeaderboardError(pub String);

/// The leaderboards of a node: in process, or the cluster's in Redis.
#[derive(Clone)]
pub enum Leaderboards {
    /// In process.
    Local(Arc<Mutex<LocalBoards>>),
    /// In Redis, under keys starting with the prefix.
    Redis(ConnectionManager, Arc<str>),
}

impl std::fmt::Debug for Leaderboards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Leaderboards::Local(_) => "Leaderboards::Local",
            Leaderboards::Redis(..) => "Leaderboards::Redis",
        })
    }
}

/// The in-process boards.
#[derive(Debug, Default)]
pub struct LocalBoards {
    ranked: BTreeMap<Board, BTreeSet<(std::cmp::Reverse<u64>, PlayerId)>>,
    scores: HashMap<(Board, PlayerId), u64>,
}

impl LocalBoards {
    fn set(&mut self, board: Board, player: PlayerId, score: u64) {
        let ranked = self.ranked.entry(board).or_default();
        if let Some(old) = self.scores.insert((board, player), score) {
            ranked.remove(&(std::cmp::Reverse(old), player));
        }
        ranked.insert((std::cmp::Reverse(score), player));
    }
}

fn member(player: PlayerId) -> String {
    format!("{:020}", player.0)
}

fn unavailable(e: redis::RedisError) -> LeaderboardError {
    LeaderboardError(e.to_string())
}

/// A Redis score back to ours (scores are stored negated).
fn score_of(stored: f64) -> u64 {
    (-stored).max(0.0) as u64
}

impl Leaderboards {
    /// Empty in-process boards.
    pub fn local() -> Leaderboards {
        Leaderboards::Local(Arc::new(Mutex::new(LocalBoards::default())))
    }

    /// The cluster's boards over `commands` (a connection with timeouts, e.g.
    /// [`crate::redis_bus::connection`]), under [`KEY_PREFIX`].
    pub fn redis(commands: ConnectionManager) -> Leaderboards {
        Leaderboards::redis_under(commands, KEY_PREFIX)
    }

    /// Boards in Redis under keys `<prefix>:<board>` (tests keep theirs apart).
    pub fn redis_under(commands: ConnectionManager, prefix: &str) -> Leaderboards {
        Leaderboards::Redis(commands, prefix.into())
    }

    /// Sets the scores of each player of `economies` on every board.
    pub async fn record(
        &self,
        economies: &[(PlayerId, PlayerEconomy)],
    ) -> Result<(), LeaderboardError> {
        match self {
            Leaderboards::Local(boards) => {
                let mut boards = lock(boards);
                for (player, economy) in economies {
                    for board in Board::ALL {
                        boards.set(board, *player, board.score(economy));
                    }
                }
                Ok(())
            }
            Leaderboards::Redis(commands, prefix) => {
                let mut pipe = redis::pipe();
                for (player, economy) in economies {
                    for board in Board::ALL {
                        pipe.zadd(
                            board.key(prefix),
                            member(*player),
                            -(board.score(economy) as f64),
                        )
                        .ignore();
                    }
                }
                pipe.query_async::<()>(&mut commands.clone())
                    .await
                    .map_err(unavailable)
            }
        }
    }

    /// The first `count` (at most [`TOP_MAX`]) of `board`.
    pub async fn top(&self, board: Board, count: usize) -> Result<Vec<Standing>, LeaderboardError> {
        let count = count.min(TOP_MAX);
        if count == 0 {
            return Ok(Vec::new());
        }
        match self {
            Leaderboards::Local(boards) => Ok(lock(boards)
                .ranked
                .get(&board)
                .into_iter()
                .flatten()
                .take(count)
                .zip(1..)
                .map(|(&(std::cmp::Reverse(score), player), rank)| Standing {
                    rank,
                    player,
                    score,
                })
                .collect()),
            Leaderboards::Redis(commands, prefix) => {
                let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
                    .arg(board.key(prefix))
                    .arg(0)
                    .arg(count - 1)
                    .arg("WITHSCORES")
                    .query_async(&mut commands.clone())
                    .await
                    .map_err(unavailable)?;
                entries
                    .into_iter()
                    .zip(1..)
                    .map(|((member, score), rank)| {
                        let player = member
                            .parse()
                            .map(PlayerId)
                            .map_err(|_| LeaderboardError(format!("bad member {member:?}")))?;
                        Ok(Standing {
                            rank,
                            player,
                            score: score_of(score),
                        })
                    })
                    .collect()
            }
        }
    }

    /// `player`'s standing on `board`, if it is on it.
    pub async fn standing(
        &self,
        board: Board,
        player: PlayerId,
    ) -> Result<Option<Standing>, LeaderboardError> {
        match self {
            Leaderboards::Local(boards) => {
                let boards = lock(boards);
                let Some(&score) = boards.scores.get(&(board, player)) else {
                    return Ok(None);
                };
                let ahead = boards.ranked.get(&board).map_or(0, |ranked| {
                    ranked.range(..(std::cmp::Reverse(score), player)).count()
                });
                Ok(Some(Standing {
                    rank: ahead as u64 + 1,
                    player,
                    score,
                }))
            }
            Leaderboards::Redis(commands, prefix) => {
                let (rank, score): (Option<u64>, Option<f64>) = redis::pipe()
                    .cmd("ZRANK")
                    .arg(board.key(prefix))
                    .arg(member(player))
                    .cmd("ZSCORE")
                    .arg(board.key(prefix))
                    .arg(member(player))
                    .query_async(&mut commands.clone())
                    .await
                    .map_err(unavailable)?;
                Ok(rank.zip(score).map(|(rank, score)| Standing {
                    rank: rank + 1,
                    player,
                    score: score_of(score),
                }))
            }
        }
    }

    /// Replaces every board with the scores of `players` (the store's economies); how
    /// many players it wrote.
    pub async fn rebuild(
        &self,
        players: &BTreeMap<PlayerId, PlayerEconomy>,
    ) -> Result<usize, LeaderboardError> {
        match self {
            Leaderboards::Local(boards) => {
                let mut fresh = LocalBoards::default();
                for (player, economy) in players {
                    for board in Board::ALL {
                        fresh.set(board, *player, board.score(economy));
                    }
                }
                *lock(boards) = fresh;
            }
            Leaderboards::Redis(commands, prefix) => {
                // Built under temporary keys, then renamed over the boards: readers see
                // the old boards or the new ones, never half of one.
                let mut commands = commands.clone();
                let building = |board: Board| format!("{}:rebuilding", board.key(prefix));
                let mut pipe = redis::pipe();
                for board in Board::ALL {
                    pipe.del(building(board)).ignore();
                }
                pipe.query_async::<()>(&mut commands)
                    .await
                    .map_err(unavailable)?;
                let players: Vec<_> = players.iter().collect();
                for batch in players.chunks(REBUILD_BATCH) {
                    let mut pipe = redis::pipe();
                    for board in Board::ALL {
                        let entries: Vec<(f64, String)> = batch
                            .iter()
                            .map(|(p, e)| (-(board.score(e) as f64), member(**p)))
                            .collect();
                        pipe.zadd_multiple(building(board), &entries).ignore();
                    }
                    pipe.query_async::<()>(&mut commands)
                        .await
                        .map_err(unavailable)?;
                }
                let mut pipe = redis::pipe();
                pipe.atomic();
                for board in Board::ALL {
                    if players.is_empty() {
                        pipe.del(board.key(prefix)).ignore();
                    } else {
                        pipe.rename(building(board), board.key(prefix)).ignore();
                    }
                }
                pipe.query_async::<()>(&mut commands)
                    .await
                    .map_err(unavailable)?;
            }
        }
        Ok(players.len())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn economy(xp: u64, kills: u64, coins: u64) -> PlayerEconomy {
        let mut e = PlayerEconomy {
            xp,
            kills,
            ..PlayerEconomy::default()
        };
        e.holdings.coins = coins;
        e
    }

    #[tokio::test]
    async fn boards_rank_highest_first_ties_by_id_and_follow_updates() {
        let boards = Leaderboards::local();
        boards
            .record(&[
                (PlayerId(3), economy(50, 1, 10)),
                (PlayerId(1), economy(50, 2, 30)),
                (PlayerId(2), economy(90, 0, 20)),
            ])
            .await
            .unwrap();
        let top = boards.top(Board::Xp, 10).await.unwrap();
        let order: Vec<_> = top.iter().map(|s| (s.rank, s.player.0, s.score)).collect();
        assert_eq!(order, [(1, 2, 90), (2, 1, 50), (3, 3, 50)]);
        assert_eq!(
            boards.top(Board::Coins, 1).await.unwrap()[0].player,
            PlayerId(1)
        );
        // A new score moves the player; the old one is gone.
        boards
            .record(&[(PlayerId(3), economy(100, 1, 10))])
            .await
            .unwrap();
        let standing = boards.standing(Board::Xp, PlayerId(3)).await.unwrap();
        assert_eq!(standing.map(|s| (s.rank, s.score)), Some((1, 100)));
        assert_eq!(boards.top(Board::Xp, 10).await.unwrap().len(), 3);
        assert_eq!(boards.standing(Board::Xp, PlayerId(9)).await.unwrap(), None);
        // A rebuild replaces everything.
        let players = BTreeMap::from([(PlayerId(7), economy(1, 1, 1))]);
        assert_eq!(boards.rebuild(&players).await.unwrap(), 1);
        let top = boards.top(Board::Kills, 10).await.unwrap();
        assert_eq!(
            top.iter().map(|s| s.player).collect::<Vec<_>>(),
            [PlayerId(7)]
        );
    }
}
