//! How `shop` refuses to start on a dangerous or mistyped configuration: the real binary, its exit
//! code and its message (nothing is bound: every refusal comes before the listener).

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// `shop users` with `env` (and a private database), never reading a `CONFIG_PATH` of the caller.
fn shop_users(env: &[(&str, &str)]) -> Output {
    let path = std::env::temp_dir().join(format!("shop-startup-users-{}.db", unique()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_shop"));
    command
        .arg("users")
        .env_remove("CONFIG_PATH")
        .env("SHOP__USERS__PORT", "0")
        .env("SHOP__USERS__DATABASE_URL", url)
        .env("SHOP__USERS__PASSWORD_HASHING__MEMORY_KIB", "1024")
        .env("SHOP__USERS__PASSWORD_HASHING__ITERATIONS", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    // Every case here must refuse before serving; still running after 30 s means it started.
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// A database file name no other case uses.
fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

fn refused_with(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "shop started: {stderr}");
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    stderr
}

#[test]
fn a_mistyped_key_is_refused_with_the_key_it_meant() {
    let output = shop_users(&[("SHOP__USERS__ADMIN_PASWORD", "a password nobody will use")]);
    let stderr = refused_with(&output);
    assert!(stderr.contains("`users.admin_pasword`"), "{stderr}");
    assert!(stderr.contains("did you mean `users.admin_password`"), "{stderr}");
    assert!(!stderr.contains("a password nobody will use"), "values are never shown: {stderr}");
}

#[test]
fn the_development_jwt_secret_is_refused_beyond_loopback() {
    let output = shop_users(&[("SHOP__USERS__HOST", "0.0.0.0")]);
    let stderr = refused_with(&output);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0: jwt_secret is the development secret"),
        "{stderr}"
    );
    assert!(stderr.contains("SHOP__JWT_SECRET"), "{stderr}");

    let output = shop_users(&[("SHOP__USERS__HOST", "0.0.0.0"), ("SHOP__JWT_SECRET", "short-secret")]);
    assert!(refused_with(&output).contains("jwt_secret is shorter than 32 bytes"));
}

#[test]
fn the_default_admin_password_is_refused_beyond_loopback() {
    let output = shop_users(&[
        ("SHOP__USERS__HOST", "0.0.0.0"),
        ("SHOP__JWT_SECRET", "a-production-secret-of-more-than-32-bytes"),
    ]);
    let stderr = refused_with(&output);
    assert!(stderr.contains("the default password"), "{stderr}");
    assert!(stderr.contains("SHOP__USERS__ADMIN_PASSWORD"), "{stderr}");
}

#[test]
fn values_out_of_range_are_refused() {
    let stderr = refused_with(&shop_users(&[("SHOP__JWT_TTL_SECS", "0")]));
    assert!(stderr.contains("jwt_ttl_secs must be between 60 and 86400"), "{stderr}");
    let stderr = refused_with(&shop_users(&[("SHOP__USERS__MAX_IN_FLIGHT", "0")]));
    assert!(stderr.contains("users.max_in_flight must be at least 1"), "{stderr}");
    let stderr = refused_with(&shop_users(&[("SHOP__USERS__DOWNSTREAMS__CATALOG__URL", "catalog:8082")]));
    assert!(stderr.contains("users.downstreams.catalog: url"), "{stderr}");
}

#[test]
fn the_shipped_config_file_has_only_known_keys() {
    use figment::Figment;
    use figment::providers::{Format, Yaml};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/shop.yaml");
    let settings = kit::config::Settings::from_figment(Figment::from(Yaml::file(path)));
    assert!(settings.keys().len() > 30, "{:?}", settings.keys());
    let services =
        [&shop_users::SERVICE, &shop_catalog::SERVICE, &shop_inventory::SERVICE, &shop_orders::SERVICE];
    kit::service::check_keys(&services, &settings).unwrap();
}
