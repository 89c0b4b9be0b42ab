//! A real PowerDNS Authoritative server per test: Debian's `pdns_server` with the gsqlite3
//! backend on a fresh database, its HTTP API and its DNS listener on free loopback ports, killed
//! when the handle drops. [`PowerDnsServer::lookup`] asks it over DNS (UDP), the way resolvers
//! will, so a test proves the zone is served and not only stored.
//!
//! Caches are off (`cache-ttl`, `query-cache-ttl`, `negquery-cache-ttl` = 0), so an answer
//! always shows the zone as it is now. The server runs with an empty configuration directory:
//! a system `/etc/powerdns/pdns.conf` (and its `setuid`) plays no part.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

/// Where Debian's `pdns-backend-sqlite3` puts the schema, newest layout first.
const SCHEMA_PATHS: &[&str] = &[
    "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
    "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
    "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql.gz",
];
const PDNS_SERVER: &str = "/usr/sbin/pdns_server";
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Ports are chosen free and then handed to pdns_server; another process can take one in
/// between, so a start that fails is tried again on new ports.
const START_ATTEMPTS: usize = 3;

/// A running `pdns_server`.
#[derive(Debug)]
pub struct PowerDnsServer {
    /// `http://127.0.0.1:<port>`: give it as `POWERDNS_API_URL`.
    pub api_url: String,
    pub api_key: String,
    /// The API's `{server_id}`.
    pub server_id: String,
    /// Where it answers DNS, over UDP and TCP.
    pub dns_addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl PowerDnsServer {
    /// Starts a fresh server and waits until both its API and its DNS listener answer. Panics,
    /// naming `scripts/test`, when PowerDNS is not installed.
    pub async fn start() -> PowerDnsServer {
        let pdns = Path::new(PDNS_SERVER);
        assert!(
            pdns.exists(),
            "PowerDNS is required for this test and {PDNS_SERVER} is missing: run scripts/test, \
             which installs pdns-server and pdns-backend-sqlite3 (or apt-get install them)"
        );
        let schema = read_schema();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match Self::try_start(pdns, &schema).await {
                Ok(server) => return server,
                Err(why) => failures.push(why),
            }
        }
        panic!(
            "pdns_server did not come up in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    async fn try_start(pdns: &Path, schema: &str) -> Result<PowerDnsServer, String> {
        let dir = std::env::temp_dir().join(format!(
            "mpanel-pdns-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        // pdns_server reads `<config-dir>/pdns.conf` and refuses to start without one.
        std::fs::write(dir.join("pdns.conf"), "").map_err(|e| e.to_string())?;
        let database = dir.join("pdns.sqlite3");
        create_database(&database, schema).await?;

        let api_port = crate::ports::free_port();
        let dns_port = crate::ports::free_tcp_and_udp_port();
        let api_key = format!("pdns-{}", uuid::Uuid::new_v4().simple());
        let log = std::fs::File::create(dir.join("pdns.log")).map_err(|e| e.to_string())?;
        let args: Vec<String> = vec![
            format!("--config-dir={}", dir.display()),
            format!("--socket-dir={}", dir.display()),
            "--launch=gsqlite3".into(),
            format!("--gsqlite3-database={}", database.display()),
            "--api=yes".into(),
            format!("--api-key={api_key}"),
            "--webserver=yes".into(),
            "--webserver-address=127.0.0.1".into(),
            format!("--webserver-port={api_port}"),
            "--webserver-allow-from=127.0.0.1".into(),
            "--local-address=127.0.0.1".into(),
            format!("--local-port={dns_port}"),
            "--daemon=no".into(),
            "--guardian=no".into(),
            "--disable-syslog".into(),
            // No lookups of PowerDNS's own security status on the network.
            "--security-poll-suffix=".into(),
            "--cache-ttl=0".into(),
            "--query-cache-ttl=0".into(),
            "--negquery-cache-ttl=0".into(),
            "--receiver-threads=1".into(),
            "--distributor-threads=1".into(),
        ];
        let child = Command::new(pdns)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", pdns.display()))?;
        let mut server = PowerDnsServer {
            api_url: format!("http://127.0.0.1:{api_port}"),
            api_key,
            server_id: "localhost".into(),
            dns_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, dns_port)),
            dir,
            child: Some(child),
        };
        match server.wait_until_ready().await {
            Ok(()) => Ok(server),
            Err(why) => {
                let log = server.log_tail();
                server.kill();
                let _ = std::fs::remove_dir_all(&server.dir);
                Err(format!("{why}\npdns.log:\n{log}"))
            }
        }
    }

    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let client = reqwest::Client::new();
        let url = format!("{}/api/v1/servers/{}", self.api_url, self.server_id);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut api_up = false;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("pdns_server exited: {status}"));
            }
            if !api_up {
                api_up = client
                    .get(&url)
                    .header("X-API-Key", &self.api_key)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
            }
            // Any answer, even REFUSED for a zone it does not have, means DNS is listening.
            if api_up && self.ask(".", RecordType::SOA, 1).await.is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer within {START_TIMEOUT:?} (API answered: {api_up})"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The records of `rtype` at `name` as served over DNS (UDP), in presentation form and
    /// sorted: `192.0.2.10`, `10 mail.shop.example.`, `v=spf1 a mx ~all`, `ns1.example.net.`.
    /// An empty list for a name or type the zone does not have; panics if the server does not
    /// answer or is not authoritative for the name.
    pub async fn lookup(&self, name: &str, rtype: &str) -> Vec<String> {
        let record_type = RecordType::from_str(rtype)
            .unwrap_or_else(|e| panic!("'{rtype}' is not a record type: {e}"));
        let answer = self
            .ask(name, record_type, 3)
            .await
            .unwrap_or_else(|e| panic!("DNS query {name} {rtype} to {}: {e}", self.dns_addr));
        let code = answer.metadata.response_code;
        assert!(
            matches!(code, ResponseCode::NoError | ResponseCode::NXDomain),
            "DNS query {name} {rtype}: {code:?}{}",
            if code == ResponseCode::Refused {
                " (the server has no zone for this name)"
            } else {
                ""
            }
        );
        assert!(
            answer.metadata.authoritative,
            "DNS query {name} {rtype}: the answer is not authoritative"
        );
        let mut values: Vec<String> = answer
            .answers
            .iter()
            .filter(|r| r.record_type() == record_type)
            .map(|r| r.data.to_string())
            .collect();
        values.sort();
        values
    }

    /// One query over UDP, sent up to `tries` times a second apart.
    async fn ask(&self, name: &str, rtype: RecordType, tries: u32) -> Result<Message, String> {
        let name = Name::from_ascii(name).map_err(|e| format!("bad name {name}: {e}"))?;
        let mut query = Message::query();
        query.add_query(Query::query(name, rtype));
        let bytes = query.to_vec().map_err(|e| e.to_string())?;
        let socket = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|e| e.to_string())?;
        let mut last_error = String::from("no attempt");
        for _ in 0..tries.max(1) {
            socket
                .send_to(&bytes, self.dns_addr)
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 65_535];
            match tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    let answer = Message::from_vec(&buf[..n]).map_err(|e| e.to_string())?;
                    if answer.metadata.id == query.metadata.id {
                        return Ok(answer);
                    }
                    last_error = "an answer to another query".into();
                }
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "timed out".into(),
            }
        }
        Err(last_error)
    }

    /// Stops the server now (SIGKILL); its URL then refuses connections.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("pdns.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PowerDnsServer {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("PowerDNS directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The gsqlite3 schema Debian ships (gzipped in some releases).
fn read_schema() -> String {
    for path in SCHEMA_PATHS {
        let path = Path::new(path);
        if !path.exists() {
            continue;
        }
        if path.extension().is_some_and(|e| e == "gz") {
            let out = Command::new("gzip")
                .arg("-dc")
                .arg(path)
                .output()
                .unwrap_or_else(|e| panic!("cannot run gzip on {}: {e}", path.display()));
            assert!(out.status.success(), "gzip -dc {} failed", path.display());
            return String::from_utf8(out.stdout).expect("the schema is UTF-8");
        }
        return std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    }
    panic!(
        "the PowerDNS sqlite3 schema is missing (looked in {SCHEMA_PATHS:?}): run scripts/test, \
         which installs pdns-backend-sqlite3"
    );
}

async fn create_database(path: &Path, schema: &str) -> Result<(), String> {
    use sqlx::Connection as _;
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::SqliteConnection::connect(&url)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema.to_owned()))
        .execute(&mut conn)
        .await
        .map_err(|e| format!("loading the PowerDNS schema: {e}"))?;
    conn.close().await.map_err(|e| e.to_string())
}
