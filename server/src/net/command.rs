//! Slash commands as typed (`Command.line`, PROTOCOL.md section 3): parsed into what
//! they stand for, or refused with the command's usage.

use tessera_persistence::leaderboard::Board;
use tessera_shared::ids::PlayerId;
use tessera_shared::protocol::messages::{Goods, ItemCount, RefusalCode};

/// A parsed command.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    Help,
    Who,
    Top(Board),
    Whisper {
        to: PlayerId,
        text: String,
    },
    Inventory,
    Buy {
        shop: String,
        item: String,
        count: u32,
    },
    Trade {
        with: PlayerId,
        give: Goods,
        take: Goods,
    },
}

/// Parses a command line of `player`, or says what is wrong with it.
pub(super) fn parse(line: &str, player: PlayerId) -> Result<Parsed, (RefusalCode, String)> {
    let bad = |usage: &str| Err((RefusalCode::BadRequest, format!("usage: {usage}")));
    let Some(rest) = line.strip_prefix('/') else {
        return Err((
            RefusalCode::BadRequest,
            "a command starts with / (/help lists them)".into(),
        ));
    };
    let mut words = rest.split_whitespace();
    let name = words.next().unwrap_or_default().to_lowercase();
    let args: Vec<&str> = words.collect();
    match name.as_str() {
        "help" => Ok(Parsed::Help),
        "who" if args.is_empty() => Ok(Parsed::Who),
        "who" => bad("/who"),
        "top" => match args.as_slice() {
            [board] => Board::named(&board.to_lowercase())
                .map(Parsed::Top)
                .ok_or(())
                .or_else(|()| bad("/top <xp|kills|coins>")),
            _ => bad("/top <xp|kills|coins>"),
        },
        "inventory" | "inv" if args.is_empty() => Ok(Parsed::Inventory),
        "inventory" | "inv" => bad("/inventory"),
        "w" | "whisper" => {
            const USAGE: &str = "/w <player id> <text>";
            let (Some(to), true) = (args.first().and_then(|a| player_id(a)), args.len() >= 2)
            else {
                return bad(USAGE);
            };
            // The text as typed, after the player's id.
            let text = rest
                .trim_start()
                .split_once(char::is_whitespace)
                .map(|(_, r)| r.trim_start())
                .and_then(|r| r.split_once(char::is_whitespace))
                .map(|(_, text)| text.trim().to_owned())
                .unwrap_or_default();
            if to == player {
                return Err((RefusalCode::BadRequest, "a whisper to yourself".into()));
            }
            Ok(Parsed::Whisper { to, text })
        }
        "buy" => {
            const USAGE: &str = "/buy <shop> <item> [count]";
            match args.as_slice() {
                [shop, item] => Ok(Parsed::Buy {
                    shop: (*shop).into(),
                    item: (*item).into(),
                    count: 1,
                }),
                [shop, item, count] => match count.parse::<u32>() {
                    Ok(count) if count >= 1 => Ok(Parsed::Buy {
                        shop: (*shop).into(),
                        item: (*item).into(),
                        count,
                    }),
                    _ => bad(USAGE),
                },
                _ => bad(USAGE),
            }
        }
        "trade" => {
            const USAGE: &str = "/trade <player id> <n> <item|coins> for <n> <item|coins>";
            let [with, n, what, "for", m, other] = args.as_slice() else {
                return bad(USAGE);
            };
            let (Some(with), Some(give), Some(take)) =
                (player_id(with), goods(n, what), goods(m, other))
            else {
                return bad(USAGE);
            };
            if with == player {
                return Err((RefusalCode::BadRequest, "a trade with yourself".into()));
            }
            Ok(Parsed::Trade { with, give, take })
        }
        _ => Err((
            RefusalCode::UnknownCommand,
            format!("no command /{name}; /help lists them"),
        )),
    }
}

/// A player id as typed.
fn player_id(text: &str) -> Option<PlayerId> {
    text.parse().ok().map(PlayerId).filter(|p| p.is_valid())
}

/// `<n> <item|coins>` as goods.
fn goods(n: &str, what: &str) -> Option<Goods> {
    let n: u32 = n.parse().ok().filter(|&n| n >= 1)?;
    Some(if what == "coins" {
        Goods {
            coins: u64::from(n),
            items: Vec::new(),
        }
    } else {
        Goods {
            coins: 0,
            items: vec![ItemCount {
                item: what.into(),
                count: n,
            }],
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: PlayerId = PlayerId(7);

    fn code(line: &str) -> RefusalCode {
        parse(line, ME).expect_err(line).0
    }

    #[test]
    fn commands_parse_to_what_they_stand_for() {
        assert_eq!(parse("/help", ME), Ok(Parsed::Help));
        assert_eq!(parse("/WHO", ME), Ok(Parsed::Who));
        assert_eq!(parse("/inv", ME), Ok(Parsed::Inventory));
        assert_eq!(parse("/top XP", ME), Ok(Parsed::Top(Board::Xp)));
        assert_eq!(
            parse("/w 42   hello  there ", ME),
            Ok(Parsed::Whisper {
                to: PlayerId(42),
                text: "hello  there".into()
            })
        );
        assert_eq!(
            parse("/buy general_store bread 3", ME),
            Ok(Parsed::Buy {
                shop: "general_store".into(),
                item: "bread".into(),
                count: 3
            })
        );
        let Ok(Parsed::Trade { with, give, take }) = parse("/trade 9 5 coins for 1 wolf_pelt", ME)
        else {
            panic!("a trade");
        };
        assert_eq!(
            (with, give.coins, take.items[0].item.as_str()),
            (PlayerId(9), 5, "wolf_pelt")
        );
    }

    #[test]
    fn bad_commands_get_a_clear_refusal() {
        assert_eq!(code("/dance"), RefusalCode::UnknownCommand);
        for line in [
            "who",
            "/who am i",
            "/top",
            "/top gold",
            "/w",
            "/w 42",
            "/w bob hi",
            "/w 7 hi",
            "/buy",
            "/buy shop item 0",
            "/buy shop item -1",
            "/buy shop item many",
            "/trade 9 5 coins 1 pelt",
            "/trade 9 0 coins for 1 pelt",
            "/trade 7 1 coins for 1 pelt",
            "/trade x 1 coins for 1 pelt",
        ] {
            assert_eq!(code(line), RefusalCode::BadRequest, "{line}");
        }
        let (_, message) = parse("/buy", ME).unwrap_err();
        assert!(
            message.contains("usage: /buy <shop> <item> [count]"),
            "{message}"
        );
    }
}
