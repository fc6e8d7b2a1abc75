//! The balance: `POST /v1/config/reload` (role admin) and the file watch reload it, each
//! audited with what changed; `GET /v1/config/balance` (role viewer) shows the one the
//! node runs, and where and when it was loaded from.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{Map, Value, json};
use tessera_shared::config::{
    Archetype, BalanceConfig, Economy, FieldValue, Formulas, ItemDef, Loot, LootTable,
    MovementRules, Progression, Shop, SpawnEntry, SpawnTable, archetype_fields,
};

use super::audit::{Audit, Entry};
use super::keys::{Caller, Role};
use super::{AdminState, ApiError, JsonBody, ReasonBody, reason};
use crate::reload::{Applied, Reloader};

/// The target of a reload's audit record.
const TARGET: &str = "balance.toml";

/// A reload's changes, for its audit record's details.
fn noted(applied: &Applied) -> Option<String> {
    let changes = if applied.changes.is_empty() {
        "changes: none".to_owned()
    } else {
        format!("changes: {}", applied.changes.join("; "))
    };
    Some(match applied.notes.is_empty() {
        true => changes,
        false => format!("{changes}; notes: {}", applied.notes.join("; ")),
    })
}

pub(super) async fn reload_balance(
    State(state): State<Arc<AdminState>>,
    Extension(caller): Extension<Caller>,
    JsonBody(body): JsonBody<ReasonBody>,
) -> Result<Json<Applied>, ApiError> {
    let reason = reason(body.reason)?;
    let entry = Entry {
        action: "config.reload",
        target: TARGET.into(),
        reason: &reason,
        details: String::new(),
    };
    let reload = async { Ok(state.reloader.reload().await?) };
    state
        .audit
        .run_noting(&caller, entry, reload, noted)
        .await
        .map(Json)
}

/// Reloads on every notice of the balance file's watch, audited as `file-watch`.
pub async fn follow_reloads(
    mut notices: tokio::sync::mpsc::Receiver<()>,
    reloader: Arc<Reloader>,
    audit: Arc<Audit>,
) {
    let watcher = Caller {
        name: "file-watch".into(),
        role: Role::Admin,
    };
    while notices.recv().await.is_some() {
        if !reloader.changed_on_disk() {
            continue; // Rewritten with the same content, or touched: nothing to reload.
        }
        let entry = Entry {
            action: "config.reload",
            target: TARGET.into(),
            reason: "the file changed",
            details: String::new(),
        };
        let reload = async { Ok(reloader.reload().await?) };
        let _ = audit.run_noting(&watcher, entry, reload, noted).await;
    }
}

/// `GET /v1/config/balance`.
pub(super) async fn balance(State(state): State<Arc<AdminState>>) -> Json<Value> {
    let running = state.reloader.running();
    let file = state.reloader.balance_file().map_or_else(
        || "embedded config/balance.toml".to_owned(),
        |f| f.display().to_string(),
    );
    let mut body = balance_json(&running.config.balance);
    body.insert(
        "loaded".into(),
        json!({
            "file": file,
            "at_unix_s": running.loaded_at_unix_s,
            "by": if running.from_tick.is_some() { "reload" } else { "start" },
            "from_tick": running.from_tick,
        }),
    );
    body.insert("last_reload".into(), json!(state.reloader.last()));
    Json(Value::Object(body))
}

/// `balance` as JSON, in the shape of `balance.toml`: sections, archetypes and spawn
/// tables by name, formulas by their source text.
fn balance_json(balance: &BalanceConfig) -> Map<String, Value> {
    // Exhaustive destructuring: a field added to the schema does not compile until it is
    // shown here too.
    let BalanceConfig {
        movement: MovementRules { speed_tolerance },
        player_archetype,
        archetypes,
        formulas: Formulas { damage },
        spawn_tables,
        progression,
        economy,
        items,
        loot,
        shops,
    } = balance;
    let name_of = |index: usize| archetypes.get(index).map(|a| a.name.as_str());
    let archetypes: Map<String, Value> = archetypes
        .iter()
        .map(|a| (a.name.clone(), archetype_json(a)))
        .collect();
    let spawn_tables: Map<String, Value> = spawn_tables
        .iter()
        .map(|table| {
            let SpawnTable { name, entries } = table;
            let entries: Vec<Value> = entries
                .iter()
                .map(|&SpawnEntry { archetype, count }| {
                    json!({ "archetype": name_of(archetype), "count": count })
                })
                .collect();
            (name.clone(), json!({ "entries": entries }))
        })
        .collect();
    let mut out = Map::new();
    out.insert(
        "movement".into(),
        json!({ "speed_tolerance": number(*speed_tolerance) }),
    );
    out.insert(
        "player".into(),
        json!({ "archetype": name_of(*player_archetype) }),
    );
    out.insert("formulas".into(), json!({ "damage": damage.source() }));
    out.insert("archetypes".into(), Value::Object(archetypes));
    out.insert("spawn_tables".into(), Value::Object(spawn_tables));
    let item_id = |index: usize| items.get(index).map(|i| i.id.as_str());
    let Progression {
        level_cap,
        xp_to_next,
        kill_xp,
    } = progression;
    out.insert(
        "progression".into(),
        json!({
            "level_cap": level_cap,
            "xp_to_next": xp_to_next.source(),
            "kill_xp": kill_xp.source(),
        }),
    );
    let Economy {
        inventory_slots,
        starter_coins,
        starter_items,
    } = economy;
    let kit: Vec<Value> = starter_items
        .iter()
        .map(|s| json!({ "item": item_id(s.item), "count": s.count }))
        .collect();
    out.insert(
        "economy".into(),
        json!({
            "inventory_slots": inventory_slots,
            "starter_coins": starter_coins,
            "starter_items": kit,
        }),
    );
    let items_json: Map<String, Value> = items
        .iter()
        .map(|i| {
            let ItemDef {
                id,
                name,
                stack_size,
                price,
            } = i;
            (
                id.clone(),
                json!({ "name": name, "stack_size": stack_size, "price": price }),
            )
        })
        .collect();
    out.insert("items".into(), Value::Object(items_json));
    let loot_json: Map<String, Value> = loot
        .iter()
        .map(|t| {
            let LootTable { archetype, drops } = t;
            let drops: Vec<Value> = drops
                .iter()
                .map(|d| {
                    let what = match d.what {
                        Loot::Coins => Some("coins"),
                        Loot::Item(i) => item_id(i),
                    };
                    json!({
                        "item": what,
                        "chance": number(d.chance),
                        "amount": d.amount.source(),
                    })
                })
                .collect();
            let name = name_of(*archetype).unwrap_or("?").to_owned();
            (name, json!({ "drops": drops }))
        })
        .collect();
    out.insert("loot".into(), Value::Object(loot_json));
    let shops_json: Map<String, Value> = shops
        .iter()
        .map(|s| {
            let Shop { id, name, goods } = s;
            let goods: Vec<Value> = goods
                .iter()
                .map(|g| {
                    json!({
                        "item": item_id(g.item),
                        "price": g.price,
                        "price_percent": g.price_percent,
                        "stock_max": g.stock_max,
                        "restock_per_min": g.restock_per_min,
                    })
                })
                .collect();
            (id.clone(), json!({ "name": name, "goods": goods }))
        })
        .collect();
    out.insert("shops".into(), Value::Object(shops_json));
    out
}

fn archetype_json(archetype: &Archetype) -> Value {
    let fields = archetype_fields(archetype).into_iter().map(|(key, value)| {
        let value = match value {
            FieldValue::Number(x) => number(x),
            FieldValue::Integer(n) => json!(n),
            FieldValue::Flag(b) => json!(b),
        };
        (key.to_owned(), value)
    });
    Value::Object(fields.collect())
}

/// A config number as JSON: the shortest decimal that reads back as the same `f32`
/// (`0.1`, not `0.10000000149011612`, the `f32` widened to `f64`).
fn number(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_balance_is_shown_like_balance_toml() {
        let config = tessera_shared::config::Config::embedded_default();
        let json = Value::Object(balance_json(&config.balance));
        assert_eq!(json["movement"]["speed_tolerance"], json!(0.1));
        assert_eq!(json["player"]["archetype"], "adventurer");
        assert_eq!(
            json["formulas"]["damage"],
            "max(1, atk * (1 + level * 0.1) - def)"
        );
        assert_eq!(json["archetypes"]["wolf"]["max_health"], json!(40.0));
        assert_eq!(json["archetypes"]["wolf"]["speed_mps"], json!(4.5));
        assert_eq!(json["archetypes"]["wolf"]["hostile"], true);
        assert_eq!(json["archetypes"]["wolf"]["attack_cooldown_ms"], 1_200);
        assert_eq!(
            json["spawn_tables"]["wilds"]["entries"][0],
            json!({ "archetype": "wolf", "count": 120 })
        );
        assert_eq!(
            json["archetypes"].as_object().unwrap().len(),
            config.balance.archetypes.len()
        );
        // The economy, by ids and names as balance.toml writes them.
        assert_eq!(json["progression"]["level_cap"], 30);
        assert_eq!(json["economy"]["starter_items"][0]["item"], "health_potion");
        assert_eq!(json["items"]["wolf_pelt"]["price"], 8);
        assert_eq!(json["loot"]["wolf"]["drops"][1]["item"], "wolf_pelt");
        assert_eq!(json["loot"]["wolf"]["drops"][1]["chance"], json!(0.5));
        // Bread: 2 coins at 150%.
        assert_eq!(json["shops"]["general_store"]["goods"][1]["price"], 3);
    }
}
