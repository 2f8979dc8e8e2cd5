//! `berth hosts-toml`: the containerd `hosts.toml` files (its `certs.d` layout) that make a node
//! pull through berth, and the docker and podman settings that do the same, printed for the
//! operator to put in place.
//!
//! containerd asks a mirror host for `/v2/<repository>/…?ns=<registry>`, tries the hosts in
//! order and goes to `server` (or the registry itself) after a 404, an error status or a failed
//! connection, so berth only has to answer what it mirrors and 404 the rest.
//!
//! Exit codes: 0 written, 2 bad flags (an invalid registry name or server URL, a CA that is
//! not PEM), 3 a file exists and `--force` was not given, or writing failed.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::{finish, CliError};
use crate::config::HostsTomlCommand;
use crate::mirror::names::normalize_ns;

/// Where nodes keep the files; the printed instructions copy `--out` there.
pub const INSTALL_DIR: &str = "/etc/containerd/certs.d";
/// The name of the CA copy beside each hosts.toml.
pub const CA_FILE: &str = "berth-ca.crt";
/// The namespace directory containerd uses for a registry that has none of its own.
pub const DEFAULT_NS_DIR: &str = "_default";

/// berth's base URL, checked: a scheme and an authority, nothing else, because containerd
/// appends `/v2` to whatever path the host URL has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// `scheme://authority`, no trailing slash.
    pub url: String,
    /// `host[:port]`, as docker's and podman's settings name a registry.
    pub authority: String,
    pub tls: bool,
}

impl Server {
    pub fn parse(given: &str) -> Result<Server, String> {
        let url = given.trim().trim_end_matches('/');
        let (tls, authority) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!(
                "--server {given:?}: must start with http:// or https:// (the scheme decides \
                 whether nodes use TLS)"
            ));
        };
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal's colons are inside the brackets.
            Some((h, p)) if !p.contains(']') => (h, Some(p)),
            _ => (authority, None),
        };
        let host_ok = if let Some(v6) = host.strip_prefix('[') {
            v6.strip_suffix(']')
                .is_some_and(|a| a.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        };
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if !host_ok || !port_ok {
            return Err(format!(
                "--server {given:?}: must be scheme://host[:port], with no path (berth serves \
                 /v2/ at its root)"
            ));
        }
        Ok(Server {
            url: url.to_owned(),
            authority: authority.to_owned(),
            tls,
        })
    }
}

/// An `--upstream` in the one spelling berth's `[[mirror]] ns` uses.
pub fn parse_upstream(given: &str) -> Result<String, String> {
    if given.trim() == DEFAULT_NS_DIR {
        return Err(format!(
            "--upstream {DEFAULT_NS_DIR}: use --default for a file that covers every registry"
        ));
    }
    if given.contains("://") || given.contains('/') {
        return Err(format!(
            "--upstream {given:?}: give the registry's host name (docker.io, quay.io), not a \
             URL or a repository"
        ));
    }
    let ns = normalize_ns(given).ok_or_else(|| {
        format!("--upstream {given:?}: not a registry host name such as docker.io or quay.io")
    })?;
    if ns.contains(':') {
        return Err(format!(
            "--upstream {given:?}: berth cannot mirror a registry on a port of its own (its \
             content is kept under <ns>/, and a port cannot start a repository name)"
        ));
    }
    Ok(ns)
}

/// Where containerd goes when berth does not have an image: the registry's API host.
pub fn upstream_server(ns: &str) -> String {
    if ns == "docker.io" {
        "https://registry-1.docker.io".to_owned()
    } else {
        format!("https://{ns}")
    }
}

/// A duration as Go's `time.ParseDuration` reads it (containerd's `dial_timeout`), exactly:
/// whole seconds, or else milliseconds.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A TOML string (or quoted key) with whatever escaping `s` needs.
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// One hosts.toml: `upstream` is the registry's ns, or `None` for `_default` (no `server`, so
/// containerd falls back to whichever registry the image names). `ca` is the CA copy's name,
/// which containerd resolves relative to the hosts.toml, so the file stays right wherever the
/// directory is installed.
pub fn render_hosts_toml(
    upstream: Option<&str>,
    server: &Server,
    ca: Option<&str>,
    dial_timeout: Duration,
) -> String {
    let mut out = String::new();
    let _ = write_hosts_toml(&mut out, upstream, server, ca, dial_timeout);
    out
}

fn write_hosts_toml(
    out: &mut String,
    upstream: Option<&str>,
    server: &Server,
    ca: Option<&str>,
    dial_timeout: Duration,
) -> std::fmt::Result {
    writeln!(out, "# Written by `berth hosts-toml`.")?;
    match upstream {
        Some(ns) => {
            writeln!(
                out,
                "# containerd asks berth first (adding ?ns={ns}) and goes to `server` when berth"
            )?;
            writeln!(out, "# answers 404 or cannot be reached.")?;
            writeln!(out, "server = {}", quoted(&upstream_server(ns)))?;
        }
        None => {
            writeln!(
                out,
                "# For every registry without a directory of its own here, containerd asks berth"
            )?;
            writeln!(
                out,
                "# first (adding ?ns=<registry>) and then the registry itself."
            )?;
        }
    }
    writeln!(out)?;
    writeln!(out, "[host.{}]", quoted(&server.url))?;
    // A private mirror the nodes trust may turn tags into digests; push goes upstream only.
    writeln!(out, "  capabilities = [\"pull\", \"resolve\"]")?;
    writeln!(
        out,
        "  dial_timeout = {}",
        quoted(&go_duration(dial_timeout))
    )?;
    // TLS keys only on an https:// host: the URL's scheme decides plain HTTP. containerd 2.1+
    // still tries HTTPS first on an http:// host with any per-host setting (dial_timeout
    // too), once per host, and uses HTTP after berth answers the handshake with HTTP/1.1 400.
    if server.tls {
        writeln!(out, "  skip_verify = false")?;
        if let Some(ca) = ca {
            writeln!(out, "  ca = {}", quoted(ca))?;
        }
    }
    Ok(())
}

/// docker's `daemon.json` keys for berth as its Docker Hub mirror; a plain-HTTP mirror must
/// also be listed as insecure.
pub fn docker_daemon_json(server: &Server) -> String {
    let json = |s: &str| serde_json::Value::from(s).to_string();
    let mut out = format!("{{\n  \"registry-mirrors\": [{}]", json(&server.url));
    if !server.tls {
        let _ = write!(
            out,
            ",\n  \"insecure-registries\": [{}]",
            json(&server.authority)
        );
    }
    out.push_str("\n}");
    out
}

/// podman's `registries.conf` stanza: berth as the mirror of `ns`, asked for
/// `<ns>/<repository>` by path, so these pulls need no `?ns=`.
pub fn podman_registry(ns: &str, server: &Server) -> String {
    let mut out = format!(
        "[[registry]]\nprefix = {ns}\nlocation = {ns}\n\n[[registry.mirror]]\nlocation = {}\n",
        quoted(&format!("{}/{ns}", server.authority)),
        ns = quoted(ns),
    );
    if !server.tls {
        out.push_str("insecure = true\n");
    }
    out
}

/// A file to write: its path under `--out` and its bytes.
struct Planned {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// What the flags resolve to.
struct Plan {
    server: Server,
    upstreams: Vec<String>,
    files: Vec<Planned>,
}

/// `berth hosts-toml`.
pub fn run(cmd: &HostsTomlCommand) -> ExitCode {
    finish(
        plan(cmd)
            .and_then(|plan| write_and_report(cmd, &plan))
            .map(|()| 0),
    )
}

fn plan(cmd: &HostsTomlCommand) -> Result<Plan, CliError> {
    let server = Server::parse(&cmd.server).map_err(CliError::Usage)?;
    let mut upstreams: Vec<String> = Vec::new();
    for given in &cmd.upstreams {
        let ns = parse_upstream(given).map_err(CliError::Usage)?;
        if upstreams.contains(&ns) {
            return Err(CliError::Usage(format!(
                "--upstream {given:?}: {ns} is given twice"
            )));
        }
        upstreams.push(ns);
    }
    if cmd.dial_timeout.0.is_zero() {
        return Err(CliError::Usage(
            "--dial-timeout must be above zero (containerd waits 30s without one)".into(),
        ));
    }
    let ca = match &cmd.ca {
        None => None,
        Some(_) if !server.tls => {
            return Err(CliError::Usage(format!(
                "--ca applies to an https:// --server; {} is plain HTTP",
                server.url
            )))
        }
        Some(path) => Some(read_ca(path)?),
    };
    let dirs: Vec<Option<&str>> = if cmd.default {
        vec![None]
    } else {
        upstreams.iter().map(|ns| Some(ns.as_str())).collect()
    };
    let mut files = Vec::new();
    for ns in dirs {
        let dir = cmd.out.join(ns.unwrap_or(DEFAULT_NS_DIR));
        let text = render_hosts_toml(
            ns,
            &server,
            ca.as_ref().map(|_| CA_FILE),
            cmd.dial_timeout.0,
        );
        if let Some(ca) = &ca {
            files.push(Planned {
                path: dir.join(CA_FILE),
                bytes: ca.clone(),
            });
        }
        files.push(Planned {
            path: dir.join("hosts.toml"),
            bytes: text.into_bytes(),
        });
    }
    Ok(Plan {
        server,
        upstreams,
        files,
    })
}

/// The CA file's bytes, refused unless it holds a PEM certificate: containerd fails every
/// pull of the registry, without falling back, when a host's `ca` does not load.
fn read_ca(path: &Path) -> Result<Vec<u8>, CliError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CliError::Usage(format!("--ca {}: {e}", path.display())))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----") {
        return Err(CliError::Usage(format!(
            "--ca {}: not a PEM certificate",
            path.display()
        )));
    }
    Ok(bytes)
}

fn write_and_report(cmd: &HostsTomlCommand, plan: &Plan) -> Result<(), CliError> {
    if !cmd.force {
        // All or nothing: a refusal leaves no half-updated directory behind.
        if let Some(f) = plan.files.iter().find(|f| f.path.exists()) {
            return Err(CliError::Exists(f.path.clone()));
        }
    }
    let mut stdout = std::io::stdout().lock();
    for f in &plan.files {
        write_atomically(&f.path, &f.bytes)?;
        writeln!(stdout, "Wrote {}", f.path.display())?;
    }
    let mut out = String::new();
    let _ = containerd_steps(&mut out, cmd, plan);
    let _ = docker_steps(&mut out, cmd, plan);
    let _ = podman_steps(&mut out, cmd, plan);
    stdout.write_all(out.as_bytes())?;
    Ok(())
}

/// containerd reads hosts.toml afresh for every pull, so a file written in place could be
/// read half-written: write a temporary file beside it and rename it over.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
        .map_err(|e| std::io::Error::new(e.kind(), format!("writing {}: {e}", path.display())))?;
    Ok(())
}

/// Where the files go, and the `[[mirror]]` table berth needs for them.
fn containerd_steps(out: &mut String, cmd: &HostsTomlCommand, plan: &Plan) -> std::fmt::Result {
    let example = match plan.upstreams.first().map(String::as_str) {
        Some("docker.io") | None => "docker.io/library/busybox:latest".to_owned(),
        Some(ns) => format!("{ns}/<repository>:<tag>"),
    };
    writeln!(out)?;
    writeln!(out, "containerd, on every node:")?;
    if cmd.out == Path::new(INSTALL_DIR) {
        writeln!(out, "  the files are in place in {INSTALL_DIR}.")?;
    } else {
        writeln!(
            out,
            "  mkdir -p {INSTALL_DIR} && cp -r {}/. {INSTALL_DIR}/",
            cmd.out.display()
        )?;
    }
    writeln!(
        out,
        "  and in /etc/containerd/config.toml (containerd 1.x, version = 2):"
    )?;
    writeln!(out, "    [plugins.\"io.containerd.grpc.v1.cri\".registry]")?;
    writeln!(out, "      config_path = \"{INSTALL_DIR}\"")?;
    writeln!(
        out,
        "  (containerd 2.x, version = 3: the same key under [plugins.\"io.containerd.cri.v1.images\".registry])."
    )?;
    writeln!(
        out,
        "  Changed hosts.toml files apply at the next pull; a new config_path needs a restart."
    )?;
    writeln!(
        out,
        "  ctr uses them with: ctr images pull --hosts-dir {INSTALL_DIR} {example}"
    )?;
    if cmd.default {
        writeln!(
            out,
            "  _default covers every registry without a directory of its own; berth answers 404 \
             for those it does not mirror and containerd goes to the registry."
        )?;
    }

    writeln!(out)?;
    writeln!(
        out,
        "berth serves a registry only with a [[mirror]] table for it in its settings file:"
    )?;
    let sample = plan.upstreams.first().map_or("docker.io", String::as_str);
    writeln!(out, "  [[mirror]]")?;
    writeln!(out, "  ns = {}", quoted(sample))?;
    writeln!(
        out,
        "  upstream = {}   # leave out to serve only what is pushed under {sample}/",
        quoted(&upstream_server(sample))
    )
}

/// docker's `registry-mirrors`, which only ever applies to Docker Hub.
fn docker_steps(out: &mut String, cmd: &HostsTomlCommand, plan: &Plan) -> std::fmt::Result {
    let docker_io = cmd.default || plan.upstreams.iter().any(|ns| ns == "docker.io");
    writeln!(out)?;
    if docker_io {
        writeln!(
            out,
            "docker (/etc/docker/daemon.json, then restart dockerd). docker mirrors Docker Hub only,"
        )?;
        writeln!(
            out,
            "and asks for its names without docker.io/ (library/busybox): berth serves those only from"
        )?;
        writeln!(out, "the [[mirror]] with unprefixed = true.")?;
        writeln!(out, "{}", docker_daemon_json(&plan.server))?;
        if plan.server.tls && cmd.ca.is_some() {
            writeln!(
                out,
                "and the CA as /etc/docker/certs.d/{}/ca.crt",
                plan.server.authority
            )?;
        }
    } else {
        writeln!(
            out,
            "docker: registry-mirrors applies to Docker Hub only, so docker cannot pull these through berth."
        )?;
    }
    Ok(())
}

/// podman's (and buildah's, skopeo's) `registries.conf` mirror stanzas, one per upstream.
fn podman_steps(out: &mut String, cmd: &HostsTomlCommand, plan: &Plan) -> std::fmt::Result {
    if !plan.upstreams.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "podman, buildah, skopeo (/etc/containers/registries.conf.d/berth.conf, or registries.conf;"
        )?;
        writeln!(out, "they ask berth for <registry>/<repository> by path):")?;
        for (i, ns) in plan.upstreams.iter().enumerate() {
            if i > 0 {
                writeln!(out)?;
            }
            write!(out, "{}", podman_registry(ns, &plan.server))?;
        }
        if plan.server.tls && cmd.ca.is_some() {
            writeln!(
                out,
                "and the CA as /etc/containers/certs.d/{}/ca.crt",
                plan.server.authority
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use toml::Value;

    fn server(url: &str) -> Server {
        Server::parse(url).unwrap()
    }

    fn parsed(text: &str) -> toml::Table {
        text.parse::<toml::Table>()
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn keys(t: &toml::Table) -> Vec<&str> {
        let mut k: Vec<&str> = t.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    /// The one `[host."<url>"]` table, checked to be the only one.
    fn host_table<'a>(file: &'a toml::Table, url: &str) -> &'a toml::Table {
        let hosts = file["host"].as_table().unwrap();
        assert_eq!(hosts.keys().collect::<Vec<_>>(), [url]);
        hosts[url].as_table().unwrap()
    }

    #[test]
    fn docker_hub_over_plain_http() {
        let text = render_hosts_toml(
            Some("docker.io"),
            &server("http://10.0.0.5:5000/"),
            None,
            Duration::from_secs(2),
        );
        let file = parsed(&text);
        assert_eq!(keys(&file), ["host", "server"], "{text}");
        assert_eq!(
            file["server"].as_str(),
            Some("https://registry-1.docker.io")
        );
        let host = host_table(&file, "http://10.0.0.5:5000");
        assert_eq!(
            host["capabilities"],
            Value::Array(vec!["pull".into(), "resolve".into()])
        );
        assert_eq!(host["dial_timeout"].as_str(), Some("2s"));
        // Plain HTTP: the scheme decides, TLS keys would only mislead.
        assert_eq!(host.len(), 2, "{text}");
    }

    #[test]
    fn other_registries_over_tls_with_a_ca() {
        let text = render_hosts_toml(
            Some("quay.io"),
            &server("https://berth.internal:8443"),
            Some(CA_FILE),
            Duration::from_millis(1500),
        );
        let file = parsed(&text);
        assert_eq!(file["server"].as_str(), Some("https://quay.io"));
        let host = host_table(&file, "https://berth.internal:8443");
        assert_eq!(host["skip_verify"].as_bool(), Some(false));
        assert_eq!(host["ca"].as_str(), Some(CA_FILE));
        assert_eq!(host["dial_timeout"].as_str(), Some("1500ms"));
        let text = render_hosts_toml(
            Some("ghcr.io"),
            &server("https://berth.internal"),
            None,
            Duration::from_secs(60),
        );
        let host = parsed(&text)["host"]["https://berth.internal"].clone();
        assert_eq!(host.get("ca"), None);
        assert_eq!(host["skip_verify"].as_bool(), Some(false));
        assert_eq!(host["dial_timeout"].as_str(), Some("60s"));
    }

    #[test]
    fn default_has_no_server() {
        let text = render_hosts_toml(
            None,
            &server("http://127.0.0.1:5000"),
            None,
            Duration::from_secs(2),
        );
        let file = parsed(&text);
        assert_eq!(keys(&file), ["host"], "{text}");
        host_table(&file, "http://127.0.0.1:5000");
    }

    #[test]
    fn upstream_names() {
        assert_eq!(parse_upstream("docker.io").unwrap(), "docker.io");
        assert_eq!(parse_upstream("Index.Docker.io").unwrap(), "docker.io");
        assert_eq!(
            parse_upstream("registry-1.docker.io:443").unwrap(),
            "docker.io"
        );
        assert_eq!(parse_upstream("quay.io").unwrap(), "quay.io");
        assert_eq!(upstream_server("docker.io"), "https://registry-1.docker.io");
        assert_eq!(upstream_server("quay.io"), "https://quay.io");
        for (bad, says) in [
            ("https://quay.io", "not a URL"),
            ("quay.io/org", "not a URL"),
            ("not a host", "not a registry host name"),
            ("-x.io", "not a registry host name"),
            ("registry.local:5000", "port"),
            ("_default", "--default"),
            ("", "not a registry host name"),
        ] {
            let e = parse_upstream(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    #[test]
    fn server_urls() {
        let s = server("http://127.0.0.1:5000/");
        assert_eq!(s.url, "http://127.0.0.1:5000");
        assert_eq!(s.authority, "127.0.0.1:5000");
        assert!(!s.tls);
        let s = server("https://[::1]:5000");
        assert_eq!(s.authority, "[::1]:5000");
        assert!(s.tls);
        assert!(server("https://berth.example").tls);
        for bad in [
            "127.0.0.1:5000",
            "ftp://x",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://h/registry",
            "http://u@h",
            "http://h?x=1",
            "https://[::1",
        ] {
            assert!(Server::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(2)), "2s");
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_secs(90)), "90s");
        assert_eq!(go_duration(Duration::from_millis(2001)), "2001ms");
    }

    #[test]
    fn docker_and_podman_snippets() {
        let plain = server("http://10.0.0.5:5000");
        let json: serde_json::Value = serde_json::from_str(&docker_daemon_json(&plain)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "registry-mirrors": ["http://10.0.0.5:5000"],
                "insecure-registries": ["10.0.0.5:5000"],
            })
        );
        let tls = server("https://berth.internal");
        let json: serde_json::Value = serde_json::from_str(&docker_daemon_json(&tls)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "registry-mirrors": ["https://berth.internal"] })
        );

        let conf = parsed(&podman_registry("docker.io", &plain));
        let reg = &conf["registry"].as_array().unwrap()[0];
        assert_eq!(reg["prefix"].as_str(), Some("docker.io"));
        assert_eq!(reg["location"].as_str(), Some("docker.io"));
        let mirror = &reg["mirror"].as_array().unwrap()[0];
        assert_eq!(mirror["location"].as_str(), Some("10.0.0.5:5000/docker.io"));
        assert_eq!(mirror["insecure"].as_bool(), Some(true));
        let conf = parsed(&podman_registry("quay.io", &tls));
        let mirror = &conf["registry"][0]["mirror"][0];
        assert_eq!(mirror["location"].as_str(), Some("berth.internal/quay.io"));
        assert_eq!(mirror.get("insecure"), None);
    }
}
