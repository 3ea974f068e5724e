//! The password policy: what a new password must not be (too short or long, common, repetitive,
//! sequential, containing a context word, guessable). Pure functions, no hashing.

/// Why a password is refused by the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Fewer than 8 characters.
    #[error("must be at least 8 characters")]
    TooShort,
    /// More than 128 characters.
    #[error("must be at most 128 characters")]
    TooLong,
    /// On the common-passwords list.
    #[error("is too common")]
    Common,
    /// One character or one short group repeated (`aaaaaaaa`, `abcabcabc`).
    #[error("must not be a repeated character or group")]
    Repetitive,
    /// A run of consecutive characters (`abcdefgh`, `87654321`).
    #[error("must not be a sequence such as abcdefgh or 12345678")]
    Sequential,
    /// Contains a word from the context (the product's name, the email's local part).
    #[error("must not contain the service's name or your email address")]
    ContextWord,
    /// Guessable in few tries even though on no list (zxcvbn score below 2).
    #[error("is too easy to guess; use a longer passphrase")]
    Guessable,
}

/// Whether the whole string is one unit repeated (a unit of 1 to 4 characters).
fn repetitive(chars: &[char]) -> bool {
    (1..=4).any(|unit| {
        chars.len() >= 2 * unit
            && chars.len().is_multiple_of(unit)
            && chars.chunks(unit).all(|c| c == &chars[..unit])
    })
}

/// Whether the whole string steps by +1 or -1 through code points (letters compared without
/// case).
fn sequential(chars: &[char]) -> bool {
    let lower: Vec<u32> = chars
        .iter()
        .map(|c| c.to_ascii_lowercase() as u32)
        .collect();
    let steps: Vec<i64> = lower
        .windows(2)
        .map(|w| i64::from(w[1]) - i64::from(w[0]))
        .collect();
    !steps.is_empty() && (steps.iter().all(|&d| d == 1) || steps.iter().all(|&d| d == -1))
}

/// Applies the password policy (API.md's, and NIST SP 800-63B §5.1.1.2's list of what to
/// refuse): 8 to 128 characters; not on the common-passwords list (zxcvbn's frequency list of
/// leaked passwords, matched as a whole); not a repeated character or group nor a sequence;
/// not containing a context word of four or more characters (the product's name, the email's
/// local part), compared without case; and not guessable in few tries by zxcvbn's estimate
/// (score 0 or 1 of 4). A common password dressed up with capitals, digits or a year
/// (`Passw0rd!`, `Summer2024!`) counts as common.
pub fn check_policy(password: &str, context: &[&str]) -> Result<(), PolicyError> {
    let chars: Vec<char> = password.chars().collect();
    if chars.len() < 8 {
        return Err(PolicyError::TooShort);
    }
    if chars.len() > 128 {
        return Err(PolicyError::TooLong);
    }
    if repetitive(&chars) {
        return Err(PolicyError::Repetitive);
    }
    if sequential(&chars) {
        return Err(PolicyError::Sequential);
    }
    let lower = password.to_lowercase();
    if context
        .iter()
        .map(|w| w.trim().to_lowercase())
        .any(|w| w.chars().count() >= 4 && lower.contains(&w))
    {
        return Err(PolicyError::ContextWord);
    }
    use zxcvbn::feedback::Warning;
    let estimate = zxcvbn::zxcvbn(password, context);
    let common = estimate
        .feedback()
        .and_then(|f| f.warning())
        .is_some_and(|w| {
            matches!(
                w,
                Warning::ThisIsATop10Password
                    | Warning::ThisIsATop100Password
                    | Warning::ThisIsACommonPassword
                    | Warning::ThisIsSimilarToACommonlyUsedPassword
            )
        });
    if common {
        return Err(PolicyError::Common);
    }
    if (estimate.score() as u8) < 2 {
        return Err(PolicyError::Guessable);
    }
    Ok(())
}

/// The context words a user's password must not contain: the product's names and the local
/// part of the email.
pub fn context_words<'a>(product: &'a str, email: &'a str) -> [&'a str; 3] {
    let local = email.split('@').next().unwrap_or("");
    [product, "edge-idp", local]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_short_long_and_common_passwords() {
        let check = |p: &str| check_policy(p, &[]);
        assert_eq!(check("short"), Err(PolicyError::TooShort));
        assert_eq!(check(&"xy".repeat(65)), Err(PolicyError::TooLong));
        assert_eq!(check("password"), Err(PolicyError::Common));
        assert_eq!(check("iloveyou"), Err(PolicyError::Common));
        assert_eq!(check("qwertyuiop"), Err(PolicyError::Common));
        assert!(check("correct horse battery staple").is_ok());
        assert!(check("Tr0ub4dour&3-unique").is_ok());
        let long: String = "été à la plage, 7 vagues "
            .chars()
            .cycle()
            .take(128)
            .collect();
        assert!(check(&long).is_ok(), "characters, not bytes");
    }

    #[test]
    fn policy_refuses_repetitive_sequential_guessable_and_context_passwords() {
        let check =
            |p: &str| check_policy(p, &context_words("Acme Login", "ada.lovelace@example.com"));
        assert_eq!(check("aaaaaaaa"), Err(PolicyError::Repetitive));
        assert_eq!(check("11111111"), Err(PolicyError::Repetitive));
        assert_eq!(check("abcabcabcabc"), Err(PolicyError::Repetitive));
        assert_eq!(check("abcdefgh"), Err(PolicyError::Sequential));
        assert_eq!(check("87654321"), Err(PolicyError::Sequential));
        assert!(check("Passw0rd!").is_err());
        assert!(check("Summer2024!").is_err());
        assert_eq!(
            check("my ada.lovelace key 93"),
            Err(PolicyError::ContextWord)
        );
        assert_eq!(
            check("EDGE-IDP rocks hard 7"),
            Err(PolicyError::ContextWord)
        );
        assert_eq!(check("acme login vault 42!"), Err(PolicyError::ContextWord));
        assert!(check("correct horse battery staple").is_ok());
    }
}
