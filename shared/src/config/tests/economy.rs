//! `[progression]`, `[economy]`, `[items]`, `[loot]` and `[shops]`: what loads, what each
//! mistake reports, and the amounts the formulas give.

use super::*;

/// `BALANCE` with the line holding `needle` replaced by `text`, and that line's number.
fn replaced(needle: &str, text: &str) -> (String, usize) {
    let line = BALANCE
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line holds {needle:?}"))
        + 1;
    (with_line(BALANCE, line, text), line)
}

/// The errors of `BALANCE` with the line holding `needle` replaced by `text`.
fn errors_with(needle: &str, text: &str) -> (Vec<String>, usize) {
    let (balance, line) = replaced(needle, text);
    (balance_errors(&balance), line)
}

#[test]
fn the_fixture_economy_loads_resolved() {
    let c = load(TESSERA, WORLD, BALANCE).expect("loads");
    let b = &c.balance;
    // Sorted by id: pelt, potion.
    let ids: Vec<&str> = b.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, ["pelt", "potion"]);
    let potion = b.item_index("potion").expect("potion");
    assert_eq!(b.items[potion].stack_size, 2);
    assert_eq!(b.economy.inventory_slots, 4);
    assert_eq!(b.economy.starter_coins, 50);
    assert_eq!(
        b.economy.starter_items,
        [ItemStack {
            item: potion,
            count: 3
        }]
    );
    let wolf = b
        .archetypes
        .iter()
        .position(|a| a.name == "wolf")
        .expect("wolf");
    let loot = b.loot_of(wolf).expect("the wolf drops loot");
    assert_eq!(loot.drops.len(), 2);
    assert_eq!(loot.drops[0].what, Loot::Coins);
    assert_eq!(
        loot.drops[1].what,
        Loot::Item(b.item_index("pelt").expect("pelt"))
    );
    let hero = b.player_archetype;
    assert!(
        b.loot_of(hero).is_none(),
        "an archetype without [loot] drops nothing"
    );
    let store = &b.shops[b.shop_index("store").expect("store")];
    // 10 coins at 150%.
    assert_eq!(store.goods[0].price, 15);
    assert_eq!(
        (store.goods[0].stock_max, store.goods[0].restock_per_min),
        (5, 1)
    );
}

#[test]
fn the_shipped_economy_loads() {
    let b = Config::embedded_default().balance.clone();
    assert!(b.items.len() >= 3 && !b.shops.is_empty() && !b.loot.is_empty());
    // Every hostile archetype drops something: killing should pay.
    for (i, a) in b.archetypes.iter().enumerate() {
        if a.hostile {
            assert!(b.loot_of(i).is_some(), "{} drops nothing", a.name);
        }
    }
    // Levels need more XP as they go up, so the cap takes a while.
    let p = &b.progression;
    assert!((1..p.level_cap).all(|l| p.xp_to_next(l + 1) > p.xp_to_next(l)));
}

#[test]
fn economy_sections_are_optional_but_progression_and_economy_are_not() {
    let mut balance = String::new();
    let mut skipping = false;
    for line in BALANCE.lines() {
        if line.starts_with('[') {
            skipping = ["[items", "[loot", "[shops", "[economy", "[progression"]
                .iter()
                .any(|s| line.starts_with(s));
        }
        if !skipping {
            balance.push_str(line);
            balance.push('\n');
        }
    }
    let e = balance_errors(&balance);
    assert_eq!(
        e,
        [
            "balance.toml:1:1: missing table [progression]; required keys: level_cap, xp_to_next, kill_xp",
            "balance.toml:1:1: missing table [economy]; required keys: inventory_slots, starter_coins, starter_items",
        ]
    );
    balance.push_str(
        "[progression]\nlevel_cap = 1\nxp_to_next = \"1\"\nkill_xp = \"0\"\n\
         [economy]\ninventory_slots = 1\nstarter_coins = 0\nstarter_items = []\n",
    );
    let b = load(TESSERA, WORLD, &balance)
        .expect("an economy without items loads")
        .balance;
    assert!(b.items.is_empty() && b.loot.is_empty() && b.shops.is_empty());
}

#[test]
fn unknown_items_are_located_and_suggested() {
    let (e, line) = errors_with(
        "drops = [",
        r#"drops = [{ item = "pelts", chance = 1, amount = "1" }]"#,
    );
    assert_eq!(
        e,
        [format!(
            r#"balance.toml:{line}:19: unknown item "pelts"; defined: pelt, potion; did you mean "pelt"?"#
        )]
    );
    let (e, line) = errors_with(
        "starter_items =",
        r#"starter_items = [{ item = "potoin", count = 1 }]"#,
    );
    assert_eq!(
        e,
        [format!(
            r#"balance.toml:{line}:27: unknown item "potoin"; defined: pelt, potion; did you mean "potion"?"#
        )]
    );
    let (e, line) = errors_with(
        "goods = [",
        r#"goods = [{ item = "sword", stock_max = 1, restock_per_min = 0 }]"#,
    );
    assert_eq!(
        e,
        [format!(
            r#"balance.toml:{line}:19: unknown item "sword"; defined: pelt, potion"#
        )]
    );
}

#[test]
fn loot_of_an_unknown_archetype_is_an_error() {
    let (e, line) = errors_with("[loot.wolf]", "[loot.wolff]");
    assert_eq!(
        e,
        [format!(
            r#"balance.toml:{line}:7: unknown archetype "wolff"; defined: hero, wolf; did you mean "wolf"?"#
        )]
    );
}

#[test]
fn coins_is_no_item_id() {
    let (e, line) = errors_with("[items.pelt]", "[items.coins]");
    // The loot line naming the old id is reported too; "coins" is still a known id, so
    // that the one mistake is not reported again wherever the item is used.
    let loot_line = BALANCE
        .lines()
        .position(|l| l.starts_with("drops ="))
        .unwrap()
        + 1;
    assert_eq!(
        e,
        [
            format!(
                r#"balance.toml:{line}:8: item id "coins" is reserved for the currency; choose another id"#
            ),
            format!(r#"balance.toml:{loot_line}:80: unknown item "pelt"; defined: coins, potion"#),
        ]
    );
}

#[test]
fn a_starter_kit_must_fit_the_inventory() {
    // Potions stack by 2: 9 need 5 slots of 4.
    let (e, line) = errors_with(
        "starter_items =",
        r#"starter_items = [{ item = "potion", count = 9 }]"#,
    );
    assert_eq!(
        e,
        [format!(
            "balance.toml:{line}:17: the starter kit needs 5 inventory slots; inventory_slots is 4"
        )]
    );
    let (balance, _) = replaced(
        "starter_items =",
        r#"starter_items = [{ item = "potion", count = 8 }]"#,
    );
    assert!(
        load(TESSERA, WORLD, &balance).is_ok(),
        "8 potions fill 4 slots exactly"
    );
}

#[test]
fn items_listed_twice_are_errors() {
    let (e, line) = errors_with(
        "goods = [",
        r#"goods = [{ item = "potion", stock_max = 1, restock_per_min = 0 }, { item = "potion", stock_max = 2, restock_per_min = 0 }]"#,
    );
    assert_eq!(
        e,
        [format!(
            r#"balance.toml:{line}:76: item "potion" is listed twice in shop "store""#
        )]
    );
    let (e, line) = errors_with(
        "starter_items =",
        r#"starter_items = [{ item = "pelt", count = 1 }, { item = "pelt", count = 1 }]"#,
    );
    assert_eq!(
        e,
        [format!(
            r#"balance.toml:{line}:57: item "pelt" is listed twice in the starter kit"#
        )]
    );
}

#[test]
fn economy_values_out_of_range_and_bad_formulas_are_located() {
    let (e, line) = errors_with(
        "drops = [",
        r#"drops = [{ item = "coins", chance = 1.5, amount = "1" }]"#,
    );
    assert_eq!(
        e,
        [format!(
            "balance.toml:{line}:37: chance must be between 0 and 1, got 1.5"
        )]
    );
    let (e, line) = errors_with("kill_xp =", r#"kill_xp = "10 * level + atk""#);
    assert_eq!(
        e,
        [format!(
            r#"balance.toml:{line}:25: formula kill_xp: unknown variable "atk"; allowed: level, target_level"#
        )]
    );
    let (e, line) = errors_with("stack_size = 2", "stack_size = 0");
    assert_eq!(
        e,
        [format!(
            "balance.toml:{line}:14: stack_size must be between 1 and 1000000, got 0"
        )]
    );
    let (e, line) = errors_with("goods = [", "goods = []");
    assert_eq!(
        e,
        [format!(
            "balance.toml:{line}:9: 0 goods; a shop sells 1 to 256"
        )]
    );
    let (e, line) = errors_with(r#"name = "Store""#, "name = \"\"");
    assert_eq!(
        e,
        [format!(
            r#"balance.toml:{line}:8: name must be 1 to 64 characters without control characters, got """#
        )]
    );
}

#[test]
fn formula_amounts_are_whole_bounded_and_never_negative() {
    let (balance, _) = replaced("kill_xp =", r#"kill_xp = "target_level * 2.9 - level""#);
    let (balance, _) = {
        let line = balance
            .lines()
            .position(|l| l.starts_with("xp_to_next"))
            .unwrap()
            + 1;
        (
            with_line(&balance, line, r#"xp_to_next = "level - 3""#),
            line,
        )
    };
    let b = load(TESSERA, WORLD, &balance).expect("loads").balance;
    let p = &b.progression;
    assert_eq!(p.kill_xp(1, 2), 4, "5.8 - 1 rounds down");
    assert_eq!(p.kill_xp(10, 1), 0, "negative gives none");
    assert_eq!(p.xp_to_next(10), 7);
    assert_eq!(p.xp_to_next(1), 1, "below 1 counts as 1");
    let huge = Formula::compile("1000000000 * 1000000000", LOOT_VARS).expect("compiles");
    let drop = LootDrop {
        what: Loot::Coins,
        chance: 1.0,
        amount: huge,
    };
    assert_eq!(drop.amount(1), LOOT_AMOUNT_MAX);
    let nan = Formula::compile("target_level / 0 - target_level / 0", LOOT_VARS).expect("compiles");
    let drop = LootDrop {
        what: Loot::Coins,
        chance: 1.0,
        amount: nan,
    };
    assert_eq!(drop.amount(1), 0, "NaN drops nothing");
    assert_eq!(whole(f64::INFINITY, 7), 0);
    assert_eq!(whole(12.9, 7), 7);
}

#[test]
fn economy_changes_are_one_line_per_value() {
    let old = load(TESSERA, WORLD, BALANCE).expect("loads").balance;
    let edited = BALANCE
        .replace("price = 10", "price = 11")
        .replace("stock_max = 5", "stock_max = 6")
        .replace("[items.pelt]", "[items.fur]")
        .replace(r#"item = "pelt""#, r#"item = "fur""#);
    let new = load(TESSERA, WORLD, &edited).expect("loads").balance;
    let changes: Vec<String> = diff_balance(&old, &new)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        changes,
        [
            r#"items.fur added: { name = "Pelt", price = 3, stack_size = 10 }"#,
            r#"items.pelt removed (was { name = "Pelt", price = 3, stack_size = 10 })"#,
            "items.potion.price 10 -> 11",
            r#"loot.wolf.drops [{ item = "coins", chance = 1, amount = "2 * target_level" }, { item = "pelt", chance = 0.5, amount = "1" }] -> [{ item = "coins", chance = 1, amount = "2 * target_level" }, { item = "fur", chance = 0.5, amount = "1" }]"#,
            "shops.store.goods.potion.stock_max 5 -> 6",
        ]
    );
}
