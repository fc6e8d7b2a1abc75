//! The economy's half of `balance.toml`: `[progression]`, `[economy]`, `[items.ID]`,
//! `[loot.ARCHETYPE]` and `[shops.ID]`, read after the archetypes they refer to.

use super::balance::{check_key_name, compile, resolve};
use super::formula::{KILL_VARS, LOOT_VARS, XP_TO_NEXT_VARS};
use super::reader::{At, Item, SourceFile, Table};
use super::schema::{
    Economy, ItemDef, ItemStack, Loot, LootDrop, LootTable, Progression, Shop, ShopGood,
};
use super::spec::{Section, Spec};
use super::{
    INVENTORY_SLOTS_MAX, ITEMS_MAX, LEVEL_CAP_MAX, LOOT_DROPS_MAX, PRICE_MAX, SHOP_GOODS_MAX,
    SHOPS_MAX, STACK_SIZE_MAX, STOCK_MAX, is_display_name,
};

/// The word a loot line's `item` uses for the currency; no item may take it as its id.
pub(super) const COINS: &str = "coins";

/// What an item reference must be.
const ITEM_EXPECTED: &str = "the id of an [items.ID]";

pub(super) const PROGRESSION: Section = Section::of(
    "How players level up.",
    &[
        Spec::int(
            "level_cap",
            1,
            LEVEL_CAP_MAX,
            "The highest level a player reaches; XP gained at the cap still counts.",
        ),
        Spec::text(
            "xp_to_next",
            "a formula such as \"100 * level * level\"",
            "XP needed to go from level to level + 1. Variables: level. Rounded down; less \
             than 1, or no finite number, counts as 1.",
        ),
        Spec::text(
            "kill_xp",
            "a formula such as \"10 * target_level\"",
            "XP a player gains for killing an NPC. Variables: level (the player's), \
             target_level (the NPC's). Rounded down; negative or not finite gives none.",
        ),
    ],
);

pub(super) const ECONOMY: Section = Section::of(
    "Inventories and what a new player starts with.",
    &[
        Spec::int(
            "inventory_slots",
            1,
            INVENTORY_SLOTS_MAX,
            "Slots of each player's inventory; a slot holds one item, up to its stack_size.",
        ),
        Spec::int(
            "starter_coins",
            0,
            PRICE_MAX,
            "Coins in a new player's starter kit, delivered once per player.",
        ),
        Spec::tables(
            "starter_items",
            &STARTER_ITEM,
            (0, INVENTORY_SLOTS_MAX as usize),
            "an array such as [{ item = \"health_potion\", count = 3 }]",
            "Items in a new player's starter kit, each item at most once; the kit must fit \
             the inventory.",
        ),
    ],
);

const STARTER_ITEM: Section = Section::of(
    "An amount of one item.",
    &[
        Spec::text("item", ITEM_EXPECTED, "An [items.ID]."),
        Spec::int("count", 1, STACK_SIZE_MAX, "How many."),
    ],
);

pub(super) const ITEM: Section = Section::of(
    "Something a player can own. The ID is what inventories, loot, shops and the ledger \
     store: renaming it orphans what players hold.",
    &[
        Spec::text(
            "name",
            "1 to 64 characters, no control characters",
            "Shown to players.",
        ),
        Spec::int(
            "stack_size",
            1,
            STACK_SIZE_MAX,
            "Most of it one inventory slot holds.",
        ),
        Spec::int(
            "price",
            0,
            PRICE_MAX,
            "Coins a shop charges for one (times the shop's price_percent / 100).",
        ),
    ],
);

pub(super) const LOOT: Section = Section::of(
    "What an NPC of the archetype ARCHETYPE drops when a player kills it.",
    &[Spec::tables(
        "drops",
        &LOOT_DROP,
        (0, LOOT_DROPS_MAX),
        "an array such as [{ item = \"coins\", chance = 1, amount = \"2 * target_level\" }]",
        "Each line is rolled on its own, in order.",
    )],
);

const LOOT_DROP: Section = Section::of(
    "One line of a loot table.",
    &[
        Spec::text(
            "item",
            "the id of an [items.ID], or \"coins\"",
            "What drops: an [items.ID], or \"coins\" for the currency.",
        ),
        Spec::num("chance", 0.0, 1.0, "The probability that it drops."),
        Spec::text(
            "amount",
            "a formula such as \"1 + floor(target_level / 5)\"",
            "How many. Variables: target_level (the NPC's level). Rounded down, at most \
             1_000_000; 0, negative or not finite drops nothing.",
        ),
    ],
);

pub(super) const SHOP: Section = Section::of(
    "A vendor selling items for coins. Stock is shared by every player of the world.",
    &[
        Spec::text(
            "name",
            "1 to 64 characters, no control characters",
            "Shown to players.",
        ),
        Spec::tables(
            "goods",
            &SHOP_GOOD,
            (1, SHOP_GOODS_MAX),
            "an array such as [{ item = \"health_potion\", stock_max = 100, restock_per_min = 5 }]",
            "What it sells, each item at most once.",
        ),
    ],
);

const SHOP_GOOD: Section = Section::of(
    "One item a shop sells.",
    &[
        Spec::text("item", ITEM_EXPECTED, "An [items.ID]."),
        Spec::int_or(
            "price_percent",
            1,
            1000,
            100,
            "The price as a percentage of the item's price (rounded down to whole coins).",
        ),
        Spec::int(
            "stock_max",
            0,
            STOCK_MAX,
            "Units in stock when the shop opens, and the most restocking refills to.",
        ),
        Spec::int(
            "restock_per_min",
            0,
            STOCK_MAX,
            "Units added back per minute, up to stock_max.",
        ),
    ],
);

/// Names that other sections resolve against: sorted, including broken entries' names
/// (so that one error is not reported again as an unknown reference), and whether the
/// list is complete.
pub(super) struct Names<'n> {
    pub(super) names: &'n [&'n str],
    pub(super) known: bool,
}

impl Names<'_> {
    fn resolve(&self, file: &SourceFile<'_>, name: &str, at: At<'_>, what: &str) -> Option<usize> {
        resolve(file, self.names, self.known, name, at, what)
    }
}

pub(super) fn read_progression(file: &SourceFile<'_>, mut t: Table<'_>) -> Option<Progression> {
    let level_cap = t.int("level_cap");
    let xp_to_next = t
        .text_item("xp_to_next")
        .and_then(|(source, item)| compile(file, "xp_to_next", XP_TO_NEXT_VARS, source, item));
    let kill_xp = t
        .text_item("kill_xp")
        .and_then(|(source, item)| compile(file, "kill_xp", KILL_VARS, source, item));
    t.finish();
    Some(Progression {
        level_cap: level_cap?,
        xp_to_next: xp_to_next?,
        kill_xp: kill_xp?,
    })
}

/// The items sorted by id (`None` if any has an error), and all ids (sorted).
pub(super) fn read_items(
    file: &SourceFile<'_>,
    mut t: Table<'_>,
) -> (Option<Vec<ItemDef>>, Vec<String>) {
    let table_at = t.at;
    let mut entries = t.entries();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let ids: Vec<String> = entries.iter().map(|(n, _, _)| (*n).to_owned()).collect();
    if entries.len() > ITEMS_MAX {
        file.error(
            table_at,
            format!(
                "{} items defined; at most {ITEMS_MAX} allowed",
                entries.len()
            ),
        );
        t.finish();
        return (None, ids);
    }
    let mut ok = true;
    let mut items = Vec::with_capacity(entries.len());
    for (id, id_at, item) in entries {
        ok &= check_key_name(file, id, id_at, "item");
        if id == COINS {
            file.error(
                id_at,
                format!("item id {COINS:?} is reserved for the currency; choose another id"),
            );
            ok = false;
        }
        let Some(mut it) = t.entry(id, item) else {
            ok = false;
            continue;
        };
        let name = display_name(file, &mut it);
        let stack_size = it.int("stack_size");
        let price = it.int("price");
        it.finish();
        match (name, stack_size, price) {
            (Some(name), Some(stack_size), Some(price)) => items.push(ItemDef {
                id: id.to_owned(),
                name,
                stack_size,
                price,
            }),
            _ => ok = false,
        }
    }
    t.finish();
    (ok.then_some(items), ids)
}

/// `[economy]`; `items` is `None` when the items have errors (references are then checked
/// by name only, and the kit's fit is not).
pub(super) fn read_economy(
    file: &SourceFile<'_>,
    mut t: Table<'_>,
    item_names: &Names<'_>,
    items: Option<&[ItemDef]>,
) -> Option<Economy> {
    let slots = t.int("inventory_slots");
    let starter_coins = t.int("starter_coins");
    let starter_items = read_stacks(file, &mut t, item_names);
    t.finish();
    let (slots, starter_items) = (slots?, starter_items?);
    if let Some(items) = items {
        let (kit, kit_at) = starter_items;
        let needed: u64 = kit
            .iter()
            .map(|s| u64::from(s.count.div_ceil(items[s.item].stack_size)))
            .sum();
        if needed > u64::from(slots) {
            file.error(
                kit_at,
                format!(
                    "the starter kit needs {needed} inventory slots; inventory_slots is {slots}"
                ),
            );
            return None;
        }
        return Some(Economy {
            inventory_slots: slots,
            starter_coins: starter_coins?,
            starter_items: kit,
        });
    }
    None
}

fn read_stacks<'a>(
    file: &SourceFile<'_>,
    t: &mut Table<'a>,
    item_names: &Names<'_>,
) -> Option<(Vec<ItemStack>, At<'a>)> {
    let (array, array_at) = t.array("starter_items")?;
    if array.len() > INVENTORY_SLOTS_MAX as usize {
        file.error(
            array_at,
            format!(
                "{} starter items; at most {INVENTORY_SLOTS_MAX} allowed",
                array.len()
            ),
        );
        return None;
    }
    let mut ok = true;
    let mut stacks: Vec<ItemStack> = Vec::with_capacity(array.len());
    for (i, value) in array.iter().enumerate() {
        let label = format!("[economy] starter_items #{}", i + 1);
        let Some(mut e) = t.element("starter_items", label, Item::from_spanned(value)) else {
            ok = false;
            continue;
        };
        let item = e.text("item").and_then(|(id, at)| {
            let idx = item_names.resolve(file, id, at, "item")?;
            if stacks.iter().any(|s| s.item == idx) {
                file.error(
                    at,
                    format!("item {id:?} is listed twice in the starter kit"),
                );
                return None;
            }
            Some(idx)
        });
        let count = e.int("count");
        e.finish();
        match (item, count) {
            (Some(item), Some(count)) => stacks.push(ItemStack { item, count }),
            _ => ok = false,
        }
    }
    ok.then_some((stacks, array_at))
}

/// The loot tables sorted by archetype.
pub(super) fn read_loot(
    file: &SourceFile<'_>,
    mut t: Table<'_>,
    archetypes: &Names<'_>,
    items: &Names<'_>,
) -> Option<Vec<LootTable>> {
    let mut entries = t.entries();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut ok = true;
    let mut tables = Vec::with_capacity(entries.len());
    for (name, name_at, item) in entries {
        let archetype = archetypes.resolve(file, name, name_at, "archetype");
        let Some(mut lt) = t.entry(name, item) else {
            ok = false;
            continue;
        };
        let drops = read_drops(file, name, &mut lt, items);
        lt.finish();
        match (archetype, drops) {
            (Some(archetype), Some(drops)) => tables.push(LootTable { archetype, drops }),
            _ => ok = false,
        }
    }
    t.finish();
    // Archetype names are sorted like the table keys: the order is the archetypes'.
    ok.then_some(tables)
}

fn read_drops(
    file: &SourceFile<'_>,
    archetype: &str,
    t: &mut Table<'_>,
    items: &Names<'_>,
) -> Option<Vec<LootDrop>> {
    let (array, array_at) = t.array("drops")?;
    if array.len() > LOOT_DROPS_MAX {
        file.error(
            array_at,
            format!("{} drops; at most {LOOT_DROPS_MAX} allowed", array.len()),
        );
        return None;
    }
    let mut ok = true;
    let mut drops = Vec::with_capacity(array.len());
    for (i, value) in array.iter().enumerate() {
        let label = format!("[loot.{archetype}] drops #{}", i + 1);
        let Some(mut d) = t.element("drops", label, Item::from_spanned(value)) else {
            ok = false;
            continue;
        };
        let what = d.text("item").and_then(|(id, at)| {
            if id == COINS {
                Some(Loot::Coins)
            } else {
                items.resolve(file, id, at, "item").map(Loot::Item)
            }
        });
        let chance = d.num("chance");
        let amount = d
            .text_item("amount")
            .and_then(|(source, item)| compile(file, "amount", LOOT_VARS, source, item));
        d.finish();
        match (what, chance, amount) {
            (Some(what), Some(chance), Some(amount)) => drops.push(LootDrop {
                what,
                chance,
                amount,
            }),
            _ => ok = false,
        }
    }
    ok.then_some(drops)
}

/// The shops sorted by id; `items` is `None` when the items have errors (prices are then
/// not computed).
pub(super) fn read_shops(
    file: &SourceFile<'_>,
    mut t: Table<'_>,
    item_names: &Names<'_>,
    items: Option<&[ItemDef]>,
) -> Option<Vec<Shop>> {
    let table_at = t.at;
    let mut entries = t.entries();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    if entries.len() > SHOPS_MAX {
        file.error(
            table_at,
            format!(
                "{} shops defined; at most {SHOPS_MAX} allowed",
                entries.len()
            ),
        );
        t.finish();
        return None;
    }
    let mut ok = true;
    let mut shops = Vec::with_capacity(entries.len());
    for (id, id_at, item) in entries {
        ok &= check_key_name(file, id, id_at, "shop");
        let Some(mut st) = t.entry(id, item) else {
            ok = false;
            continue;
        };
        let name = display_name(file, &mut st);
        let goods = read_goods(file, id, &mut st, item_names, items);
        st.finish();
        match (name, goods) {
            (Some(name), Some(goods)) => shops.push(Shop {
                id: id.to_owned(),
                name,
                goods,
            }),
            _ => ok = false,
        }
    }
    t.finish();
    ok.then_some(shops)
}

fn read_goods(
    file: &SourceFile<'_>,
    shop: &str,
    t: &mut Table<'_>,
    item_names: &Names<'_>,
    items: Option<&[ItemDef]>,
) -> Option<Vec<ShopGood>> {
    let (array, array_at) = t.array("goods")?;
    if array.is_empty() || array.len() > SHOP_GOODS_MAX {
        file.error(
            array_at,
            format!("{} goods; a shop sells 1 to {SHOP_GOODS_MAX}", array.len()),
        );
        return None;
    }
    let mut ok = true;
    let mut goods: Vec<ShopGood> = Vec::with_capacity(array.len());
    for (i, value) in array.iter().enumerate() {
        let label = format!("[shops.{shop}] goods #{}", i + 1);
        let Some(mut g) = t.element("goods", label, Item::from_spanned(value)) else {
            ok = false;
            continue;
        };
        let item = g.text("item").and_then(|(id, at)| {
            let idx = item_names.resolve(file, id, at, "item")?;
            if goods.iter().any(|s| s.item == idx) {
                file.error(at, format!("item {id:?} is listed twice in shop {shop:?}"));
                return None;
            }
            Some(idx)
        });
        let price_percent = g.int("price_percent");
        let stock_max = g.int("stock_max");
        let restock_per_min = g.int("restock_per_min");
        g.finish();
        match (item, price_percent, stock_max, restock_per_min, items) {
            (
                Some(item),
                Some(price_percent),
                Some(stock_max),
                Some(restock_per_min),
                Some(defs),
            ) => {
                goods.push(ShopGood {
                    item,
                    price: u64::from(defs[item].price) * u64::from(price_percent) / 100,
                    price_percent,
                    stock_max,
                    restock_per_min,
                });
            }
            _ => ok = false,
        }
    }
    ok.then_some(goods)
}

/// A required `name`: 1 to 64 characters, no control characters.
fn display_name(file: &SourceFile<'_>, t: &mut Table<'_>) -> Option<String> {
    let (name, at) = t.text("name")?;
    if is_display_name(name) {
        return Some(name.to_owned());
    }
    file.error(
        at,
        format!("name must be 1 to 64 characters without control characters, got {name:?}"),
    );
    None
}
