//! `/api/v2/databases`, `/api/v2/dbusers`, `/api/v2/dbservers` (reference §2.3).
//! Creates answer **200** (not 201). Names are used as given: Plesk adds no prefix.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::domains::resolve_domain;
use super::{body, error, field, ok, parse_id, success};
use crate::mariadb;
use crate::reply::Reply;
use crate::request::ApiRequest;
use crate::sim::Sim;
use crate::state::{Database, DbUser, World};

/// UNCONFIRMED texts.
pub(super) const DUPLICATE_DATABASE: &str = "Database with this name already exists";
pub(super) const DUPLICATE_USER: &str = "Database user with this name already exists";
const NOT_FOUND: &str = "Database is not found";
const USER_NOT_FOUND: &str = "Database user is not found";

fn database_json(db: &Database) -> Value {
    json!({
        "id": db.id,
        "name": db.name,
        "type": "mysql",
        "parent_domain": db.site_id.unwrap_or(0),
        "server_id": 1,
        "default_user_id": db.default_user_id.unwrap_or(0),
    })
}

fn user_json(user: &DbUser) -> Value {
    json!({"id": user.id, "login": user.name, "database_id": user.database_id.unwrap_or(0)})
}

fn find_database(world: &World, id: u64) -> Option<String> {
    world
        .databases
        .values()
        .find(|d| d.id == id)
        .map(|d| d.name.clone())
}

fn find_user(world: &World, id: u64) -> Option<String> {
    world
        .db_users
        .values()
        .find(|u| u.id == id)
        .map(|u| u.name.clone())
}

/// `GET /databases[?domain=]`
pub(super) fn list(sim: &Sim, req: &ApiRequest) -> Reply {
    let world = sim.world();
    let site_id = match req.arg("domain") {
        Some(domain) => match world.sites.get(&domain.to_ascii_lowercase()) {
            Some(site) => Some(site.id),
            None => return error(StatusCode::NOT_FOUND, "Domain is not found"),
        },
        None => None,
    };
    let databases: Vec<Value> = world
        .databases
        .values()
        .filter(|d| d.site_id.is_some() && site_id.is_none_or(|id| d.site_id == Some(id)))
        .map(database_json)
        .collect();
    ok(StatusCode::OK, &json!(databases))
}

/// `POST /databases {"name","type":"mysql","parent_domain":{"name"},"server_id":1}` → 200.
pub(super) async fn create(sim: &Sim, req: &ApiRequest) -> Reply {
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let Some(name) = field(&map, "name") else {
        return error(StatusCode::BAD_REQUEST, "Required fields are missing: name");
    };
    if !mariadb::valid_database_name(&name) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("The database name '{name}' is invalid: use letters, digits and underscores"),
        );
    }
    let db_type = field(&map, "type").unwrap_or_else(|| "mysql".to_owned());
    if db_type != "mysql" {
        return error(
            StatusCode::BAD_REQUEST,
            format!("Database type '{db_type}' is not available"),
        );
    }
    if map
        .get("server_id")
        .and_then(Value::as_u64)
        .is_some_and(|id| id != 1)
    {
        return error(StatusCode::NOT_FOUND, "Server is not found");
    }
    let _db = sim.db_ops.lock().await;
    let site = {
        let world = sim.world();
        let site = map
            .get("parent_domain")
            .and_then(|r| resolve_domain(&world, r))
            .and_then(|name| world.sites.get(&name))
            .map(|s| (s.id, s.owner.clone()));
        if world.databases.contains_key(&name) {
            return error(StatusCode::BAD_REQUEST, DUPLICATE_DATABASE);
        }
        site
    };
    let Some((site_id, owner)) = site else {
        return error(StatusCode::NOT_FOUND, "Domain is not found");
    };
    if let Err(e) = sim.db_create_database(&name).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let mut world = sim.world();
    let id = world.next_id();
    let database = Database {
        id,
        name: name.clone(),
        owner,
        site_id: Some(site_id),
        default_user_id: None,
    };
    let body = database_json(&database);
    world.databases.insert(name, database);
    drop(world);
    ok(StatusCode::OK, &body)
}

/// `DELETE /databases/{id}` → `StatusResponse`; its users go with it.
pub(super) async fn delete(sim: &Sim, raw_id: &str) -> Reply {
    let _db = sim.db_ops.lock().await;
    let dropped = {
        let mut world = sim.world();
        let Some(name) = parse_id(raw_id).and_then(|id| find_database(&world, id)) else {
            return error(StatusCode::NOT_FOUND, NOT_FOUND);
        };
        world.remove_database(&name)
    };
    sim.db_drop(&dropped).await;
    success()
}

/// `GET /dbusers[?dbId=]`
pub(super) fn list_users(sim: &Sim, req: &ApiRequest) -> Reply {
    let db_id = req.arg("dbId").and_then(parse_id);
    let world = sim.world();
    let users: Vec<Value> = world
        .db_users
        .values()
        .filter(|u| db_id.is_none_or(|id| u.database_id == Some(id)))
        .map(user_json)
        .collect();
    ok(StatusCode::OK, &json!(users))
}

/// `POST /dbusers {"login","password","database_id"}` → 200 `DatabaseUser`, with a real user
/// granted ALL PRIVILEGES on that database. Users for all databases of a subscription
/// (`parent_domain`/`server_id` without `database_id`) are not simulated.
pub(super) async fn create_user(sim: &Sim, req: &ApiRequest) -> Reply {
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let (Some(login), Some(password)) = (field(&map, "login"), field(&map, "password")) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Required fields are missing: login, password",
        );
    };
    if !mariadb::valid_user_name(&login) || login.len() > 32 {
        return error(
            StatusCode::BAD_REQUEST,
            format!("The login '{login}' is invalid"),
        );
    }
    let Some(database_id) = map.get("database_id").and_then(Value::as_u64) else {
        return error(StatusCode::BAD_REQUEST, "database_id is required");
    };
    let _db = sim.db_ops.lock().await;
    let database = {
        let world = sim.world();
        if world.db_users.contains_key(&login) {
            return error(StatusCode::BAD_REQUEST, DUPLICATE_USER);
        }
        find_database(&world, database_id)
            .and_then(|name| world.databases.get(&name).map(|d| (name, d.owner.clone())))
    };
    let Some((database, owner)) = database else {
        return error(StatusCode::NOT_FOUND, "Server/database/domain is not found");
    };
    let all = vec!["ALL PRIVILEGES".to_owned()];
    if let Err(e) = sim.db_create_user(&login, &password).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    if let Err(e) = sim.db_grant(&login, &database, &all).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    let mut world = sim.world();
    let id = world.next_id();
    let user = DbUser {
        id,
        name: login.clone(),
        owner,
        password,
        database_id: Some(database_id),
    };
    let body = user_json(&user);
    world.db_users.insert(login.clone(), user);
    world.set_grant(&login, &database, "ALL PRIVILEGES");
    if let Some(db) = world.databases.get_mut(&database)
        && db.default_user_id.is_none()
    {
        db.default_user_id = Some(id);
    }
    drop(world);
    ok(StatusCode::OK, &body)
}

/// `PUT /dbusers/{id} {"password"}` → `StatusResponse`. Renaming is not simulated.
pub(super) async fn update_user(sim: &Sim, req: &ApiRequest, raw_id: &str) -> Reply {
    let map = match body(req) {
        Ok(map) => map,
        Err(reply) => return reply,
    };
    let _db = sim.db_ops.lock().await;
    let Some(name) = parse_id(raw_id).and_then(|id| find_user(&sim.world(), id)) else {
        return error(StatusCode::NOT_FOUND, "Server/database/domain is not found");
    };
    if field(&map, "login").is_some_and(|login| login != name) {
        return error(
            StatusCode::BAD_REQUEST,
            "Renaming database users is not supported by the simulator",
        );
    }
    let Some(password) = field(&map, "password") else {
        return success();
    };
    if let Err(e) = sim.db_create_user(&name, &password).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
    }
    if let Some(user) = sim.world().db_users.get_mut(&name) {
        user.password = password;
    }
    success()
}

pub(super) async fn delete_user(sim: &Sim, raw_id: &str) -> Reply {
    let _db = sim.db_ops.lock().await;
    let dropped = {
        let mut world = sim.world();
        let Some(name) = parse_id(raw_id).and_then(|id| find_user(&world, id)) else {
            return error(StatusCode::NOT_FOUND, USER_NOT_FOUND);
        };
        world.remove_db_user(&name)
    };
    sim.db_drop(&dropped).await;
    success()
}

/// `GET /dbservers` (`DatabaseServer`): one local MariaDB.
pub(super) fn servers(sim: &Sim) -> Reply {
    let count = sim.world().databases.len();
    ok(
        StatusCode::OK,
        &json!([{"id": 1, "host": "localhost", "port": 3306, "type": "mysql", "status": "online",
                 "db_count": count, "is_default": true, "is_local": true}]),
    )
}
