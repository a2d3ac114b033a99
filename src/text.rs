//! Plain text checks shared by the configuration and the domains: email
//! addresses, the `"Name <address>"` form of a sender, and CSV files as
//! users upload them.

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

/// A CSV file as spreadsheets and networks export it: a UTF-8 byte order
/// mark is skipped, fields are separated by `,` or `;` (whichever the
/// header line uses), may be quoted with `"` (a doubled `""` inside is a
/// quote), lines end in LF or CRLF, blank lines are skipped. Returns each
/// record with its line number (the header is line 1). A quoted field may
/// not span lines. At most `max_records` records (header included) of at
/// most [`MAX_CSV_FIELDS`] fields are read: a file past either is refused
/// before it takes more memory.
pub fn csv_records(text: &str, max_records: usize) -> Result<Vec<(usize, Vec<String>)>, CsvError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let header = text.lines().next().unwrap_or("");
    let delimiter = match (header.contains(','), header.contains(';')) {
        (true, _) => ',',
        (false, true) => ';',
        (false, false) if header.contains('\t') || header.contains('|') => return Err(CsvError::Delimiter),
        _ => ',',
    };
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        if records.len() == max_records {
            return Err(CsvError::TooMany);
        }
        if line.matches(delimiter).count() >= MAX_CSV_FIELDS {
            return Err(CsvError::Fields(i + 1));
        }
        records.push((i + 1, csv_fields(line, delimiter).ok_or(CsvError::Quote(i + 1))?));
    }
    Ok(records)
}

/// Most fields a CSV line may have.
pub const MAX_CSV_FIELDS: usize = 64;

/// Why a file is not CSV we read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvError {
    /// Fields separated by tabs or bars: save as CSV with `,` or `;`.
    Delimiter,
    /// An opening quote without its closing one, on this line.
    Quote(usize),
    /// More records than the caller takes.
    TooMany,
    /// More than [`MAX_CSV_FIELDS`] fields on this line.
    Fields(usize),
}

impl CsvError {
    /// Why, in words, to finish "The file cannot be read: …".
    pub fn reason(&self) -> String {
        match self {
            CsvError::Delimiter => "fields must be separated by , or ;".into(),
            CsvError::Quote(line) => format!("line {line} opens a quote it does not close"),
            CsvError::TooMany => "it has too many lines".into(),
            CsvError::Fields(line) => format!("line {line} has more than {MAX_CSV_FIELDS} fields"),
        }
    }
}

fn csv_fields(line: &str, delimiter: char) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            c if c == delimiter && !quoted => {
                fields.push(std::mem::take(&mut field).trim().to_string());
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = at_start && c.is_whitespace() && !quoted;
    }
    if quoted {
        return None;
    }
    fields.push(field.trim().to_string());
    Some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_files_are_read_as_spreadsheets_write_them() {
        let file = "\u{feff}clickid;status;payout\r\nabc;approved;\"1,50\"\r\n\r\n\"x\"\"y\";pending; 2 \n";
        let records = csv_records(file, 10).unwrap();
        assert_eq!(records[0], (1, vec!["clickid".to_string(), "status".into(), "payout".into()]));
        assert_eq!(records[1], (2, vec!["abc".to_string(), "approved".into(), "1,50".into()]));
        assert_eq!(records[2], (4, vec!["x\"y".to_string(), "pending".into(), "2".into()]));
        assert_eq!(csv_records("a,b\n1,2,3", 10).unwrap()[1].1.len(), 3);
        assert_eq!(csv_records("a\tb\n1\t2", 10), Err(CsvError::Delimiter));
        assert_eq!(csv_records("a,b\n\"open,2", 10), Err(CsvError::Quote(2)));
        assert!(csv_records("", 10).unwrap().is_empty());
        assert_eq!(csv_records("a\n1\n2\n3", 3), Err(CsvError::TooMany));
        assert_eq!(csv_records(&format!("a\n{}", ",".repeat(1_000_000)), 3), Err(CsvError::Fields(2)));
    }

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
