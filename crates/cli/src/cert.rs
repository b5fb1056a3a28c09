//! `outpost cert new`: a private certificate authority and a server certificate it signs, so that
//! HTTPS can be tried out (and private networks served) without another tool. Clients trust the CA
//! with `--ca-file ca.pem` / `OUTPOST_CA_FILE`; the server serves `cert.pem` and `key.pem` (`[tls]`).
//! The CA's own key is not kept: to certify another server, make a new CA or use your own.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use outpost_api::{Error, Result};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

use crate::output;

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Write ca.pem (the CA clients trust), cert.pem and key.pem (the server's) into a new directory.
    New(NewArgs),
}

#[derive(Args, Debug)]
#[command(after_help = "Example:
  outpost cert new --out tls --host localhost --host hq.internal
  # server config: [tls] cert = \"tls/cert.pem\", key = \"tls/key.pem\"
  # clients: OUTPOST_CA_FILE=tls/ca.pem outpost sync …")]
pub struct NewArgs {
    /// The directory to write into (created; it must not hold these files already).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A name or IP address the server is reached by. Repeatable (default: localhost, 127.0.0.1, ::1).
    #[arg(long = "host", value_name = "NAME")]
    hosts: Vec<String>,
}

pub fn run(cmd: CertCommand, json: bool) -> Result<()> {
    let CertCommand::New(args) = cmd;
    let hosts = if args.hosts.is_empty() {
        vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()]
    } else {
        args.hosts
    };
    let failed = |e: rcgen::Error| Error::invalid(format!("cannot make the certificate: {e}"));
    let ca_key = KeyPair::generate().map_err(failed)?;
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "Outpost private CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;

    let key = KeyPair::generate().map_err(failed)?;
    let mut leaf = CertificateParams::new(hosts.clone()).map_err(failed)?;
    leaf.distinguished_name.push(DnType::CommonName, hosts[0].clone());
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_cert = leaf.signed_by(&key, &ca_cert, &ca_key).map_err(failed)?;

    std::fs::create_dir_all(&args.out)
        .map_err(|e| Error::invalid(format!("cannot create {}: {e}", args.out.display())))?;
    let files = [
        ("ca.pem", ca_cert.pem(), false),
        ("cert.pem", leaf_cert.pem(), false),
        ("key.pem", key.serialize_pem(), true),
    ];
    for (name, _, _) in &files {
        let path = args.out.join(name);
        if path.exists() {
            return Err(Error::already_exists(format!(
                "{} exists; certificates are never overwritten",
                path.display()
            )));
        }
    }
    for (name, pem, secret) in &files {
        write(&args.out.join(name), pem, *secret)?;
    }
    let out = &args.out;
    if json {
        return output::emit_json(&serde_json::json!({
            "ca": out.join("ca.pem"), "cert": out.join("cert.pem"), "key": out.join("key.pem"), "hosts": hosts,
        }));
    }
    output::emit(&format!(
        "wrote {0}/ca.pem (clients trust it: --ca-file or OUTPOST_CA_FILE), {0}/cert.pem and {0}/key.pem (the \
         server's [tls] cert and key) for {1}",
        out.display(),
        hosts.join(", ")
    ))
}

fn write(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, if secret { 0o600 } else { 0o644 });
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .map_err(|e| Error::unavailable(format!("cannot write {}: {e}", path.display())))
}
