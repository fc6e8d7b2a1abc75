use super::*;

fn login(player: u64, node: &str, at_s: u64) -> PresenceUpdate {
    PresenceUpdate::Login {
        player: PlayerId(player),
        name: Some(format!("Player{player}")),
        level: 3,
        node: node.into(),
        region: RegionId(1),
        at_ms: at_s * 1000,
    }
}

#[test]
fn presence_follows_logins_heartbeats_and_the_node_of_the_session() {
    let mut p = Profile::new(PlayerId(7));
    p.apply(&login(7, "a", 1_000));
    assert!(p.is_online(1_000));
    assert_eq!((p.first_login_unix_s, p.last_login_unix_s), (1_000, 1_000));
    // Not seen for longer than the TTL: offline, though no goodbye came.
    assert!(!p.is_online(1_000 + PRESENCE_TTL_S + 1));
    p.apply(&PresenceUpdate::Seen {
        player: PlayerId(7),
        node: "a".into(),
        region: RegionId(2),
        at_ms: 1_050_000,
    });
    assert!(p.is_online(1_050 + PRESENCE_TTL_S));
    assert_eq!(p.region, Some(RegionId(2)));
    // It moves to node b; a's late goodbye does not take it offline there.
    p.apply(&login(7, "b", 1_060));
    p.apply(&PresenceUpdate::Left {
        player: PlayerId(7),
        node: "a".into(),
        since_ms: 1_000_000,
        at_ms: 1_061_000,
    });
    assert_eq!(p.node.as_deref(), Some("b"));
    assert_eq!(p.first_login_unix_s, 1_000);
    p.apply(&PresenceUpdate::Left {
        player: PlayerId(7),
        node: "b".into(),
        since_ms: 1_060_000,
        at_ms: 1_070_000,
    });
    assert!(!p.is_online(1_070));
    assert_eq!(p.region, None);
}

#[test]
fn names_are_cut_at_a_character_boundary() {
    let long = "é".repeat(NAME_BYTES_MAX); // 2 bytes each
    let cut = cut(&long);
    assert_eq!(cut.len(), NAME_BYTES_MAX);
    assert!(cut.chars().all(|c| c == 'é'));
    let odd = format!("x{long}");
    assert_eq!(super::cut(&odd).len(), NAME_BYTES_MAX - 1);
}

#[test]
fn cursors_round_trip_and_garbage_is_refused() {
    let mut p = Profile::new(PlayerId(42));
    p.name = "Zoë.x".into();
    p.level = 9;
    p.last_login_unix_s = 1_700_000_000;
    for (_, sort) in SortKey::ALL {
        let cursor = Cursor::after(sort, &p);
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
    }
    for bad in [
        "",
        "name",
        "id..x",
        "id.5.1",
        "level.x.1",
        "name.zz.1",
        "name.f.1",
        "name.ff.1", // not UTF-8
        "height.1.1",
        "level.1.1.1",
    ] {
        assert_eq!(Cursor::decode(bad), None, "{bad:?}");
    }
}

#[test]
fn checks_name_the_field_at_fault() {
    let ok = PlayerQuery {
        limit: 10,
        ..PlayerQuery::default()
    };
    assert_eq!(ok.check(), Ok(()));
    let field = |q: PlayerQuery| q.check().unwrap_err().0;
    assert_eq!(
        field(PlayerQuery {
            limit: 0,
            ..ok.clone()
        }),
        "limit"
    );
    assert_eq!(
        field(PlayerQuery {
            limit: PAGE_LEN_MAX + 1,
            ..ok.clone()
        }),
        "limit"
    );
    assert_eq!(
        field(PlayerQuery {
            level_min: Some(5),
            level_max: Some(4),
            ..ok.clone()
        }),
        "level_min"
    );
    assert_eq!(
        field(PlayerQuery {
            name_prefix: Some(String::new()),
            ..ok.clone()
        }),
        "name"
    );
    let by_name = Cursor::after(SortKey::Name, &Profile::new(PlayerId(1)));
    assert_eq!(
        field(PlayerQuery {
            after: Some(by_name),
            ..ok
        }),
        "cursor"
    );
}

/// Paging through with the cursors lists every matching player once, in order.
#[test]
fn pages_cover_the_matches_once_in_order() {
    let now = 10_000;
    let profiles: Vec<Profile> = (0..97u64)
        .map(|i| {
            let mut p = Profile::new(PlayerId(i * 7 % 101));
            p.name = format!("{}name{}", ["al", "Bo", "al"][(i % 3) as usize], i % 5);
            p.level = (i % 4) as u32 + 1;
            p.last_login_unix_s = 9_000 + i % 13;
            if i % 2 == 0 {
                p.node = Some("a".into());
                p.last_seen_unix_s = now - 10;
            }
            p
        })
        .collect();
    for (_, sort) in SortKey::ALL {
        for descending in [false, true] {
            let mut query = PlayerQuery {
                name_prefix: Some("AL".into()),
                level_min: Some(2),
                sort,
                descending,
                limit: 4,
                ..PlayerQuery::default()
            };
            let expected: Vec<PlayerId> = {
                let mut all: Vec<&Profile> =
                    profiles.iter().filter(|p| query.matches(p, now)).collect();
                all.sort_by(|a, b| query.compare(a, b));
                all.iter().map(|p| p.player).collect()
            };
            assert!(expected.len() > 10);
            let mut listed = Vec::new();
            loop {
                let page = query.page_of(&profiles, now);
                assert_eq!(page.total, expected.len() as u64);
                listed.extend(page.players.iter().map(|p| p.player));
                let Some(next) = page.next else { break };
                query.after = Some(Cursor::decode(&next.encode()).unwrap());
            }
            assert_eq!(listed, expected, "{sort:?} descending {descending}");
        }
    }
}
