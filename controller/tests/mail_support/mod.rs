//! A real SMTP server for the mail tests: `python3 -m aiosmtpd` (Debian's python3-aiosmtpd)
//! with the Maildir handler, so every accepted message is a file the test parses.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on yet, outside the ephemeral range: where a server will be started.
pub use mpanel_e2e::ports::free_port;

/// The first Python with aiosmtpd importable, or a panic that says how to get it.
fn python_with_aiosmtpd() -> &'static str {
    for python in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python;
        }
    }
    panic!(
        "the mail tests need a real SMTP server: python3-aiosmtpd is missing \
         (`apt-get install python3-aiosmtpd`; scripts/test installs it)"
    );
}

/// An aiosmtpd process writing each accepted message into a Maildir. Killed on drop.
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    /// Starts on `port` and waits until it accepts connections.
    pub fn start(port: u16) -> SmtpServer {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let child = Command::new(python_with_aiosmtpd())
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 -m aiosmtpd");
        let mut server = SmtpServer {
            child,
            port,
            maildir,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("aiosmtpd exited at start ({status}); is port {port} taken?");
            }
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Every message received so far, raw, oldest file name first.
    pub fn received(&self) -> Vec<Vec<u8>> {
        let mut files: Vec<PathBuf> = ["new", "cur"]
            .iter()
            .filter_map(|sub| std::fs::read_dir(self.maildir.join(sub)).ok())
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p: &PathBuf| std::fs::read(Path::new(p)).unwrap())
            .collect()
    }

    /// Waits until at least `n` messages arrived, then returns all of them.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the SMTP server received {} of {n} messages",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A received message, decoded: headers we check, the two alternative parts and the
/// attachments.
#[derive(Debug)]
pub struct Received {
    pub subject: String,
    pub from: String,
    pub to: String,
    pub reply_to: Option<String>,
    pub message_id: String,
    pub content_type: String,
    pub text: String,
    pub html: String,
    pub attachments: Vec<ReceivedAttachment>,
}

#[derive(Debug)]
pub struct ReceivedAttachment {
    pub filename: Option<String>,
    pub content_type: String,
    pub body: Vec<u8>,
}

pub fn parse(raw: &[u8]) -> Received {
    use mailparse::MailHeaderMap as _;
    let mail = mailparse::parse_mail(raw).expect("a parseable message");
    let header = |name: &str| mail.headers.get_first_value(name).unwrap_or_default();
    // The leaves of the MIME tree, depth first: the alternative parts sit one level down
    // when the message also carries attachments (multipart/mixed).
    fn leaves<'a>(
        part: &'a mailparse::ParsedMail<'a>,
        out: &mut Vec<&'a mailparse::ParsedMail<'a>>,
    ) {
        if part.subparts.is_empty() {
            out.push(part);
        }
        for sub in &part.subparts {
            leaves(sub, out);
        }
    }
    let mut parts = Vec::new();
    leaves(&mail, &mut parts);
    let is_attachment = |p: &mailparse::ParsedMail| {
        p.get_content_disposition().disposition == mailparse::DispositionType::Attachment
    };
    let part = |mime: &str| {
        parts
            .iter()
            .find(|p| p.ctype.mimetype == mime && !is_attachment(p))
            .unwrap_or_else(|| panic!("no {mime} part"))
            .get_body()
            .unwrap()
    };
    let attachments = parts
        .iter()
        .filter(|p| is_attachment(p))
        .map(|p| ReceivedAttachment {
            filename: p.get_content_disposition().params.get("filename").cloned(),
            content_type: p.ctype.mimetype.clone(),
            body: p.get_body_raw().unwrap(),
        })
        .collect();
    Received {
        subject: header("Subject"),
        from: header("From"),
        to: header("To"),
        reply_to: mail.headers.get_first_value("Reply-To"),
        message_id: header("Message-ID"),
        content_type: mail.ctype.mimetype.clone(),
        text: part("text/plain"),
        html: part("text/html"),
        attachments,
    }
}
