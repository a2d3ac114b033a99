//! The OpenAPI document served at /api/openapi.json is kept true: every
//! operation it lists exists on the running server, answers with a status
//! it documents, and in JSON.

mod common;

use common::{request, verified_user, Client, TestServer};
use serde_json::{json, Value};

#[test]
fn every_documented_operation_exists_and_answers_as_documented() {
    let s = TestServer::start();
    let doc = s.get("/api/openapi.json", None).json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let (_, token) = verified_user(&s, "doc@example.com");
    let link = s.post("/api/links", Some(&token), &json!({"name": "Doc", "url": "https://doc.example/"})).json()
        ["data"]
        .clone();
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{}", paths.len());
    let mut operations = 0;
    for (path, methods) in paths {
        let concrete = path
            .replace("{id}", &link["id"].to_string())
            .replace("{slug}", link["slug"].as_str().unwrap())
            .replace("{hash}", "0000");
        for (method, op) in methods.as_object().unwrap() {
            operations += 1;
            let documented: Vec<u16> =
                op["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            let query = if path == "/api/reports" { "?group_by=day" } else { "" };
            let body = if op.get("requestBody").is_some() { "{}" } else { "" };
            let auth = format!("Bearer {token}");
            let r = request(
                s.addr(),
                &method.to_uppercase(),
                &format!("{concrete}{query}"),
                &[("Authorization", auth.as_str()), ("Content-Type", "application/json")],
                body.as_bytes(),
            );
            assert_ne!(r.status, 405, "{method} {path} is documented but not routed");
            assert!(r.status < 500, "{method} {path}: {} {}", r.status, r.body);
            assert!(
                documented.contains(&r.status),
                "{method} {path} answered {} (documented: {documented:?}): {}",
                r.status,
                r.body
            );
            let json_documented = op["responses"][r.status.to_string()]["content"].get("application/json").is_some();
            if r.status != 302 && json_documented {
                assert!(serde_json::from_str::<Value>(&r.body).is_ok(), "{method} {path}: not JSON: {}", r.body);
            }
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()));
        }
    }
    assert!(operations >= 35, "{operations}");
    // Every $ref points at a schema that exists.
    let text = doc.to_string();
    for part in text.split("\"#/components/schemas/").skip(1) {
        let name = part.split('"').next().unwrap();
        assert!(doc["components"]["schemas"].get(name).is_some(), "missing schema {name}");
    }
}
