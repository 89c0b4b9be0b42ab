//! The Plesk XML API (`POST /enterprise/control/agent.php`), only for what REST v2 lacks:
//! `<certificate><install>` (reference §2.4, api-php-lib `Operator/Certificate.php`) and
//! `<service-plan><get>` (api-php-lib `Operator/ServicePlan.php`; REST has no plan listing).
//!
//! Errors (§2.5): packet-level `<system><status>error</status><errcode/><errtext/></system>`
//! for auth (1001/11003), unsupported protocol versions (1005) and unparsable XML or unknown
//! operators (1014, api-php-lib `testUnknownOperator`/`testInvalidXmlRequest`); per-operation
//! `<result><status>error</status>…</result>` otherwise, e.g. 1013 "Object not found." or
//! 1019 "Invalid value" (codes from the official reduced list). All with HTTP 200.

use axum::http::StatusCode;
use axum::response::Response;
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::{Reader, XmlVersion};

use crate::backups::Storage;
use crate::pem::{has_pem_block, has_private_key};
use crate::reply::{self, Reply};
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Certificate, clock};
use crate::{SimKind, catalog};

const PACKET_VERSION: &str = "1.6.9.1";

/// A minimal element tree.
#[derive(Debug, Default)]
struct Element {
    name: String,
    version: Option<String>,
    children: Vec<Element>,
    text: String,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    fn text_of(&self, name: &str) -> Option<String> {
        self.child(name)
            .map(|c| c.text.trim().to_owned())
            .filter(|t| !t.is_empty())
    }
}

fn parse(xml: &str) -> Result<Element, String> {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut attach = |stack: &mut Vec<Element>, element: Element| -> Result<(), String> {
        match stack.last_mut() {
            Some(parent) => parent.children.push(element),
            None if root.is_none() => root = Some(element),
            None => return Err("more than one root element".to_owned()),
        }
        Ok(())
    };
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(start) => stack.push(open(&start)),
            Event::Empty(start) => attach(&mut stack, open(&start))?,
            Event::End(_) => {
                let element = stack.pop().ok_or("unbalanced end tag")?;
                attach(&mut stack, element)?;
            }
            Event::Text(text) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let name = reference.xml10_content().into_owned();
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => match name.as_str() {
                        "amp" => "&".to_owned(),
                        "lt" => "<".to_owned(),
                        "gt" => ">".to_owned(),
                        "quot" => "\"".to_owned(),
                        "apos" => "'".to_owned(),
                        other => return Err(format!("unknown entity &{other};")),
                    },
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unexpected end of document".to_owned());
    }
    root.ok_or_else(|| "empty document".to_owned())
}

fn open(start: &quick_xml::events::BytesStart<'_>) -> Element {
    let version = start.attributes().flatten().find_map(|attr| {
        (attr.key.as_ref() == "version")
            .then(|| {
                attr.normalized_value(XmlVersion::Implicit1_0)
                    .ok()
                    .map(|v| v.into_owned())
            })
            .flatten()
    });
    Element {
        name: start.name().as_ref().to_owned(),
        version,
        ..Element::default()
    }
}

fn packet(inner: &str) -> Response {
    reply::text(
        StatusCode::OK,
        "text/xml; charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<packet version=\"{PACKET_VERSION}\">{inner}</packet>\n"
        ),
    )
}

/// A packet-level error (auth, parse, version).
pub(super) fn system_error(code: u32, text: &str) -> Response {
    packet(&format!(
        "<system><status>error</status><errcode>{code}</errcode><errtext>{}</errtext></system>",
        escape(text)
    ))
}

fn operation_result(operator: &str, operation: &str, result: &str) -> Response {
    packet(&format!(
        "<{operator}><{operation}><result>{result}</result></{operation}></{operator}>"
    ))
}

fn operation_failure(operator: &str, operation: &str, code: u32, text: &str) -> Reply {
    Reply::fail(operation_result(
        operator,
        operation,
        &format!(
            "<status>error</status><errcode>{code}</errcode><errtext>{}</errtext>",
            escape(text)
        ),
    ))
}

/// A scripted per-operation error for whatever operation the packet holds.
pub(super) fn operation_error(req: &ApiRequest, code: u32, text: &str) -> Response {
    let body = String::from_utf8_lossy(&req.body);
    let (operator, operation) = parse(&body)
        .ok()
        .and_then(|root| {
            let operator = root.children.first()?;
            let operation = operator.children.first()?;
            Some((operator.name.clone(), operation.name.clone()))
        })
        .unwrap_or_else(|| ("certificate".to_owned(), "install".to_owned()));
    operation_failure(&operator, &operation, code, text).into_response()
}

pub(super) fn handle(sim: &Sim, req: &ApiRequest) -> Reply {
    let body = String::from_utf8_lossy(&req.body);
    let root = match parse(&body) {
        Ok(root) if root.name == "packet" => root,
        Ok(root) => {
            return Reply::fail(system_error(
                1014,
                &format!("Parser error: unexpected root <{}>", root.name),
            ));
        }
        Err(e) => return Reply::fail(system_error(1014, &format!("Parser error: {e}"))),
    };
    if let Some(version) = &root.version
        && !version.starts_with("1.")
    {
        return Reply::fail(system_error(1005, "Protocol version is not supported"));
    }
    let Some(operator) = root.children.first() else {
        return Reply::fail(system_error(1014, "Parser error: empty packet"));
    };
    let Some(operation) = operator.children.first() else {
        return Reply::fail(system_error(1014, "Parser error: no operation"));
    };
    match (operator.name.as_str(), operation.name.as_str()) {
        ("certificate", "install") => install_certificate(sim, operation),
        ("service-plan", "get") => service_plans(operation),
        ("backup-manager", "backup-webspace" | "backup-customer") => start_backup(sim, operation),
        ("backup-manager", "get-local-backup-list") => local_backup_list(sim, operation),
        ("backup-manager", "remove-file") => remove_file(sim, operation),
        (op, _) => Reply::fail(system_error(
            1014,
            &format!(
                "Parser error: Request is invalid. Operator {op}/{} is not supported by panelsim",
                operation.name
            ),
        )),
    }
}

/// `<certificate><install><name/><admin/>|<webspace>dom</webspace><content><csr/><pvt/>
/// <cert/><ca/></content></install></certificate>` → `<result><status>ok</status></result>`.
fn install_certificate(sim: &Sim, install: &Element) -> Reply {
    const OPERATOR: &str = "certificate";
    const OPERATION: &str = "install";
    let Some(name) = install.text_of("name") else {
        return operation_failure(
            OPERATOR,
            OPERATION,
            1019,
            "Invalid value: <name> is required",
        );
    };
    let content = install.child("content");
    let cert = content.and_then(|c| c.text_of("cert")).unwrap_or_default();
    let key = content.and_then(|c| c.text_of("pvt")).unwrap_or_default();
    let ca = content.and_then(|c| c.text_of("ca"));
    if !has_pem_block(&cert, "CERTIFICATE") || !has_private_key(&key) {
        return operation_failure(
            OPERATOR,
            OPERATION,
            1019,
            "Invalid value: <cert> and <pvt> must hold a PEM certificate and private key",
        );
    }
    let mut world = sim.world();
    let (domain, owner) = match install.text_of("webspace") {
        Some(webspace) => match world.sites.get(&webspace.to_ascii_lowercase()) {
            Some(site) => (site.name.clone(), site.owner.clone()),
            None => return operation_failure(OPERATOR, OPERATION, 1013, "Object not found."),
        },
        // `<admin/>`: the server-wide pool; recorded under the certificate's name.
        None => (format!("admin:{name}"), "admin".to_owned()),
    };
    world.certificates.insert(
        domain.clone(),
        Certificate {
            domain,
            owner,
            source: "xml-api".to_owned(),
            name,
            cert_pem: cert,
            has_key: true,
            cabundle: ca,
            installed: clock::now_unix(),
        },
    );
    drop(world);
    Reply::ok(operation_result(OPERATOR, OPERATION, "<status>ok</status>"))
}

/// `<service-plan><get><filter/></get></service-plan>` (api-php-lib `Operator/ServicePlan.php`):
/// one `<result>` per plan; `<filter><name>` or `<filter><id>` select one (1013 if unknown).
/// Plan ids are their position in the simulator's list (1-based).
fn service_plans(get: &Element) -> Reply {
    const OPERATOR: &str = "service-plan";
    const OPERATION: &str = "get";
    let filter = get.child("filter");
    let by_name = filter.and_then(|f| f.text_of("name"));
    let by_id = filter
        .and_then(|f| f.text_of("id"))
        .and_then(|id| id.parse::<usize>().ok());
    let results: Vec<String> = catalog::plans(SimKind::Plesk)
        .iter()
        .enumerate()
        .map(|(index, plan)| (index + 1, plan))
        .filter(|(id, plan)| {
            by_name.as_deref().is_none_or(|name| name == plan.name)
                && by_id.is_none_or(|want| want == *id)
        })
        .map(|(id, plan)| {
            format!(
                "<result><status>ok</status><filter-id>{id}</filter-id><id>{id}</id>\
                 <guid>00000000-0000-4000-8000-{id:012}</guid><name>{}</name></result>",
                escape(plan.name)
            )
        })
        .collect();
    if results.is_empty() {
        return operation_failure(OPERATOR, OPERATION, 1013, "Object not found.");
    }
    Reply::ok(packet(&format!(
        "<{OPERATOR}><{OPERATION}>{}</{OPERATION}></{OPERATOR}>",
        results.concat()
    )))
}

/// The account a backup-manager operation names: a subscription by `<webspace-name>` (its
/// owner) or a customer by `<customer-login>` (the official pages also allow ids, resellers
/// and the server; only these two are simulated). A customer's archives stay in the server
/// repository after the customer is removed (UNCONFIRMED), so listing and removing by login
/// does not need the customer; creating does.
fn backup_owner(sim: &Sim, operation: &Element, must_exist: bool) -> Result<String, String> {
    if let Some(login) = operation.text_of("customer-login") {
        if must_exist && !sim.world().accounts.contains_key(&login) {
            return Err("Object not found.".to_owned());
        }
        return Ok(login);
    }
    let name = operation
        .text_of("webspace-name")
        .ok_or_else(|| "webspace-name or customer-login is required".to_owned())?;
    sim.world()
        .sites
        .get(&name.to_ascii_lowercase())
        .map(|site| site.owner.clone())
        .ok_or_else(|| "Object not found.".to_owned())
}

/// `<backup-manager><backup-webspace><webspace-name/><local/><description/></backup-webspace>`
/// (official "Creating a subscription-level backup task") and `<backup-customer>
/// <customer-login/><local/><description/></backup-customer>` (official "Creating
/// Customer-level Backup Task"): queues the backup and answers with its task id
/// (`<task-id>`, UNCONFIRMED); the archive is listed once written, named
/// `backup_<YYMMDDhhmm>_<n>.tar` (UNCONFIRMED), in the server repository.
fn start_backup(sim: &Sim, operation: &Element) -> Reply {
    let name = operation.name.as_str();
    let owner = match backup_owner(sim, operation, true) {
        Ok(owner) => owner,
        Err(text) => return operation_failure("backup-manager", name, 1013, &text),
    };
    if operation.child("local").is_none() {
        return operation_failure(
            "backup-manager",
            name,
            1019,
            "Only local storage is simulated: pass <local/>",
        );
    }
    let mut world = sim.world();
    let task = world.next_id();
    world.start_backup(&owner, Storage::Server, |created, _| {
        format!("backup_{}_{task}.tar", clock::plesk_backup_stamp(created))
    });
    Reply::ok(operation_result(
        "backup-manager",
        name,
        &format!("<status>ok</status><task-id>{task}</task-id>"),
    ))
}

/// `<get-local-backup-list><webspace-name/>|<customer-login/></get-local-backup-list>`
/// (official "Retrieving a List of Local Backups"). The response layout is UNCONFIRMED;
/// simulated as one `<file><name/><size/><creation-date/></file>` per finished archive (size
/// in bytes, date in Unix seconds).
fn local_backup_list(sim: &Sim, operation: &Element) -> Reply {
    const OPERATION: &str = "get-local-backup-list";
    let owner = match backup_owner(sim, operation, false) {
        Ok(owner) => owner,
        Err(text) => return operation_failure("backup-manager", OPERATION, 1013, &text),
    };
    let files: String = sim
        .world()
        .backups_of(&owner, Storage::Server)
        .into_iter()
        .filter(|b| b.ready())
        .map(|b| {
            format!(
                "<file><name>{}</name><size>{}</size><creation-date>{}</creation-date></file>",
                escape(&b.name),
                b.size_bytes,
                b.created
            )
        })
        .collect();
    Reply::ok(operation_result(
        "backup-manager",
        OPERATION,
        &format!("<status>ok</status>{files}"),
    ))
}

/// `<remove-file><webspace-name/>|<customer-login/><filename/></remove-file>` (official
/// "Removing Backup"; the customer selector is UNCONFIRMED for this operation); an unknown
/// file is 1013 "Object not found." (UNCONFIRMED).
fn remove_file(sim: &Sim, operation: &Element) -> Reply {
    const OPERATION: &str = "remove-file";
    let owner = match backup_owner(sim, operation, false) {
        Ok(owner) => owner,
        Err(text) => return operation_failure("backup-manager", OPERATION, 1013, &text),
    };
    let filename = operation.text_of("filename").unwrap_or_default();
    if sim
        .world()
        .delete_backup(&owner, Storage::Server, &filename)
    {
        Reply::ok(operation_result(
            "backup-manager",
            OPERATION,
            "<status>ok</status>",
        ))
    } else {
        operation_failure("backup-manager", OPERATION, 1013, "Object not found.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_parse_into_a_tree_with_entities_resolved() {
        let root = parse(
            "<?xml version='1.0'?><packet version='1.6.9.1'><certificate><install><name>a &amp; b</name><admin/></install></certificate></packet>",
        )
        .unwrap();
        assert_eq!(root.name, "packet");
        assert_eq!(root.version.as_deref(), Some("1.6.9.1"));
        let install = &root.children[0].children[0];
        assert_eq!(install.text_of("name").as_deref(), Some("a & b"));
        assert!(install.child("admin").is_some());
        assert!(parse("<packet><wrongly formatted xml</packet>").is_err());
    }
}
