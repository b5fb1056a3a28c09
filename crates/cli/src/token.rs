//! `outpost token new`: a token for a server's config (SPEC §14): a secret of 256 random bits,
//! shown once (or written to a new owner-only file), and the `[[tokens]]` block that holds only its
//! hash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use outpost_api::{Error, Result};
use outpost_server::{NewToken, Role};

use crate::output;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a new token: its secret, printed once, and the [[tokens]] block for the server config.
    New(NewArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "Roles: read (every read, changes, replicating out), write (read + writes, replicating \
in), admin (write + creating and deleting the database and its tables, server-run jobs).

Examples:
  outpost token new --name tablet-7 --role field=write --role stock=read
  outpost token new --name ops --role '*=admin' --secret-file ops.token >> outpost.toml")]
pub struct NewArgs {
    /// Who holds the token (shown in messages and logs; not secret).
    #[arg(long)]
    name: String,
    /// DB=ROLE: the token's role on database DB, or on every database with `*`. Repeatable.
    #[arg(long = "role", value_name = "DB=ROLE", required = true, value_parser = parse_role)]
    roles: Vec<(String, Role)>,
    /// Write the secret into this new file (owner-only) instead of printing it; standard output then
    /// carries only the [[tokens]] block, ready to append to a config with `>>`.
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
}

fn parse_role(text: &str) -> std::result::Result<(String, Role), String> {
    let (db, role) =
        text.split_once('=').ok_or_else(|| format!("expected DB=ROLE (e.g. field=write), not {text:?}"))?;
    let role = role.parse::<Role>().map_err(|e| e.message)?;
    Ok((db.trim().to_owned(), role))
}

pub fn run(cmd: TokenCommand, json: bool) -> Result<()> {
    let TokenCommand::New(args) = cmd;
    let mut roles = BTreeMap::new();
    for (db, role) in args.roles {
        if roles.insert(db.clone(), role).is_some_and(|before| before != role) {
            return Err(Error::invalid(format!("--role names database {db:?} twice with different roles")));
        }
    }
    let token = NewToken::generate(&args.name, roles)?;
    let block = token.toml();
    if let Some(path) = &args.secret_file {
        write_secret(path, &token.secret)?;
        output::note(&format!("the secret of token {:?} is in {} (owner-only)", args.name, path.display()));
        if json {
            return output::emit_json(&serde_json::json!({"secret_file": path, "toml": block}));
        }
        print!("{block}");
        return Ok(());
    }
    if json {
        return output::emit_json(&serde_json::json!({"token": token.secret, "toml": block}));
    }
    println!(
        "Token {:?}: shown only this once. Give it to its holder (OUTPOST_TOKEN, or a file for --token-file):\n\n  {}\n\n\
         Add this to the server config (it holds only the token's hash):\n\n{block}",
        args.name, token.secret
    );
    Ok(())
}

/// Write `secret` into the new file `path`, readable by its owner only.
fn write_secret(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => {
            Error::already_exists(format!("{} exists; a token file is never overwritten", path.display()))
        }
        _ => Error::invalid(format!("cannot create {}: {e}", path.display())),
    })?;
    file.write_all(format!("{secret}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::unavailable(format!("cannot write {}: {e}", path.display())))
}
