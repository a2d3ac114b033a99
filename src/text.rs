//! Plain text checks shared by the configuration and the domains: email
//! addresses and the `"Name <address>"` form of a sender.

/// A deliberately plain check: one `@`, something before it, a dotted
/// domain after it, no spaces or control characters.
pub fn is_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && email.chars().all(|c| !c.is_whitespace() && !c.is_control())
}

/// `"Name <a@b.c>"` → (Some("Name"), "a@b.c"); `"a@b.c"` → (None, "a@b.c").
pub fn split_address(from: &str) -> (Option<&str>, &str) {
    match (from.find('<'), from.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            let name = from[..open].trim().trim_matches('"');
            ((!name.is_empty()).then_some(name), from[open + 1..close].trim())
        }
        _ => (None, from.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_shapes() {
        for ok in ["a@b.co", "first.last+tag@example.co.id", "x@localhost.localdomain"] {
            assert!(is_email(ok), "{ok}");
        }
        for bad in ["", "a", "a@", "@b.co", "a@b", "a b@c.co", "a@b..co", "a@.b.co", "a@b.co.", "a@@b.co"] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn addresses_split_into_name_and_email() {
        assert_eq!(split_address("Apex <a@b.co>"), (Some("Apex"), "a@b.co"));
        assert_eq!(split_address("\"Apex Track\" <a@b.co>"), (Some("Apex Track"), "a@b.co"));
        assert_eq!(split_address("a@b.co"), (None, "a@b.co"));
    }
}
