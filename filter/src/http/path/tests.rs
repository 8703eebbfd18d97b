use super::*;

fn canonical(raw: &str) -> Result<String, PathError> {
    read(raw, PathParameters::Reject).map(|r| r.canonical.as_str().to_string())
}

/// The other readings, each with whether it binds.
fn others(raw: &str, parameters: PathParameters) -> Vec<(String, bool)> {
    read(raw, parameters)
        .unwrap()
        .others
        .into_iter()
        .map(|r| (r.path.as_str().to_string(), r.binding))
        .collect()
}

#[test]
fn the_canonical_reading_decodes_resolves_and_merges() {
    let cases = [
        ("/api/private", "/api/private"),
        ("/api/public/../private", "/api/private"),
        ("/api//private", "/api/private"),
        ("/api/./private?x=1", "/api/private"),
        ("/api/%70rivate", "/api/private"),
        ("/api/%2e%2e/api/private", "/api/private"),
        ("/api/%2E/private", "/api/private"),
        ("/api/private/", "/api/private/"),
        ("/api/private/.", "/api/private/"),
        ("/", "/"),
        ("/a/b/..", "/a/"),
        ("/a/..", "/"),
        ("/a%20b", "/a b"),
        ("/a%3ab", "/a:b"),
        ("/caf%C3%A9", "/café"),
        ("/café", "/café"),
        ("/a/b.json", "/a/b.json"),
        ("/a/...x", "/a/...x"),
        ("/a/./", "/a/"),
    ];
    for (raw, want) in cases {
        assert_eq!(canonical(raw).as_deref(), Ok(want), "{raw}");
    }
}

#[test]
fn unsafe_paths_are_refused_with_their_reason() {
    use PathError::*;
    let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    let cases = [
        ("", NotOrigin),
        ("*", NotOrigin),
        ("api/private", NotOrigin),
        ("http://host/api/private", NotOrigin),
        ("//host/api/private", NotOrigin),
        ("/api/private#frag", Fragment),
        ("/api/public#/../private", Fragment),
        (long.as_str(), TooLong),
        ("/api%00", Control),
        ("/api\u{0}", Control),
        ("/api%0a", Control),
        ("/api%7f", Control),
        ("/api%c2%85", Control),
        ("/api\\private", Backslash),
        ("/api%5cprivate", Backslash),
        ("/api%5Cprivate", Backslash),
        ("/api%", BadEscape),
        ("/api%zz", BadEscape),
        ("/api%u002e", BadEscape),
        ("/api%+1", BadEscape),
        ("/api%2fprivate", EncodedSeparator),
        ("/api%2Fprivate", EncodedSeparator),
        ("/api/private%3bx", EncodedSeparator),
        ("/api/private%3Bx", EncodedSeparator),
        ("/a%25", EncodedPercent),
        ("/a/%252e%252e/b", EncodedPercent),
        ("/api/%c0%ae%c0%ae/x", NotUtf8),
        ("/api/%e0%80%ae/x", NotUtf8),
        ("/api/%ff", NotUtf8),
        ("/api/%c3", NotUtf8),
        ("/api/\u{FF0E}\u{FF0E}/x", Lookalike),
        ("/api%ef%bc%8fprivate", Lookalike),
        ("/api/\u{2025}/x", Lookalike),
        ("/api/\u{2215}x", Lookalike),
        ("/api/.../x", TrailingDotOrSpace),
        ("/api/.. /x", TrailingDotOrSpace),
        ("/api/..%20", TrailingDotOrSpace),
        ("/api/public./x", TrailingDotOrSpace),
        ("/api/public%20/x", TrailingDotOrSpace),
        ("/api/public/..;/private", DotWithParameters),
        ("/api/public/..;x=1/private", DotWithParameters),
        ("/api/public/.;/x", DotWithParameters),
        ("/api/public/%2e%2e;/private", DotWithParameters),
        ("/api/private;jsessionid=1", Parameters),
        ("/api;x/private", Parameters),
        ("/..", AboveRoot),
        ("/a/../..", AboveRoot),
        ("/a//../../..", AboveRoot),
    ];
    for (raw, want) in cases {
        assert_eq!(canonical(raw), Err(want), "{raw}");
    }
    // Dots with parameters are refused even where parameters are stripped.
    assert_eq!(
        read("/a/..;/b", PathParameters::Strip),
        Err(PathError::DotWithParameters)
    );
}

#[test]
fn other_readings_keep_what_some_upstreams_keep() {
    use PathParameters::*;
    // Nothing to read differently.
    assert_eq!(others("/api/private", Reject), vec![]);
    // Dots kept (Express, Django, Spring 6).
    assert_eq!(
        others("/api/public/../private", Reject),
        vec![("/api/public/../private".to_string(), true)]
    );
    // `//` kept.
    assert_eq!(
        others("/api//private", Reject),
        vec![("/api//private".to_string(), true)]
    );
    // Escapes of unreserved characters kept (Express), with dots resolved (WHATWG: here
    // the canonical path again) or not.
    assert_eq!(
        others("/api/pub%6cic/%2e%2e/private", Reject),
        vec![
            ("/api/public/../private".to_string(), true),
            ("/api/pub%6cic/%2e%2e/private".to_string(), false),
        ]
    );
    assert_eq!(
        others("/api/pub%6cic", Reject),
        vec![("/api/pub%6cic".to_string(), false)]
    );
    // Parameters kept by the upstreams that do not strip them: lenient.
    assert_eq!(
        others("/api/private;jsessionid=1", Strip),
        vec![("/api/private;jsessionid=1".to_string(), false)]
    );
    assert_eq!(read("/a;x/b", Strip).unwrap().canonical.as_str(), "/a/b");
    assert_eq!(read("/a/;x/b", Strip).unwrap().canonical.as_str(), "/a/b");
}

#[test]
fn segments_and_lenient_forms() {
    let path = |raw: &str| read(raw, PathParameters::Reject).unwrap().canonical;
    assert_eq!(path("/a/b/").segments().collect::<Vec<_>>(), ["a", "b", ""]);
    assert_eq!(path("/").segments().collect::<Vec<_>>(), [""]);
    let forms = |raw: &str| {
        path(raw)
            .lenient_forms()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(forms("/api/private"), ["/api/private"]);
    assert_eq!(forms("/api/private/"), ["/api/private/", "/api/private"]);
    assert_eq!(forms("/api/private."), ["/api/private.", "/api/private"]);
    assert_eq!(forms("/api/private%20"), ["/api/private ", "/api/private"]);
    assert_eq!(
        forms("/api/private.json."),
        ["/api/private.json.", "/api/private.json", "/api/private"]
    );
    assert_eq!(
        forms("/api/private.a.b"),
        ["/api/private.a.b", "/api/private"]
    );
    assert_eq!(forms("/api/.hidden"), ["/api/.hidden"]);
    assert_eq!(forms("/api/é.json"), ["/api/é.json", "/api/é"]);
    assert_eq!(forms("/"), ["/"]);
}

#[test]
fn folding_follows_case_insensitive_routers() {
    for (c, want) in [
        ('A', 'a'),
        ('a', 'a'),
        ('\u{FF21}', 'a'), // fullwidth A
        ('\u{FF50}', 'p'), // fullwidth p
        ('\u{17F}', 's'),  // long s
        ('\u{212A}', 'k'), // Kelvin sign
        ('\u{130}', 'i'),  // dotted capital I
        ('\u{131}', 'i'),  // dotless i
        ('É', 'é'),
        ('/', '/'),
        ('ß', 'ß'),
    ] {
        assert_eq!(fold(c), want, "{c}");
    }
}

#[test]
fn plain_paths_read_as_the_full_reading_does() {
    let mut paths: Vec<String> = [
        "/",
        "/api",
        "/api/",
        "/api/private",
        "/a/b.json",
        "/a/b.",
        "/a/.b",
        "/a.b/c",
        "/~user/x-y_z",
        "/A/B",
        "/a//b",
        "/a/./b",
        "/a/../b",
        "/..",
        "/.",
        "/a/..",
        "/a/...",
        "/a./b",
        "/a/b/",
        "//a",
        "/a;b",
        "/a%2e",
        "/a b",
        "/é",
        "/a\\b",
        "/a#b",
        "/a?b=1",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    // Every path of up to four characters over the characters that decide plainness.
    let alphabet = ['/', 'a', '.', '-', '~', '%', ';'];
    let mut frontier = vec![String::from("/")];
    for _ in 0..4 {
        frontier = frontier
            .iter()
            .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
            .collect();
        paths.extend(frontier.iter().cloned());
    }
    let mut plain_seen = 0;
    for path in &paths {
        let path = path.split('?').next().unwrap();
        for parameters in [PathParameters::Reject, PathParameters::Strip] {
            if let Some(fast) = plain(path) {
                plain_seen += 1;
                assert_eq!(Ok(fast), read_segments(path, parameters), "{path}");
            }
        }
    }
    assert!(plain_seen > 1000, "{plain_seen}");
}

/// `fold` as it was defined with the standard library's case conversions before
/// `fold_table.rs` replaced them, kept here as its specification (and written apart from the
/// generator's copy, `http::generate::folded`, so that this checks the generator too).
fn fold_with_std(c: char) -> char {
    fn single(mut chars: impl Iterator<Item = char>, fallback: char) -> char {
        match (chars.next(), chars.next()) {
            (Some(c), None) => c,
            _ => fallback,
        }
    }
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let c = match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{130}' => 'i',
        _ => c,
    };
    let upper = single(c.to_uppercase(), c);
    single(upper.to_lowercase(), upper)
}

/// The proof that the table is the definition: every character, surrogates aside (no
/// `char`), folds as the standard library folds it with the toolchain at hand (a newer
/// Unicode version fails here and in `tests/unicode.rs` until `make unicode` runs; an older
/// one cannot check the table).
#[test]
fn folding_is_the_standard_librarys_for_every_character() {
    if char::UNICODE_VERSION < FOLD_UNICODE_VERSION {
        // The table is newer than this toolchain's case conversions: nothing to compare with.
        eprintln!(
            "not checked: fold_table.rs is Unicode {FOLD_UNICODE_VERSION:?}, this toolchain's \
             is older, {:?}",
            char::UNICODE_VERSION
        );
        return;
    }
    let (mut checked, mut changed) = (0u32, 0u32);
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        let want = fold_with_std(c);
        assert_eq!(fold(c), want, "U+{:04X}", c as u32);
        checked += 1;
        changed += u32::from(want != c && !c.is_ascii());
    }
    assert_eq!(checked, 0x110000 - 0x800);
    // Not vacuous: the table holds the characters that change.
    assert!(changed > 1500, "{changed}");
    // And the generator's copy of the definition is this one.
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        assert_eq!(
            crate::http::generate::folded(c),
            fold_with_std(c),
            "U+{:04X}",
            c as u32
        );
    }
}
