//! The report as plain aligned text: one table per part, `* ` before a changed row and
//! `before -> after` in its changed cells.

use std::fmt;

use super::{BalanceReport, Change, Comparison, Kills, TTK_SECONDS_MAX, ttk_change_pct};

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = &self.base;
        let other = self.against.as_ref();
        let both = |get: &dyn Fn(&BalanceReport) -> String| match other {
            Some(o) if get(o) != get(base) => format!("{} -> {}", get(base), get(o)),
            _ => get(base),
        };
        match other {
            Some(o) => writeln!(
                f,
                "balance report: {} against {} (* marks a changed row)",
                base.config, o.config
            )?,
            None => writeln!(f, "balance report: {}", base.config)?,
        }
        writeln!(
            f,
            "players: {}; {} ticks/s; damage = {}",
            both(&|r| r.player_archetype.clone()),
            both(&|r| r.tick_hz.to_string()),
            both(&|r| r.damage_formula.clone()),
        )?;

        writeln!(
            f,
            "\nduels: one attacker in reach, hitting at every cooldown; the defender regenerates"
        )?;
        let mut table = Table::new(
            other.is_some(),
            &[
                "attacker -> defender",
                "dmg/hit",
                "cooldown",
                "dmg/s",
                "hits",
                "time to kill",
            ],
        );
        for change in self.duel_changes() {
            let any = change.base.or(change.against).expect("one side at least");
            let pct = ttk_change_pct(&change)
                .filter(|_| change.changed())
                .map(|p| format!(" ({p:+.0}%)"))
                .unwrap_or_default();
            table.row(
                change.changed(),
                vec![
                    format!("{} -> {}", any.attacker, any.defender),
                    cell(&change, |d| format!("{:.2}", d.damage_per_hit)),
                    cell(&change, |d| format!("{:.2} s", d.cooldown_s)),
                    cell(&change, |d| format!("{:.2}", d.dps)),
                    cell(&change, |d| {
                        d.hits_to_kill.map_or("never".into(), |h| h.to_string())
                    }),
                    cell(&change, |d| {
                        d.ttk_s.map_or("never".into(), |t| format!("{t:.2} s"))
                    }) + &pct,
                ],
            );
        }
        write!(f, "{table}")?;
        if self.duel_changes().iter().any(|c| {
            [c.base, c.against]
                .into_iter()
                .flatten()
                .any(|d| d.ttk_s.is_none())
        }) {
            writeln!(
                f,
                "never: the hits do no damage, regen undoes them, or it takes over {TTK_SECONDS_MAX} s"
            )?;
        }

        let sim = &base.sim;
        writeln!(
            f,
            "\ncasualties: sim of {} ticks ({} s), seed {}, {} scripted players",
            sim.ticks, sim.seconds, sim.seed, sim.players
        )?;
        let mut table = Table::new(
            other.is_some(),
            &[
                "archetype",
                "deaths",
                "kills",
                "hits",
                "damage dealt",
                "damage taken",
            ],
        );
        for change in self.casualty_changes() {
            let any = change.base.or(change.against).expect("one side at least");
            table.row(
                change.changed(),
                vec![
                    any.archetype.clone(),
                    cell(&change, |c| c.deaths.to_string()),
                    cell(&change, |c| c.kills.to_string()),
                    cell(&change, |c| c.hits.to_string()),
                    cell(&change, |c| format!("{:.0}", c.damage_dealt)),
                    cell(&change, |c| format!("{:.0}", c.damage_taken)),
                ],
            );
        }
        write!(f, "{table}")?;
        if other.is_some() {
            writeln!(
                f,
                "(one seed: any change reshuffles the fights a little; more --ticks or other \
                 --seed values tell a trend from noise)"
            )?;
        }
        let kills = self.kill_changes();
        if !kills.is_empty() {
            writeln!(f, "\nkilling blows")?;
            let mut table = Table::new(other.is_some(), &["killer -> victim", "count"]);
            for change in kills {
                let any = change.base.or(change.against).expect("one side at least");
                table.row(
                    change.changed(),
                    vec![
                        format!("{} -> {}", any.killer, any.victim),
                        // A pair missing from one side killed nobody there.
                        {
                            let count = |k: Option<&&Kills>| k.map_or(0, |k| k.count);
                            let (before, after) =
                                (count(change.base.as_ref()), count(change.against.as_ref()));
                            if other.is_none() || before == after {
                                before.to_string()
                            } else {
                                format!("{before} -> {after}")
                            }
                        },
                    ],
                );
            }
            write!(f, "{table}")?;
        }
        for report in std::iter::once(base).chain(other) {
            if report.sim.unattributed > 0 {
                writeln!(
                    f,
                    "{}: {} event(s) whose archetype could not be told",
                    report.config, report.sim.unattributed
                )?;
            }
        }
        Ok(())
    }
}

/// One cell: the base's value, or `base -> against` when they differ ("-" for a side
/// without the row).
fn cell<T>(change: &Change<&T>, show: impl Fn(&T) -> String) -> String {
    let side = |v: Option<&T>| v.map_or("-".into(), &show);
    let base = side(change.base);
    if change.against.is_none() && change.base.is_some() {
        return base;
    }
    let against = side(change.against);
    if base == against {
        base
    } else {
        format!("{base} -> {against}")
    }
}

/// Plain aligned text: the first column left-aligned, the rest right-aligned; with marks,
/// each line starts with `* ` (a changed row) or two spaces.
struct Table {
    marks: Option<Vec<bool>>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(marked: bool, header: &[&str]) -> Table {
        Table {
            marks: marked.then(|| vec![false]),
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    fn row(&mut self, changed: bool, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.rows[0].len());
        if let Some(marks) = &mut self.marks {
            marks.push(changed);
        }
        self.rows.push(cells);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.rows[0].len();
        let widths: Vec<usize> = (0..n)
            .map(|i| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (idx, row) in self.rows.iter().enumerate() {
            let mut line = match &self.marks {
                Some(marks) if marks[idx] => "* ".to_owned(),
                Some(_) => "  ".to_owned(),
                None => String::new(),
            };
            for (i, (text, &width)) in row.iter().zip(&widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                if i == 0 {
                    line.push_str(&format!("{text:<width$}"));
                } else {
                    line.push_str(&format!("{text:>width$}"));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}
