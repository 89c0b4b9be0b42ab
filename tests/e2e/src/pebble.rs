//! A real ACME CA for tests: pebble plus pebble-challtestsrv as its DNS, both from Debian's
//! `pebble` package (2.4), on free loopback ports, stopped when the handle is dropped.
//!
//! Debian ships no `test/certs`, so the TLS certificate of pebble's API and management ports is
//! made here with rcgen and signed by a throwaway CA ([`Pebble::ca_bundle`]); the certificates
//! pebble *issues* chain to a root it generates at each start ([`Pebble::root_pem`]).
//! pebble 2.4 has no ARI, no profiles and no `PEBBLE_AUTHZREUSE`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::ports::{free_port, free_udp_port};

/// How to start pebble.
#[derive(Debug, Clone)]
pub struct PebbleOptions {
    /// The port pebble connects to for HTTP-01 (the panel simulator's port).
    pub http_port: u16,
    /// `PEBBLE_WFE_NONCEREJECT`: the percentage of good nonces refused as `badNonce`.
    pub nonce_reject_percent: u8,
}

impl PebbleOptions {
    pub fn new(http_port: u16) -> Self {
        Self {
            http_port,
            nonce_reject_percent: 0,
        }
    }
}

/// Running pebble and pebble-challtestsrv.
#[derive(Debug)]
pub struct Pebble {
    /// `https://127.0.0.1:<port>/dir`
    pub directory_url: String,
    /// The challtestsrv DNS server pebble resolves names with; give it to the agent's
    /// `[acme] dns_resolver` so both see the same DNS.
    pub dns_addr: SocketAddr,
    management_url: String,
    challtestsrv_url: String,
    dir: tempfile::TempDir,
    children: Vec<Child>,
    http: reqwest::Client,
}

fn require(binary: &str) -> anyhow::Result<()> {
    // `-h` only prints usage; what matters is whether the program can be started at all.
    let started = Command::new(binary)
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = started {
        bail!(
            "`{binary}` cannot be run ({e}): `apt-get install pebble` (scripts/test installs it) \
             provides pebble and pebble-challtestsrv"
        );
    }
    Ok(())
}

/// A CA and a certificate for `localhost`/127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem).
fn api_certificates(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "mpanel test pebble CA");
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate()?;
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    leaf.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let cert = leaf.signed_by(&key, &issuer)?;
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca_cert.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

impl Pebble {
    /// Starts challtestsrv (DNS only, every name answering 127.0.0.1) and pebble, and returns
    /// once both answer. Fails saying how to install pebble when it is missing.
    pub async fn start(options: PebbleOptions) -> anyhow::Result<Self> {
        require("pebble")?;
        require("pebble-challtestsrv")?;
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let dir = tempfile::tempdir()?;
        let (ca, cert, key) = api_certificates(dir.path())?;
        let (listen, management, tls, dns, challtest) = (
            free_port(),
            free_port(),
            free_port(),
            free_udp_port(),
            free_port(),
        );
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{listen}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": cert,
                "privateKey": key,
                "httpPort": options.http_port,
                "tlsPort": tls,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_path = dir.path().join("pebble-config.json");
        std::fs::write(&config_path, serde_json::to_vec_pretty(&config)?)?;
        let log = |name: &str| -> anyhow::Result<Stdio> {
            Ok(std::fs::File::create(dir.path().join(name))?.into())
        };

        let mut children = Vec::new();
        let challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-management", &format!("127.0.0.1:{challtest}")])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(log("challtestsrv.log")?)
            .stderr(log("challtestsrv.err")?)
            .spawn()
            .context("starting pebble-challtestsrv")?;
        children.push(challtestsrv);
        let pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config_path)
            .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env(
                "PEBBLE_WFE_NONCEREJECT",
                options.nonce_reject_percent.to_string(),
            )
            .stdout(log("pebble.log")?)
            .stderr(log("pebble.err")?)
            .spawn()
            .context("starting pebble")?;
        children.push(pebble);

        let ca_pem = std::fs::read(&ca)?;
        let http = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&ca_pem)?)
            .timeout(Duration::from_secs(10))
            .build()?;
        let this = Pebble {
            directory_url: format!("https://127.0.0.1:{listen}/dir"),
            dns_addr: SocketAddr::from(([127, 0, 0, 1], dns)),
            management_url: format!("https://127.0.0.1:{management}"),
            challtestsrv_url: format!("http://127.0.0.1:{challtest}"),
            dir,
            children,
            http,
        };
        this.wait_until_up().await?;
        Ok(this)
    }

    async fn wait_until_up(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let directory = self.http.get(&self.directory_url).send().await;
            let dns = self
                .http
                .post(format!("{}/set-default-ipv4", self.challtestsrv_url))
                .json(&serde_json::json!({"ip": "127.0.0.1"}))
                .send()
                .await;
            if matches!(&directory, Ok(r) if r.status().is_success())
                && matches!(&dns, Ok(r) if r.status().is_success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "pebble did not come up (directory: {directory:?}, challtestsrv: {dns:?}); \
                     pebble said: {}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The end of pebble's and challtestsrv's logs, for failure messages.
    pub fn log_tail(&self) -> String {
        [
            "pebble.log",
            "pebble.err",
            "challtestsrv.log",
            "challtestsrv.err",
        ]
        .iter()
        .map(|name| {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("--- {name}\n{}", tail.join("\n"))
        })
        .collect::<Vec<_>>()
        .join("\n")
    }

    /// The PEM CA that signed pebble's own API certificate: what an ACME client must trust.
    pub fn ca_bundle(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    async fn management_get(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}{path}", self.management_url))
            .send()
            .await
            .with_context(|| format!("GET {path} on pebble's management port"))?;
        if !response.status().is_success() {
            bail!(
                "GET {path} on pebble's management port: {}",
                response.status()
            );
        }
        Ok(response.text().await?)
    }

    /// The root issued certificates chain to (new at every pebble start).
    pub async fn root_pem(&self) -> anyhow::Result<String> {
        self.management_get("/roots/0").await
    }

    /// The intermediate that signs issued certificates.
    pub async fn intermediate_pem(&self) -> anyhow::Result<String> {
        self.management_get("/intermediates/0").await
    }

    async fn challtestsrv(&self, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.challtestsrv_url))
            .json(&body)
            .send()
            .await
            .with_context(|| format!("POST {path} on pebble-challtestsrv"))?;
        if !response.status().is_success() {
            bail!("POST {path} on pebble-challtestsrv: {}", response.status());
        }
        Ok(())
    }

    /// What every name without its own A record resolves to.
    pub async fn set_default_ipv4(&self, ip: &str) -> anyhow::Result<()> {
        self.challtestsrv("/set-default-ipv4", serde_json::json!({ "ip": ip }))
            .await
    }

    /// Gives `host` its own A records.
    pub async fn add_a(&self, host: &str, addresses: &[&str]) -> anyhow::Result<()> {
        let host = format!("{}.", host.trim_end_matches('.'));
        self.challtestsrv(
            "/add-a",
            serde_json::json!({ "host": host, "addresses": addresses }),
        )
        .await
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
