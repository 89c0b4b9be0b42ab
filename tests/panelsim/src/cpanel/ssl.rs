//! Certificates: WHM `installssl`, UAPI `SSL::install_ssl` and AutoSSL (reference §1.5).

use serde_json::{Value, json};

use super::{whm_fail, whm_ok};
use crate::catalog::SERVER_IP;
use crate::pem::{has_pem_block, has_private_key};
use crate::reply::Reply;
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Certificate, World, clock};

/// Install a certificate for `domain`, owned by `owner_filter` if given (UAPI) or by whoever
/// owns the site (WHM). Returns the cpanelgo `InstallSSLKeyAPIResponse`-shaped data (§1.5).
/// Error texts UNCONFIRMED.
pub(super) fn install(
    world: &mut World,
    owner_filter: Option<&str>,
    domain: &str,
    cert: &str,
    key: Option<&str>,
    cabundle: Option<&str>,
    source: &str,
) -> Result<Value, String> {
    let domain = domain.trim().to_ascii_lowercase();
    let Some(site) = world.site_for_host(&domain) else {
        return Err(format!(
            "The domain “{domain}” does not exist on this server."
        ));
    };
    if owner_filter.is_some_and(|owner| owner != site.owner) {
        return Err(format!("You do not control the domain “{domain}”."));
    }
    if !has_pem_block(cert, "CERTIFICATE") {
        return Err("The certificate is not valid: expected a PEM “CERTIFICATE” block.".to_owned());
    }
    if !key.is_some_and(has_private_key) {
        return Err(
            "No private key that matches this certificate was supplied (“key”).".to_owned(),
        );
    }
    let site_name = site.name.clone();
    let owner = site.owner.clone();
    let id = world.next_id();
    let cert_id = format!("{}_{id:x}", site_name.replace(['.', '-'], "_"));
    world.certificates.insert(
        site_name.clone(),
        Certificate {
            domain: site_name.clone(),
            owner: owner.clone(),
            source: source.to_owned(),
            name: cert_id.clone(),
            cert_pem: cert.to_owned(),
            has_key: true,
            cabundle: cabundle.filter(|c| !c.trim().is_empty()).map(str::to_owned),
            installed: clock::now_unix(),
        },
    );
    let message = format!(
        "The SSL certificate is now installed onto the domain “{site_name}” using the IP address “{SERVER_IP}”."
    );
    Ok(json!({
        "action": "none",
        "cert_id": cert_id,
        "domain": site_name,
        "html": message,
        "ip": SERVER_IP,
        "key_id": format!("{cert_id}_key"),
        "message": message,
        "status": 1,
        "statusmsg": message,
        "user": owner,
        "warning_domains": [],
        "working_domains": [site_name.clone(), format!("www.{site_name}")],
        "extra_certificate_domains": [],
    }))
}

/// `installssl?domain=D&crt=PEM&key=PEM&cab=PEM` (§1.5; `key`/`cab` from third-party use).
pub(super) fn installssl(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "installssl";
    let domain = req.arg("domain").unwrap_or("");
    let cert = req.param("crt").unwrap_or("");
    let installed = install(
        &mut sim.world(),
        None,
        domain,
        cert,
        req.param("key"),
        req.param("cab"),
        "installssl",
    );
    match installed {
        Ok(data) => whm_ok(sim, CMD, "OK", Some(data), None),
        Err(reason) => whm_fail(sim, CMD, reason, None),
    }
}

/// `start_autossl_check_for_one_user?username=U` (§1.5): asynchronous, answers a pid. The
/// simulator records the check and installs a placeholder certificate at once.
pub(super) fn start_autossl_check_for_one_user(sim: &Sim, req: &ApiRequest) -> Reply {
    const CMD: &str = "start_autossl_check_for_one_user";
    let user = req.arg("username").unwrap_or("").to_owned();
    let pid = {
        let mut world = sim.world();
        if !world.accounts.contains_key(&user) {
            None
        } else {
            autossl(&mut world, &user);
            Some(30_000 + world.autossl_checks.len())
        }
    };
    match pid {
        Some(pid) => whm_ok(sim, CMD, "OK", Some(json!({ "pid": pid })), None),
        None => whm_fail(sim, CMD, format!("The user “{user}” does not exist."), None),
    }
}

/// Record an AutoSSL run for `user` and give its main site a placeholder certificate.
pub(super) fn autossl(world: &mut World, user: &str) {
    world.autossl_checks.push(user.to_owned());
    if let Some(site) = world.primary_site(user).map(|s| s.name.clone())
        && !world.certificates.contains_key(&site)
    {
        world.certificates.insert(
            site.clone(),
            Certificate {
                domain: site,
                owner: user.to_owned(),
                source: "autossl".to_owned(),
                name: "autossl".to_owned(),
                cert_pem: String::new(),
                has_key: true,
                cabundle: None,
                installed: clock::now_unix(),
            },
        );
    }
}
