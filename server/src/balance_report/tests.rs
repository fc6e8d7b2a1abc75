//! The balance report's unit tests: the duels' numbers against hand-worked ones, the
//! casualties' bookkeeping against the sim's totals, the comparison's marks.

use super::*;
use tessera_shared::config::{ConfigSources, load_strs};

/// The shipped config with `edit` applied to balance.toml and `world` to world.toml.
fn config_with(world: impl Fn(String) -> String, balance: impl Fn(String) -> String) -> Config {
    let embedded = ConfigSources::embedded();
    let (world, balance) = (
        world(embedded.world.text.into()),
        balance(embedded.balance.text.into()),
    );
    let sources = ConfigSources::new(embedded.tessera.text, &world, &balance);
    load_strs(&sources, std::iter::empty()).unwrap_or_else(|e| panic!("{e}"))
}

/// `key = from` becomes `key = to` in `[archetypes.name]` only.
fn set(text: String, name: &str, key: &str, from: &str, to: &str) -> String {
    let section = text.find(&format!("[archetypes.{name}]")).expect("section");
    let at = section
        + text[section..]
            .find(&format!("\n{key} = {from}\n"))
            .expect("key");
    format!(
        "{}\n{key} = {to}\n{}",
        &text[..at],
        &text[at + key.len() + from.len() + 5..]
    )
}

/// One small region crowded with the default spawn table: fights within a few hundred
/// ticks of a debug build.
fn crowded(text: String) -> String {
    text.replace(
        "size_m = { x = 2048, y = 2048 }",
        "size_m = { x = 192, y = 192 }",
    )
    .replace("columns = 2", "columns = 1")
    .replace("rows = 2", "rows = 1")
}

fn find<'a>(duels: &'a [Duel], attacker: &str, defender: &str) -> &'a Duel {
    duels
        .iter()
        .find(|d| d.attacker == attacker && d.defender == defender)
        .unwrap_or_else(|| panic!("no {attacker} -> {defender} in {duels:?}"))
}

#[test]
fn duels_cover_the_players_fights_with_the_servers_numbers() {
    let config = Config::embedded_default();
    let duels = duels(&config);
    // adventurer against all four, and the three NPC archetypes against it.
    assert_eq!(duels.len(), 7, "{duels:?}");
    assert!(
        duels
            .iter()
            .all(|d| d.attacker == "adventurer" || d.defender == "adventurer")
    );
    // wolf: max(1, 8 * (1 + 2 * 0.1) - 3) = 6.6 every 24 ticks (1.2 s); the adventurer
    // (100 health) regains 1.2 between hits, so hit k lands on 100 - 5.4 (k - 1): the
    // 19th kills, 18 cooldowns after the first.
    let wolf = find(&duels, "wolf", "adventurer");
    assert_eq!(wolf.damage_per_hit, (8.0f64 * 1.2 - 3.0) as f32);
    assert_eq!(wolf.cooldown_s, 1.2);
    assert_eq!(wolf.dps, 5.5);
    assert_eq!(wolf.hits_to_kill, Some(19));
    assert_eq!(wolf.ttk_s, Some(21.6));
    // adventurer on wolf: 12 * 1.1 - 2 = 11.2 every 0.8 s against 40 health.
    let hunt = find(&duels, "adventurer", "wolf");
    assert_eq!(hunt.hits_to_kill, Some(4));
    assert_eq!(hunt.ttk_s, Some(2.4));
}

#[test]
fn a_duel_where_regen_undoes_the_hits_never_ends() {
    // The boar hits the adventurer for max(1, 6 * 1.1 - 3) = 3.6 every 1.5 s; with 3
    // health a second back, regen gives 4.5 per cooldown.
    let config = config_with(|w| w, |b| set(b, "adventurer", "regen_per_s", "1", "3"));
    let boar = find(&duels(&config), "boar", "adventurer").clone();
    assert_eq!(boar.hits_to_kill, None);
    assert_eq!(boar.ttk_s, None);
    // No damage at all (the formula may say so) is never too.
    let config = config_with(
        |w| w,
        |b| b.replace("max(1, atk * (1 + level * 0.1) - def)", "0"),
    );
    assert!(
        duels(&config)
            .iter()
            .all(|d| d.ttk_s.is_none() && d.damage_per_hit == 0.0)
    );
}

#[test]
fn casualties_account_for_every_event_of_the_sim_and_repeat_for_a_seed() {
    let config = Arc::new(config_with(crowded, |b| b));
    let options = ReportOptions {
        seed: 3,
        ticks: 300,
        players: 30,
    };
    let sim = casualties(config.clone(), &options).unwrap();
    assert_eq!(sim.unattributed, 0);
    let deaths: u64 = sim.archetypes.iter().map(|c| c.deaths).sum();
    let hits: u64 = sim.archetypes.iter().map(|c| c.hits).sum();
    let kills: u64 = sim.kills.iter().map(|k| k.count).sum();
    assert_eq!(deaths, sim.deaths_total);
    assert_eq!(hits, sim.hits_total);
    assert!(deaths > 0, "a crowded region should see deaths: {sim:?}");
    // Every death is some hit's doing.
    assert_eq!(kills, deaths);
    assert_eq!(sim.archetypes.iter().map(|c| c.kills).sum::<u64>(), kills);
    assert_eq!(
        sim,
        casualties(config, &options).unwrap(),
        "same seed, same figures"
    );
}

#[test]
fn a_comparison_marks_only_the_rows_that_changed() {
    let options = ReportOptions {
        seed: 1,
        ticks: 5,
        players: 2,
    };
    let base = Arc::new(Config::embedded_default());
    let other = Arc::new(config_with(|w| w, |b| set(b, "wolf", "attack", "8", "10")));
    let comparison = compare(("a", base), Some(("b", other)), &options).unwrap();
    for change in comparison.duel_changes() {
        let d = change.base.unwrap();
        // The wolf's attack matters when it attacks; as a defender nothing changed.
        assert_eq!(change.changed(), d.attacker == "wolf", "{d:?}");
    }
    let text = comparison.to_string();
    let line = text
        .lines()
        .find(|l| l.contains("wolf -> adventurer"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.starts_with('*'), "{line}");
    assert!(line.contains("21.60 s -> 14.40 s (-33%)"), "{line}");
    let unchanged = text
        .lines()
        .find(|l| l.contains("adventurer -> wolf"))
        .unwrap();
    assert!(!unchanged.starts_with('*'), "{unchanged}");
    assert_eq!(unchanged.matches(" -> ").count(), 1, "{unchanged}");

    let json = comparison.to_json();
    let duels = json["changes"]["duels"].as_array().unwrap();
    assert_eq!(duels.len(), 1, "{json}");
    assert_eq!(duels[0]["attacker"], "wolf");
    assert_eq!(duels[0]["base"]["ttk_s"], 21.6);
    assert_eq!(duels[0]["against"]["ttk_s"], 14.4);
    assert_eq!(duels[0]["ttk_change_pct"], -33.3);
}

#[test]
fn a_single_report_has_no_marks_and_aligned_columns() {
    let options = ReportOptions {
        seed: 1,
        ticks: 2,
        players: 1,
    };
    let comparison = compare(
        ("config", Arc::new(Config::embedded_default())),
        None,
        &options,
    )
    .unwrap();
    let text = comparison.to_string();
    assert!(!text.lines().any(|l| l.starts_with('*')), "{text}");
    let header = text
        .lines()
        .find(|l| l.contains("attacker -> defender"))
        .unwrap();
    let row = text
        .lines()
        .find(|l| l.contains("bandit -> adventurer"))
        .unwrap();
    // The last column ends where its header does.
    assert_eq!(header.len(), row.len(), "{header}\n{row}");
    assert!(comparison.to_json().get("changes").is_none());
}
