//! The admin listener's access rule, shared by every admin router (notifications,
//! operations): a bearer token compared in constant time, so response timing tells a
//! caller nothing about how much of a guess was right. Whether a token is required
//! is the configuration's rule: always when the listener is not on loopback.

/// Whether an `Authorization` header value carries `Bearer <token>`. Runs in time
/// that depends only on the lengths, not on where the first difference is.
pub fn bearer_ok(given: Option<&str>, token: &str) -> bool {
    let Some(given) = given.and_then(|g| g.strip_prefix("Bearer ")) else {
        return false;
    };
    let (a, b) = (given.as_bytes(), token.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xFF);
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_ok;

    #[test]
    fn only_the_exact_token_passes() {
        assert!(bearer_ok(Some("Bearer s3cret"), "s3cret"));
        for wrong in [
            None,
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret!"),
            Some("Bearer S3cret"),
            Some("Basic s3cret"),
            Some("Bearer "),
        ] {
            assert!(!bearer_ok(wrong, "s3cret"), "{wrong:?}");
        }
    }
}
