use super::*;
use crate::config::CommandPolicy;

#[track_caller]
fn parse(text: &str) -> Config {
    let config = Config::from_str(text).unwrap();
    config.validate().unwrap();
    config
}

#[test]
fn reloadable_keys_apply_and_the_others_keep_their_running_values() {
    let running = parse("port = 7001\nmax_buffer_size = 1000\n");
    let fresh = parse(
        "port = 7002\nmax_buffer_size = 2000\nallowed_origins = [\"https://a.example\"]\n\
         allowed_hosts = [\"a.example:7001\"]\norigin_required = true\ncommand_policy = \"any\"\n\
         logging_level = \"debug\"\nsupported_protocols = [\"chat\"]\ndemo_page = false\n\
         [session]\nsecret = \"s\"\n[api]\nkey = \"0123456789abcdef\"\n\
         [metrics]\nenabled = false\n[webhooks]\nurl = \"http://127.0.0.1:9/\"\nsecret = \"w\"\n\
         [cluster]\nreuse_port = true\n",
    );
    let plan = plan(&running, &fresh).unwrap();
    let c = &plan.config;
    assert_eq!(c.allowed_origins, ["https://a.example"]);
    assert_eq!(c.allowed_hosts, ["a.example:7001"]);
    assert!(c.origin_required);
    assert_eq!(c.command_policy, CommandPolicy::Any);
    assert_eq!(c.logging_level, crate::config::LogLevel::Debug);
    assert_eq!(c.supported_protocols, ["chat"]);
    assert!(!c.demo_page);
    assert_eq!(c.session.secret, "s");
    assert_eq!(c.api.key, "0123456789abcdef");
    assert!(!c.metrics.enabled);
    assert_eq!(c.webhooks.url, "http://127.0.0.1:9/");
    // Restart-only: the running values.
    assert_eq!((c.port, c.max_buffer_size), (7001, 1000));
    assert!(!c.cluster.reuse_port);
    assert_eq!(
        plan.applied,
        [
            "allowed_hosts",
            "allowed_origins",
            "api.key",
            "command_policy",
            "demo_page",
            "logging_level",
            "metrics.enabled",
            "origin_required",
            "session.secret",
            "supported_protocols",
            "webhooks.secret",
            "webhooks.url",
        ]
    );
    assert_eq!(
        plan.restart,
        ["cluster.reuse_port", "max_buffer_size", "port"]
    );
}

#[test]
fn the_same_file_changes_nothing() {
    let running =
        parse("allowed_origins = [\"https://a.example\"]\n[cluster]\nreuse_port = true\n");
    let plan = plan(&running, &running.clone()).unwrap();
    assert_eq!(plan.config, running);
    assert!(
        plan.applied.is_empty() && plan.restart.is_empty(),
        "{plan:?}"
    );
}

#[test]
fn every_restart_only_key_is_named_never_its_value() {
    let running = Config::default();
    let fresh = parse(
        "host = \"0.0.0.0\"\nmax_send_buffer = 4096\nmax_handshake_size = 4096\n\
         max_connections = 5\nping_interval = 3\nlogging_output = \"file\"\n\
         [cluster]\nredis_url = \"redis://:hunter2@127.0.0.1:6379/0\"\n\
         [pusher]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"very-secret-0123456789\"\n",
    );
    let plan = plan(&running, &fresh).unwrap();
    assert_eq!(plan.config, running);
    assert_eq!(
        plan.restart,
        [
            "cluster.redis_url",
            "host",
            "logging_output",
            "max_connections",
            "max_handshake_size",
            "max_send_buffer",
            "ping_interval",
            "pusher.app_id",
            "pusher.key",
            "pusher.secret",
        ]
    );
    let all = format!("{plan:?}");
    assert!(!plan.restart.concat().contains("hunter2"));
    assert!(!plan.restart.concat().contains("very-secret"), "{all}");
}

#[test]
fn tls_files_reload_but_turning_tls_on_or_off_needs_a_restart() {
    let mut running = Config::default();
    let mut fresh = Config::default();
    fresh.tls.cert = Some("/x/cert.pem".into());
    fresh.tls.key = Some("/x/key.pem".into());
    let mut merged = running.clone();
    apply_now(&mut merged, &fresh);
    assert_eq!(merged.tls, running.tls, "off -> on is kept off");
    assert_eq!(differences(&merged, &fresh), ["tls.cert", "tls.key"]);

    running.tls = fresh.tls.clone();
    fresh.tls.cert = Some("/y/cert.pem".into());
    let mut merged = running.clone();
    apply_now(&mut merged, &fresh);
    assert_eq!(merged.tls, fresh.tls, "new paths apply");

    fresh.tls = Default::default();
    let mut merged = running.clone();
    apply_now(&mut merged, &fresh);
    assert_eq!(merged.tls, running.tls, "on -> off is kept on");
}

#[test]
fn a_reloadable_key_that_needs_a_restart_only_key_refuses_the_reload() {
    // Pusher-format webhooks need the [pusher] table, which itself needs a restart.
    let running = Config::default();
    let fresh = parse(
        "[pusher]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"0123456789abcdef\"\n\
         [webhooks]\nurl = \"http://127.0.0.1:9/\"\nformat = \"pusher\"\n",
    );
    let e = plan(&running, &fresh).unwrap_err();
    assert_eq!(e.key(), Some("webhooks.format"), "{e}");
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rakit-reload-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_source_reads_validates_and_keeps_the_flags() {
    let dir = scratch("source");
    let file = dir.join("c.toml");
    std::fs::write(
        &file,
        "port = 7001\nhost = \"0.0.0.0\"\ncommand_policy = \"any\"\n",
    )
    .unwrap();
    let source = Source {
        file: Some(file.clone()),
        host: None,
        port: Some(0),
    };
    let c = source.load().unwrap();
    assert_eq!((c.host.as_str(), c.port), ("0.0.0.0", 0));
    assert_eq!(c.command_policy, CommandPolicy::Any);

    for (text, needle) in [
        ("", "empty"),
        ("max_connections = 0\n", "max_connections"),
        ("nope = 1\n", "unknown key `nope`"),
        ("port = [\n", "invalid array"),
    ] {
        std::fs::write(&file, text).unwrap();
        let e = source.load().unwrap_err();
        assert!(e.contains(needle), "{text:?}: {e}");
        assert!(e.starts_with(&file.display().to_string()), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
    std::fs::write(&file, vec![b' '; read::MAX_BYTES as usize + 1]).unwrap();
    assert!(source.load().unwrap_err().contains("larger than"));
    std::fs::remove_file(&file).unwrap();
    assert!(source.load().unwrap_err().contains("No such file"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_file_that_keeps_changing_is_refused() {
    let dir = scratch("changing");
    let file = dir.join("c.toml");
    std::fs::write(&file, "port = 1\n").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (file, stop) = (file.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                // Whole files (renamed into place): only the changing is at stake here.
                let tmp = file.with_extension("tmp");
                std::fs::write(&tmp, format!("port = {}\n", 1 + n % 1000)).unwrap();
                std::fs::rename(&tmp, &file).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let e = read::settled(Some(&file)).unwrap_err();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert!(e.contains("kept changing"), "{e}");
    assert_eq!(
        read::settled(Some(&file)).unwrap().unwrap(),
        std::fs::read_to_string(&file).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
