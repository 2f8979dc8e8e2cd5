//! What `berth cert` prints: what it did, then commands to copy as they are (real paths and
//! `host:port` filled in, shell-quoted where needed) for serving and for each client's trust.

use std::path::Path;

use crate::tlsgen::{show_time, Names, Report, Server, Why};

/// Paths as the user should see them (absolute), and what the instructions are for.
pub struct Shown<'a> {
    pub data: &'a Path,
    pub ca: &'a Path,
    pub ca_key: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
    pub names: &'a Names,
    pub port: u16,
}

/// The CA and the server certificate: made, kept or reissued, and until when.
pub fn status(shown: &Shown<'_>, report: &Report) -> String {
    let ca_until = show_time(report.ca.facts.not_after);
    let ca = if report.ca.created {
        format!(
            "CA      {}: created, valid until {ca_until}\n        key {} (mode 0600): back it up, \
             never copy it to clients\n",
            shown.ca.display(),
            shown.ca_key.display()
        )
    } else {
        format!(
            "CA      {}: kept, valid until {ca_until}\n",
            shown.ca.display()
        )
    };
    let names = shown.names.all().join(", ");
    let server = match &report.server {
        Server::Reused(facts) => format!(
            "server  {}: reused, still valid for {names} until {}; --renew issues a new one\n",
            shown.cert.display(),
            show_time(facts.not_after)
        ),
        Server::Issued { facts, why } => {
            let because = match why {
                Why::Missing => String::new(),
                Why::Asked => " (--renew)".to_owned(),
                Why::Ending(t) => format!(" (the previous one ends {})", show_time(*t)),
                Why::OtherNames(old) => {
                    format!(" (the previous one was for {})", old.all().join(", "))
                }
                Why::KeyMismatch => " (the previous key did not match its certificate)".to_owned(),
            };
            format!(
                "server  {}: issued{because} for {names}, valid until {}\n        key {}\n",
                shown.cert.display(),
                show_time(facts.not_after),
                shown.key.display()
            )
        }
    };
    ca + &server
}

/// How to serve with the certificate and how each client trusts the CA.
pub fn instructions(shown: &Shown<'_>) -> String {
    let all: Vec<String> = shown
        .names
        .all()
        .iter()
        .map(|n| format!("{n}:{}", shown.port))
        .collect();
    let host = all.first().cloned().unwrap_or_default();
    let others = match all.get(1..).unwrap_or(&[]) {
        [] => String::new(),
        rest => format!(
            "\n# They use {host}; repeat them for {} if clients use that name too.",
            rest.join(", ")
        ),
    };
    let ca = quote(&shown.ca.display().to_string());
    let ctrd = format!("/etc/containerd/certs.d/{host}");
    let docker = format!("/etc/docker/certs.d/{host}");
    let containers = format!("/etc/containers/certs.d/{host}");
    let (q_ctrd, q_docker, q_containers) = (quote(&ctrd), quote(&docker), quote(&containers));
    let toml_ca = format!("{ctrd}/ca.crt")
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!(
        "\n# Serve with it (choose the listen address; 127.0.0.1 is reachable from this machine only):
berth serve --data {data} --listen 0.0.0.0:{port} --tls-cert {cert} --tls-key {key}

# Trust the CA on each machine that pushes or pulls. The lines below read it from
# {ca}: copy it to that path there first.{others}

# containerd 1.5 and later (ctr: --hosts-dir /etc/containerd/certs.d; CRI: config_path =
# \"/etc/containerd/certs.d\" under [plugins.\"io.containerd.grpc.v1.cri\".registry]):
mkdir -p {q_ctrd}
cp {ca} {q_ctrd}/ca.crt
cat > {q_ctrd}/hosts.toml <<'EOF'
server = \"https://{host}\"

[host.\"https://{host}\"]
  capabilities = [\"pull\", \"resolve\", \"push\"]
  ca = \"{toml_ca}\"
EOF

# Docker:
mkdir -p {q_docker}
cp {ca} {q_docker}/ca.crt

# Podman, Buildah and Skopeo (rootless podman also reads ~/.config/containers/certs.d):
mkdir -p {q_containers}
cp {ca} {q_containers}/ca.crt

# Skopeo told per command: a directory holding ca.crt and no key, such as that one:
skopeo copy --dest-cert-dir {q_containers} oci:LAYOUT:TAG docker://{host}/REPO:TAG
skopeo copy --src-cert-dir {q_containers} docker://{host}/REPO:TAG oci:OUT:TAG

# The system trust store (curl, Helm, ORAS and most other programs), Debian and Ubuntu:
cp {ca} /usr/local/share/ca-certificates/berth-ca.crt
update-ca-certificates
# (Fedora, RHEL: cp to /etc/pki/ca-trust/source/anchors/berth-ca.crt, then update-ca-trust)

# Helm and ORAS without the system store:
helm push CHART.tgz oci://{host}/charts --ca-file {ca}
helm pull oci://{host}/charts/NAME --version VERSION --ca-file {ca}
oras push --ca-file {ca} {host}/REPO:TAG FILE
oras pull --ca-file {ca} {host}/REPO:TAG
",
        data = quote(&shown.data.display().to_string()),
        port = shown.port,
        cert = quote(&shown.cert.display().to_string()),
        key = quote(&shown.key.display().to_string()),
    )
}

/// `s` as one shell word: as it is when it holds only characters the shell takes literally,
/// in single quotes otherwise (an IPv6 `[::1]` would be a glob).
fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-:+@%=,".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn shown<'a>(names: &'a Names, paths: &'a [PathBuf; 5]) -> Shown<'a> {
        Shown {
            data: &paths[0],
            ca: &paths[1],
            ca_key: &paths[2],
            cert: &paths[3],
            key: &paths[4],
            names,
            port: 5443,
        }
    }

    fn paths(data: &str) -> [PathBuf; 5] {
        let tls = Path::new(data).join("tls");
        [
            PathBuf::from(data),
            tls.join("ca.crt"),
            tls.join("ca.key"),
            tls.join("server.crt"),
            tls.join("server.key"),
        ]
    }

    #[test]
    fn instructions_name_the_real_paths_and_host_port() {
        let names =
            Names::new(&["registry.lan".to_owned()], &["10.0.0.5".parse().unwrap()]).unwrap();
        let p = paths("/srv/berth");
        let text = instructions(&shown(&names, &p));
        for line in [
            "berth serve --data /srv/berth --listen 0.0.0.0:5443 --tls-cert /srv/berth/tls/server.crt --tls-key /srv/berth/tls/server.key",
            "cp /srv/berth/tls/ca.crt /etc/containerd/certs.d/registry.lan:5443/ca.crt",
            "cat > /etc/containerd/certs.d/registry.lan:5443/hosts.toml <<'EOF'",
            "server = \"https://registry.lan:5443\"",
            "[host.\"https://registry.lan:5443\"]",
            "  ca = \"/etc/containerd/certs.d/registry.lan:5443/ca.crt\"",
            "cp /srv/berth/tls/ca.crt /etc/docker/certs.d/registry.lan:5443/ca.crt",
            "cp /srv/berth/tls/ca.crt /etc/containers/certs.d/registry.lan:5443/ca.crt",
            "cp /srv/berth/tls/ca.crt /usr/local/share/ca-certificates/berth-ca.crt",
            "update-ca-certificates",
            "skopeo copy --dest-cert-dir /etc/containers/certs.d/registry.lan:5443 oci:LAYOUT:TAG docker://registry.lan:5443/REPO:TAG",
            "skopeo copy --src-cert-dir /etc/containers/certs.d/registry.lan:5443 docker://registry.lan:5443/REPO:TAG oci:OUT:TAG",
            "helm push CHART.tgz oci://registry.lan:5443/charts --ca-file /srv/berth/tls/ca.crt",
            "oras pull --ca-file /srv/berth/tls/ca.crt registry.lan:5443/REPO:TAG",
            "# They use registry.lan:5443; repeat them for 10.0.0.5:5443 if clients use that name too.",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // The heredoc ends at the start of a line, or a pasted command would never end.
        assert!(text.lines().any(|l| l == "EOF"));
    }

    #[test]
    fn odd_paths_and_ipv6_are_quoted_for_the_shell() {
        let names = Names::new(&[], &["::1".parse().unwrap()]).unwrap();
        let p = paths("/srv/my data");
        let text = instructions(&shown(&names, &p));
        assert!(
            text.contains("cp '/srv/my data/tls/ca.crt' '/etc/docker/certs.d/[::1]:5443'/ca.crt"),
            "{text}"
        );
        assert!(!text.contains("repeat them"), "{text}");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
