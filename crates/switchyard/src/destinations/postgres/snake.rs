//! Segment's warehouse names: go-snakecase (docs/destinations.md#names), ASCII only. A name already
//! in snake form is kept; otherwise the accepted prefix is kept and the rest is cut into words
//! (`[A-Z0-9]*[a-z0-9]*`, every other byte a separator), lower-cased and joined by `_`. Where the
//! fast scan stopped on an upper-case letter with no lower-case letter since the last `_`, the
//! first word is glued to the prefix (`5TEst` → `5test`, `CStringRef` → `cstring_ref`).

pub fn snakecase(s: &str) -> String {
    let b = s.as_bytes();
    let (stop, lower_seen) = accepted_prefix(b);
    if stop == b.len() {
        return s.to_owned();
    }
    let mut out = String::with_capacity(b.len() + 4);
    out.push_str(&s[..stop]);
    let mut i = stop;
    let mut glue = b[stop].is_ascii_uppercase() && !lower_seen;
    loop {
        while i < b.len() && !b[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i == b.len() {
            return out;
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_uppercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        while i < b.len() && (b[i].is_ascii_lowercase() || b[i].is_ascii_digit()) {
            i += 1;
        }
        if !out.is_empty() && !glue {
            out.push('_');
        }
        glue = false;
        out.extend(
            b[start..i]
                .iter()
                .map(|c| char::from(c.to_ascii_lowercase())),
        );
    }
}

/// The length of the leading run already in snake form (`[a-z0-9]` with single `_` between
/// them), and whether a lower-case letter appeared in it since its last `_`.
fn accepted_prefix(b: &[u8]) -> (usize, bool) {
    let mut lower_seen = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_lowercase() {
            lower_seen = true;
        } else if c == b'_' {
            let next_ok = b
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_lowercase() || n.is_ascii_digit());
            if i == 0 || !next_ok {
                return (i, lower_seen);
            }
            lower_seen = false;
        } else if !c.is_ascii_digit() {
            return (i, lower_seen);
        }
        i += 1;
    }
    (i, lower_seen)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::snakecase;

    /// All 32 pairs of go-snakecase's own `snake_test.go`.
    const VECTORS: [(&str, &str); 32] = [
        ("@49L0S145_¬fwHƒ0TSLNVp", "49l0s145_fw_h_0tslnvp"),
        ("lk0B@bFmjrLQ_Z6YL", "lk0_b_b_fmjr_lq_z6yl"),
        ("samPLE text", "sam_ple_text"),
        ("sample text", "sample_text"),
        ("sample-text", "sample_text"),
        ("sample_text", "sample_text"),
        ("sample___text", "sample_text"),
        ("sampleText", "sample_text"),
        (
            "inviteYourCustomersAddInvites",
            "invite_your_customers_add_invites",
        ),
        ("sample 2 Text", "sample_2_text"),
        ("   sample   2    Text   ", "sample_2_text"),
        ("   $#$sample   2    Text   ", "sample_2_text"),
        ("SAMPLE 2 TEXT", "sample_2_text"),
        ("___$$Base64Encode", "base64_encode"),
        ("FOO:BAR$BAZ", "foo_bar_baz"),
        ("FOO#BAR#BAZ", "foo_bar_baz"),
        ("something.com", "something_com"),
        ("$something%", "something"),
        ("something.com", "something_com"),
        ("•¶§ƒ˚foo˙∆˚¬", "foo"),
        ("CStringRef", "cstring_ref"),
        ("5test", "5test"),
        ("test5", "test5"),
        ("THE5r", "the5r"),
        ("5TEst", "5test"),
        ("_5TEst", "5test"),
        ("@%#&5TEst", "5test"),
        ("edf_6N", "edf_6n"),
        ("f_pX9", "f_p_x9"),
        ("p_z9Rg", "p_z9_rg"),
        ("2FA Enabled", "2fa_enabled"),
        ("Enabled 2FA", "enabled_2fa"),
    ];

    #[test]
    fn go_snakecase_vectors() {
        for (input, want) in VECTORS {
            assert_eq!(snakecase(input), want, "snakecase({input:?})");
        }
        assert_eq!(snakecase("Order Completed"), "order_completed");
        assert_eq!(snakecase("firstName"), "first_name");
        assert_eq!(snakecase("userAgent"), "user_agent");
        assert_eq!(snakecase(""), "");
    }

    proptest! {
        /// Output is snake form, and snake form is a fixed point.
        #[test]
        fn output_is_snake_and_stable(s in "\\PC{0,40}") {
            let out = snakecase(&s);
            prop_assert!(out.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
            prop_assert!(!out.starts_with('_') && !out.ends_with('_') && !out.contains("__"), "{:?}", out);
            prop_assert_eq!(snakecase(&out), out.clone());
        }
    }
}
