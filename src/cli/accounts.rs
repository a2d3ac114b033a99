//! `apextrack user …` and `apextrack token …`.

use super::{parse_language, print_json, Failure};
use crate::accounts::{self, Token, User};
use crate::app::App;
use crate::clock;
use crate::error::Error;
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::{BufRead, IsTerminal};

#[derive(Subcommand, Debug)]
pub(super) enum UserCommand {
    /// List all users
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one user (by id or email)
    Show {
        user: String,
        #[arg(long)]
        json: bool,
    },
    /// Create a user
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Mark the email as verified
        #[arg(long)]
        verified: bool,
        /// Language of the user's messages: id or en [default: server.default_language]
        #[arg(long)]
        language: Option<String>,
    },
    /// Mark a user's email as verified
    Verify { user: String },
    /// Set a new password (revokes all the user's tokens)
    SetPassword {
        user: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Set the account status: active or suspended
    SetStatus { user: String, status: String },
    /// Delete a user and everything they own
    Delete { user: String },
    /// Turn two-factor authentication off for a user who lost their device
    TwofaOff { user: String },
}

#[derive(clap::Args, Debug)]
pub(super) struct PasswordArgs {
    /// The password (visible in the process list; prefer --password-stdin)
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Subcommand, Debug)]
pub(super) enum TokenCommand {
    /// List login tokens, newest first
    List {
        /// Only this user's (id or email)
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke one token by id, or all of a user's with --user
    Revoke {
        #[arg(required_unless_present = "user", conflicts_with = "user")]
        id: Option<i64>,
        #[arg(long)]
        user: Option<String>,
    },
}

pub(super) fn find_user(app: &App, who: &str) -> Result<User, Failure> {
    accounts::find(app, who).map_err(|e| match e {
        Error::NotFound => Failure::input(format!("no user with id or email {who:?}")),
        other => other.into(),
    })
}

fn read_password(args: PasswordArgs) -> Result<String, Failure> {
    if let Some(password) = args.password {
        return Ok(password);
    }
    if !args.password_stdin {
        return Err(Failure::input("give --password or --password-stdin"));
    }
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password: ");
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).map_err(|e| Failure::new(format!("cannot read standard input: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub(super) fn user(app: &App, cmd: UserCommand) -> Result<(), Failure> {
    match cmd {
        UserCommand::List { json } => {
            let users = app.db.read(|c| Ok(accounts::store::list_users(c)?))?;
            if json {
                print_json(&Value::Array(users.iter().map(|u| user_json(app, u)).collect()));
            } else {
                print_users(&users);
            }
        }
        UserCommand::Show { user, json } => {
            let user = find_user(app, &user)?;
            if json {
                print_json(&user_json(app, &user));
            } else {
                print_users(std::slice::from_ref(&user));
            }
        }
        UserCommand::Create { name, email, password, verified, language } => {
            let password = read_password(password)?;
            let lang = parse_language(app, language)?;
            let (name, email) = (name.trim(), email.trim());
            let mut errors = crate::error::FieldErrors::default();
            accounts::validate_account(app, Some(name), Some(email), Some(&password), &mut errors)?;
            errors.into_result()?;
            let user = accounts::create_account(app, name, email, &password, lang, verified)?;
            println!("created user {} <{}>", user.id, user.email);
        }
        UserCommand::Verify { user } => {
            let user = find_user(app, &user)?;
            accounts::mark_verified(app, user.id)?;
            println!("verified {}", user.email);
        }
        UserCommand::SetPassword { user, password } => {
            let user = find_user(app, &user)?;
            accounts::set_password(app, user.id, &read_password(password)?)?;
            println!("password of {} changed; all their tokens revoked", user.email);
        }
        UserCommand::SetStatus { user, status } => {
            let user = find_user(app, &user)?;
            accounts::set_status(app, user.id, &status)?;
            println!("{} is now {status}", user.email);
        }
        UserCommand::TwofaOff { user } => {
            let user = find_user(app, &user)?;
            app.db.write(|tx| Ok(crate::accounts::twofa::disable(tx, user.id)?))?;
            println!("two-factor authentication is off for {}; they can bind it again", user.email);
        }
        UserCommand::Delete { user } => {
            let user = find_user(app, &user)?;
            accounts::delete(app, user.id)?;
            println!("deleted user {} <{}>", user.id, user.email);
        }
    }
    Ok(())
}

pub(super) fn token(app: &App, cmd: TokenCommand) -> Result<(), Failure> {
    match cmd {
        TokenCommand::List { user, json } => {
            let user_id = user.map(|u| find_user(app, &u)).transpose()?.map(|u| u.id);
            let tokens = app.db.read(|c| Ok(accounts::store::list_tokens(c, user_id)?))?;
            if json {
                print_json(&Value::Array(tokens.iter().map(token_json).collect()));
            } else {
                println!("{:<6} {:<6} {:<28} {:<28} {:<28} NAME", "ID", "USER", "CREATED", "LAST USED", "EXPIRES");
                for t in &tokens {
                    let at = |ts: Option<i64>| ts.map_or("-".to_string(), clock::format);
                    println!(
                        "{:<6} {:<6} {:<28} {:<28} {:<28} {}",
                        t.id,
                        t.user_id,
                        clock::format(t.created_at),
                        at(t.last_used_at),
                        at(t.expires_at),
                        t.name
                    );
                }
            }
        }
        TokenCommand::Revoke { id: Some(id), .. } => {
            if !accounts::revoke_token(app, id)? {
                return Err(Failure::input(format!("no token with id {id}")));
            }
            println!("revoked token {id}");
        }
        TokenCommand::Revoke { user, .. } => {
            let user = find_user(app, user.as_deref().unwrap_or_default())?;
            let n = app.db.write(|tx| Ok(accounts::store::delete_tokens_of_user(tx, user.id)?))?;
            println!("revoked {n} token(s) of {}", user.email);
        }
    }
    Ok(())
}

fn token_json(t: &Token) -> Value {
    json!({
        "id": t.id,
        "user_id": t.user_id,
        "name": t.name,
        "created_at": clock::format(t.created_at),
        "last_used_at": t.last_used_at.map(clock::format),
        "expires_at": t.expires_at.map(clock::format),
    })
}

fn print_users(users: &[User]) {
    println!("{:<6} {:<32} {:<24} {:<10} {:<9} CREATED", "ID", "EMAIL", "NAME", "STATUS", "VERIFIED");
    for u in users {
        println!(
            "{:<6} {:<32} {:<24} {:<10} {:<9} {}",
            u.id,
            u.email,
            u.name,
            u.account_status,
            if u.email_verified_at.is_some() { "yes" } else { "no" },
            clock::format(u.created_at)
        );
    }
}

/// An account as the CLI prints it: as `GET /api/user` shows it.
fn user_json(app: &App, user: &User) -> Value {
    accounts::user_json(user, &crate::tracking::postback::url(app, user.id, user.postback_secret_version))
}
