//! The layers of `src/lib.rs`'s diagram hold: no top-level module of
//! `src/` imports (through a `crate::` path outside `#[cfg(test)]`) a
//! module of a layer above its own, so no import circle can form.

use std::collections::BTreeMap;
use std::path::Path;

/// Bottom to top, as in `src/lib.rs`.
const LAYERS: &[&[&str]] = &[
    &["clock", "crypto", "i18n", "error", "text", "net"],
    &["config", "log", "metrics", "db", "keys", "ratelimit", "http_client", "backup"],
    &["mail", "sms", "outbox", "base"],
    &["accounts", "verification", "settings", "tracking"],
    &["app"],
    &["http", "jobs", "cli"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The source without `#[cfg(test)] mod … { … }` blocks and `//` comments.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        let Some(open) = after.find('{') else { break };
        let mut depth = 0;
        let mut end = after.len();
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every `crate::name` and every name of a `crate::{a, b::c}` group.
fn crate_imports(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + 7..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = &group[..group.find('}').unwrap_or(group.len())];
            for item in inner.split(',') {
                let name: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                found.push(name);
            }
        } else {
            found.push(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
        }
    }
    found
}

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            visit(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    visit(&src, &mut files);
    let mut upward: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel.components().next().unwrap().as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let mine =
            layer_of(&top).unwrap_or_else(|| panic!("src/{top} is in no layer: add it to LAYERS and src/lib.rs"));
        let code = non_test_code(&std::fs::read_to_string(&file).unwrap());
        for import in crate_imports(&code) {
            if let Some(theirs) = layer_of(&import) {
                if theirs > mine {
                    upward.entry(format!("src/{}", rel.display())).or_default().push(import);
                }
            }
        }
    }
    assert!(upward.is_empty(), "imports pointing up the layers: {upward:?}");
}

#[test]
fn the_check_sees_an_upward_import() {
    let code = non_test_code(
        "use crate::clock;\nuse crate::{app::App, db};\n// crate::cli in a comment\n#[cfg(test)]\nmod tests { use crate::jobs; }\n",
    );
    assert_eq!(crate_imports(&code), ["clock", "app", "db"]);
}
