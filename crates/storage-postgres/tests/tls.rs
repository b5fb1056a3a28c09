//! PostgreSQL over TLS (SPEC §14) against the test cluster (`OUTPOST_TEST_POSTGRES`, a superuser;
//! skipped when unset, failing under `CI=true`): the test gives the cluster a certificate from a CA it
//! makes, turns `ssl` on, and checks that `sslmode=require&sslrootcert=CA` connects over TLS (the
//! server sees encrypted sessions), that an untrusted CA is refused, and that a URL without `sslmode`
//! still connects in plain as before. The cluster's `ssl` setting is reset at the end.

use outpost_api::{Databases, ErrorKind, Limits};
use outpost_postgres::{PostgresConfig, PostgresDatabases};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

mod common;
use common::test_url;

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// A CA, and a certificate it signs for localhost and 127.0.0.1: (CA PEM, cert PEM, key PEM).
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

/// Write `text` into `path` on the server's machine, as the server (large-object export).
async fn server_file(client: &tokio_postgres::Client, path: &str, text: &str) {
    let row = client.query_one("SELECT lo_from_bytea(0, $1::bytea)", &[&text.as_bytes()]).await.unwrap();
    let oid: u32 = row.get(0);
    client.execute("SELECT lo_export($1, $2)", &[&oid, &path]).await.unwrap();
    client.execute("SELECT lo_unlink($1)", &[&oid]).await.unwrap();
    // PostgreSQL refuses a key file that others may read, and lo_export follows the server's umask.
    client.batch_execute(&format!("COPY (SELECT 1) TO PROGRAM 'chmod 600 {path}'")).await.unwrap();
}

/// `url` with `extra` query parameters.
fn with_params(url: &str, extra: &str) -> String {
    if url.contains('?') {
        format!("{url}&{extra}")
    } else {
        format!("{url}?{extra}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_require_connects_over_verified_tls() {
    let Some(url) = test_url() else { return };
    let client = admin(&url).await;
    let dir: String = client.query_one("SHOW data_directory", &[]).await.unwrap().get(0);
    let (ca, cert, key) = certificates();
    let (cert_file, key_file) = (format!("{dir}/outpost-test-server.crt"), format!("{dir}/outpost-test-server.key"));
    server_file(&client, &cert_file, &cert).await;
    server_file(&client, &key_file, &key).await;
    for (setting, value) in [("ssl_cert_file", cert_file.as_str()), ("ssl_key_file", key_file.as_str()), ("ssl", "on")]
    {
        client.batch_execute(&format!("ALTER SYSTEM SET {setting} = '{value}'")).await.unwrap();
    }
    client.batch_execute("SELECT pg_reload_conf()").await.unwrap();

    let url_inside = url.clone();
    let outcome = async move {
        let url = url_inside;
        let client = admin(&url).await;
        // A reload is asynchronous: wait (bounded) until new sessions see ssl on.
        for _ in 0..100 {
            let on: String = admin(&url).await.query_one("SHOW ssl", &[]).await.unwrap().get(0);
            if on == "on" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let files = tempfile::tempdir().unwrap();
        let ca_file = files.path().join("ca.pem");
        std::fs::write(&ca_file, &ca).unwrap();
        let tls_url = with_params(
            &url.replace("@127.0.0.1", "@localhost"),
            &format!("sslmode=verify-full&sslrootcert={}&application_name=outpost-tls-test", ca_file.display()),
        );
        let config = PostgresConfig::from_url(&tls_url).expect("a TLS URL");
        assert!(config.uses_tls(), "{config:?}");
        let dbs = PostgresDatabases::connect(config, Limits::default()).await.expect("TLS connect");
        let name = format!("tls-{}", std::process::id());
        let _ = dbs.delete(&name).await;
        let db = dbs.create(&name).await.expect("create over TLS");
        assert_eq!(db.info().await.unwrap().update_seq, 0);
        let encrypted: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE ssl AND application_name = 'outpost-tls-test'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(encrypted >= 1, "the server sees Outpost's sessions encrypted");
        dbs.delete(&name).await.unwrap();

        // A CA that did not sign the server's certificate: refused, not silently plain.
        let (other_ca, _, _) = certificates();
        let other_file = files.path().join("other.pem");
        std::fs::write(&other_file, other_ca).unwrap();
        let untrusted = with_params(
            &url.replace("@127.0.0.1", "@localhost"),
            &format!("sslmode=require&sslrootcert={}", other_file.display()),
        );
        let e = PostgresDatabases::connect_url(&untrusted, Limits::default()).await.err().expect("refused");
        assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");

        // No sslmode: plain, as always (even with ssl on at the server).
        assert!(!PostgresConfig::from_url(&url).unwrap().uses_tls());
        PostgresDatabases::connect_url(&url, Limits::default()).await.expect("plain connect");
        // A missing CA file is a clear error naming it.
        let missing = with_params(&url, "sslmode=require&sslrootcert=/nonexistent/ca.pem");
        let e = PostgresConfig::from_url(&missing).expect_err("missing CA file");
        assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
    };
    // Run, then reset the cluster whatever happened.
    let result = tokio::spawn(outcome).await;
    for setting in ["ssl", "ssl_cert_file", "ssl_key_file"] {
        client.batch_execute(&format!("ALTER SYSTEM RESET {setting}")).await.unwrap();
    }
    client.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic.into_panic());
    }
}
