//! The `tessera` command line as a user meets it: `config check` on good and broken
//! files, `sim` determinism, commands that read a node's settings from an empty
//! directory, `bots` against nothing, and a node's start message and plain-text logs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

fn run(args: &[&str]) -> (ExitCode, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("tessera").chain(args.iter().copied());
    let code = tessera_server::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// A fresh copy of the shipped config directory, with `edit(file name, text)` applied.
fn broken_copy(edit: impl Fn(&str, String) -> String) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::util::unique("tessera-cli-test"));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["tessera.toml", "world.toml", "balance.toml"] {
        let text = std::fs::read_to_string(shipped_config().join(name)).unwrap();
        std::fs::write(dir.join(name), edit(name, text)).unwrap();
    }
    dir
}

/// 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the file"))
        + 1
}

#[test]
fn config_check_accepts_the_shipped_files() {
    let dir = shipped_config();
    let (code, out, err) = run(&["config", "check", dir.to_str().unwrap()]);
    assert_eq!(code, ExitCode::SUCCESS, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("ok"), "{out}");
}

#[test]
fn config_check_reports_every_error_with_its_position() {
    let dir = broken_copy(|name, text| match name {
        "world.toml" => text
            .replace("tick_hz = 20", "tick_hz = \"fast\"")
            .replace("cell_size_m = 16", "cell_size_m = 0")
            .replace("[interest]\n", "[interest]\nenter_radius = 3\n"),
        "balance.toml" => text.replace(
            "damage = \"max(1, atk * (1 + level * 0.1) - def)\"",
            "damage = \"pow(atk, 2) - def\"",
        ),
        _ => text,
    });
    let world = std::fs::read_to_string(dir.join("world.toml")).unwrap();
    let balance = std::fs::read_to_string(dir.join("balance.toml")).unwrap();
    let (code, _out, err) = run(&["config", "check", dir.to_str().unwrap()]);
    assert_eq!(code, ExitCode::FAILURE, "{err}");
    let expect = [
        (
            format!("world.toml:{}:", line_of(&world, "tick_hz = \"fast\"")),
            "tick_hz",
        ),
        (
            format!("world.toml:{}:", line_of(&world, "cell_size_m = 0")),
            "cell_size_m",
        ),
        (
            format!("world.toml:{}:", line_of(&world, "enter_radius = 3")),
            "enter_radius",
        ),
        (
            format!("balance.toml:{}:", line_of(&balance, "pow(atk")),
            "pow",
        ),
    ];
    for (position, key) in &expect {
        assert!(
            err.lines()
                .any(|l| l.contains(position.as_str()) && l.contains(key)),
            "no error at {position} about {key}:\n{err}"
        );
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_check_reports_formula_syntax_errors_and_garbage() {
    let dir = broken_copy(|name, text| match name {
        "balance.toml" => text.replace(
            "damage = \"max(1, atk * (1 + level * 0.1) - def)\"",
            "damage = \"atk * (1 + \"",
        ),
        // Not TOML at all.
        "tessera.toml" => "[node\nname = \u{0}\u{7f}\n".to_string(),
        _ => text,
    });
    let balance = std::fs::read_to_string(dir.join("balance.toml")).unwrap();
    let (code, _out, err) = run(&["config", "check", dir.to_str().unwrap()]);
    assert_eq!(code, ExitCode::FAILURE, "{err}");
    let formula_line = format!(
        "balance.toml:{}:",
        line_of(&balance, "damage = \"atk * (1 + \"")
    );
    assert!(err.contains(&formula_line), "{err}");
    assert!(err.contains("tessera.toml:1:"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_check_on_a_missing_directory_fails_cleanly() {
    let (code, _out, err) = run(&["config", "check", "/nonexistent/tessera-config"]);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        err.contains("/nonexistent/tessera-config: no such directory"),
        "{err}"
    );
    assert!(err.contains("tessera.toml"), "{err}");
}

#[test]
fn sim_prints_the_same_hash_for_the_same_seed() {
    let hash_line = |seed: &str| {
        let (code, out, err) = run(&["sim", "--ticks", "600", "--seed", seed, "--players", "40"]);
        assert_eq!(code, ExitCode::SUCCESS, "{err}");
        assert!(out.contains("p99"), "{out}");
        out.lines()
            .find(|l| l.starts_with("world hash: "))
            .unwrap_or_else(|| panic!("no hash in {out}"))
            .to_owned()
    };
    let a = hash_line("7");
    assert_eq!(a, hash_line("7"));
    assert_ne!(a, hash_line("8"));
}

/// Issue 19's acceptance: the wolf's attack 8 -> 10 shows as a shorter time to kill on
/// the wolf's rows, and on no other.
#[test]
fn balance_report_against_shows_the_ttk_change_of_a_stronger_wolf() {
    let text = std::fs::read_to_string(shipped_config().join("balance.toml")).unwrap();
    let wolf = text.find("[archetypes.wolf]").expect("a wolf");
    let attack = wolf + text[wolf..].find("\nattack = 8\n").expect("wolf attack 8");
    let next_section = wolf + text[wolf..].find("\n[").expect("a section after the wolf");
    assert!(attack < next_section, "attack = 8 is the wolf's own");
    let dir = broken_copy(|name, text| match name {
        "balance.toml" => text[..attack].to_owned() + "\nattack = 10\n" + &text[attack + 12..],
        _ => text,
    });
    let (base, other) = (shipped_config(), dir.clone());
    let (base, other) = (base.to_str().unwrap(), other.to_str().unwrap());
    let args = ["balance", "report", "--config", base, "--against", other];
    let args = [&args[..], &["--ticks", "40", "--players", "20"]].concat();

    let (code, out, err) = run(&[&args[..], &["--json"]].concat());
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let duels = |side: &str| json[side]["duels"].as_array().unwrap().clone();
    let (before, after) = (duels("base"), duels("against"));
    assert_eq!(before.len(), after.len());
    let mut wolf_rows = 0;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (&b["attacker"], &b["defender"]),
            (&a["attacker"], &a["defender"])
        );
        let (b_ttk, a_ttk) = (b["ttk_s"].as_f64().unwrap(), a["ttk_s"].as_f64().unwrap());
        if b["attacker"] == "wolf" {
            wolf_rows += 1;
            assert!(a_ttk < b_ttk, "{b} -> {a}");
        } else {
            assert_eq!(a_ttk, b_ttk, "{b} -> {a}");
        }
    }
    assert_eq!(wolf_rows, 1, "{before:?}");
    let changed = json["changes"]["duels"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["attacker"], "wolf");

    let (code, out, err) = run(&args);
    assert_eq!(code, ExitCode::SUCCESS, "{err}");
    let duels_text = out.split("casualties").next().unwrap();
    let marked: Vec<&str> = duels_text.lines().filter(|l| l.starts_with('*')).collect();
    assert_eq!(marked.len(), 1, "{out}");
    assert!(marked[0].contains("wolf -> adventurer"), "{out}");
    assert!(
        marked[0].contains(" s -> ") && marked[0].ends_with("%)"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn balance_report_on_a_missing_or_invalid_config_says_so() {
    let (code, _out, err) = run(&["balance", "report", "--against", "/nonexistent/tessera"]);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        err.contains("no config directory at /nonexistent/tessera"),
        "{err}"
    );
    let dir = broken_copy(|name, text| match name {
        "balance.toml" => text.replace("attack = 8", "attack = -8"),
        _ => text,
    });
    let (code, _out, err) = run(&["balance", "report", "--config", dir.to_str().unwrap()]);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        err.contains("balance.toml:") && err.contains("attack"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_a_usage_error_not_a_panic() {
    let (code, _out, err) = run(&["sim", "--ticks", "many"]);
    assert_eq!(code, ExitCode::from(2));
    assert!(err.contains("--ticks"), "{err}");
}

/// A fresh, empty temporary directory.
fn empty_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(crate::util::unique(prefix));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn commands_that_read_a_node_say_what_is_missing_and_create_nothing() {
    let root = empty_dir("tessera-cli-no-node");
    let missing = root.join("data");
    let data_dir = missing.to_str().unwrap();
    let commands: [&[&str]; 3] = [
        &["token", "--player", "ada", "--data-dir", data_dir],
        &["admin-key", "--dev", "--data-dir", data_dir],
        &[
            "bots",
            "--count",
            "1",
            "--duration",
            "1s",
            "--data-dir",
            data_dir,
        ],
    ];
    for args in commands {
        let (code, out, err) = run(args);
        assert_eq!(code, ExitCode::FAILURE, "{args:?}: {out}");
        assert!(err.contains("no node data here"), "{args:?}: {err}");
        assert!(err.contains(data_dir), "{args:?}: {err}");
        assert!(err.contains("--data-dir"), "{args:?}: {err}");
        assert!(!missing.exists(), "{args:?} created the data dir");
    }
    // A data dir without the node's files: each names the file it needs.
    std::fs::create_dir_all(&missing).unwrap();
    for (args, what) in [
        (commands[0], "has no dev token secret"),
        (commands[1], "has no dev admin key"),
        (commands[2], "has no dev certificate"),
    ] {
        let (code, _out, err) = run(args);
        assert_eq!(code, ExitCode::FAILURE, "{args:?}");
        assert!(err.contains(what), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read_dir(&missing).unwrap().count(), 0);
    let (code, _out, err) = run(&["token", "--player", "ada", "--config", "/nonexistent/cfg"]);
    assert_eq!(code, ExitCode::FAILURE);
    assert!(
        err.contains("no config directory at /nonexistent/cfg"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn bots_say_once_that_nothing_answers_at_the_address() {
    let dir = empty_dir("tessera-cli-bots-nothing");
    tessera_server::net::tls::dev_identity(&dir).unwrap();
    tessera_server::auth::dev_secret(&dir).unwrap();
    // A UDP socket that never answers: the handshake times out.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (code, out, err) = run(&[
        "bots",
        "--count",
        "20",
        "--duration",
        "1s",
        "--addr",
        &addr,
        "--data-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, ExitCode::FAILURE, "{out}");
    assert!(
        err.contains(&format!("nothing answered at {addr} within 5 s")),
        "{err}"
    );
    assert!(err.contains("is a node running there?"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `tessera serve` with its stderr in a pipe (as under systemd or in a log file): plain
/// text without colour codes, and once at start the commands that reach the node.
#[test]
fn a_node_logging_to_a_pipe_writes_plain_text_and_says_how_to_reach_it() {
    use crate::util::{Log, node_command};
    let dir = empty_dir("tessera-cli-plain-logs");
    let mut node = node_command(&dir).env_remove("NO_COLOR").spawn().unwrap();
    let log = Log::of(&mut node);
    let mut seen = Vec::new();
    let help = log.find(Duration::from_secs(60), |line| {
        seen.push(line.to_owned());
        line.contains("is running: QUIC on")
            .then(|| line.to_owned())
    });
    let more = log.find(Duration::from_secs(5), |line| {
        seen.push(line.to_owned());
        line.contains("tessera token").then_some(())
    });
    node.kill().unwrap();
    node.wait().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let help = help.unwrap_or_else(|| panic!("no start message in {seen:#?}"));
    assert!(more.is_some(), "no token command in {seen:#?}");
    assert!(help.contains("Tessera node"), "{help}");
    assert!(seen.iter().any(|l| l.contains("tessera bots")), "{seen:#?}");
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "colour codes in a piped log: {seen:#?}"
    );
}
