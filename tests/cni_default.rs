//! `crius config cni-default` writes a bridge network into an empty CNI
//! conf dir and never touches one that has a config; `crius config check`
//! reports missing plugins and invalid configs (on stderr: stdout stays
//! the effective config).

mod common;

use std::path::Path;

use common::net::CNI_BIN;
use common::*;

/// A config file using `conf_dir` and the Debian plugin dir.
fn config_file(dir: &Path, conf_dir: &Path) -> std::path::PathBuf {
    let path = dir.join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[cni]\nconf_dir = {:?}\nbin_dirs = [{CNI_BIN:?}]\n",
            conf_dir.display().to_string()
        ),
    )
    .unwrap();
    path
}

fn crius_ok(args: &[&str]) -> (String, String) {
    let out = run_crius(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "crius {}: {stdout}{stderr}",
        args.join(" ")
    );
    (stdout, stderr)
}

fn require_plugins() {
    for plugin in ["bridge", "host-local", "portmap"] {
        assert!(
            Path::new(CNI_BIN).join(plugin).exists(),
            "CNI plugin {plugin} missing in {CNI_BIN}: install Debian's containernetworking-plugins"
        );
    }
}

#[test]
fn the_default_conflist_is_written_into_an_empty_conf_dir() {
    require_plugins();
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("net.d");
    let cfg = config_file(dir.path(), &conf_dir);
    let (stdout, _) = crius_ok(&["config", "cni-default", "--config", cfg.to_str().unwrap()]);
    let file = conf_dir.join("10-crius-bridge.conflist");
    assert!(
        stdout.contains("wrote") && stdout.contains(file.to_str().unwrap()),
        "{stdout}"
    );
    let list: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let plugins = list["plugins"].as_array().unwrap();
    assert_eq!(plugins[0]["type"], "bridge");
    assert_eq!(plugins[0]["bridge"], "cni0");
    assert_eq!(plugins[0]["ipam"]["type"], "host-local");
    assert_eq!(plugins[0]["ipam"]["ranges"][0][0]["subnet"], "10.88.0.0/16");
    assert_eq!(plugins[1]["type"], "portmap");
    assert_eq!(plugins[1]["snat"], true);
    let firewall = plugins.iter().any(|p| p["type"] == "firewall");
    assert_eq!(
        firewall,
        Path::new(CNI_BIN).join("firewall").exists(),
        "the firewall plugin is used exactly when it is installed"
    );
    assert!(
        !plugins.iter().any(|p| p["type"] == "loopback"),
        "crius brings lo up itself"
    );

    // With its plugins installed, `config check` finds nothing wrong.
    let (_, stderr) = crius_ok(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert!(!stderr.contains("problem"), "{stderr}");
}

#[test]
fn an_existing_config_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("net.d");
    std::fs::create_dir(&conf_dir).unwrap();
    let mine = conf_dir.join("50-mine.conf");
    let text = r#"{"cniVersion":"1.0.0","name":"mine","type":"bridge","bridge":"mine0"}"#;
    std::fs::write(&mine, text).unwrap();
    let cfg = config_file(dir.path(), Path::new("/nonexistent/net.d"));
    // --conf-dir wins over the config's cni.conf_dir.
    let (stdout, _) = crius_ok(&[
        "config",
        "cni-default",
        "--conf-dir",
        conf_dir.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(
        stdout.contains("left") && stdout.contains("50-mine.conf"),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&mine).unwrap(), text);
    let names: Vec<_> = std::fs::read_dir(&conf_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "nothing else written: {names:?}");
}

#[test]
fn config_check_names_a_missing_plugin_and_an_invalid_conflist() {
    let dir = tempfile::tempdir().unwrap();
    let conf_dir = dir.path().join("net.d");
    std::fs::create_dir(&conf_dir).unwrap();
    std::fs::write(conf_dir.join("05-broken.conflist"), "{ not json").unwrap();
    std::fs::write(
        conf_dir.join("10-net.conflist"),
        r#"{"cniVersion":"1.0.0","name":"net","plugins":[
            {"type":"bridge","bridge":"x0","ipam":{"type":"host-local"}},
            {"type":"crius-no-such-plugin"}]}"#,
    )
    .unwrap();
    let cfg = config_file(dir.path(), &conf_dir);
    let (stdout, stderr) = crius_ok(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert!(
        stdout.parse::<toml::Table>().is_ok(),
        "stdout stays the config: {stdout}"
    );
    assert!(
        stderr.contains("05-broken.conflist"),
        "the invalid conflist is named: {stderr}"
    );
    assert!(
        stderr.contains("\"crius-no-such-plugin\"") && stderr.contains("not found"),
        "the missing plugin is named: {stderr}"
    );
    assert_eq!(
        stderr.matches("problem").count(),
        2,
        "installed plugins are not reported: {stderr}"
    );

    let empty = dir.path().join("empty.d");
    std::fs::create_dir(&empty).unwrap();
    let cfg = config_file(dir.path(), &empty);
    let (_, stderr) = crius_ok(&["config", "check", "--config", cfg.to_str().unwrap()]);
    assert!(stderr.contains("cni-default"), "{stderr}");
}
