//! Account backups and restores, shared by the three panels: each panel names, lists and
//! restores its archives in its own way (see the panel modules), but all of them write an
//! archive in the background and restore one in the background.
//!
//! An archive is listed as running until [`BACKUP_WRITE_TIME`] has passed, then as finished
//! with its size; deleting a name the account does not have answers "not found". Where the
//! archive lives decides whether it outlives the account: one in the account's home
//! ([`Storage::Home`], cPanel's `fullbackup_to_homedir`, DirectAdmin's user backups) goes with
//! the account, one in the server's backup storage ([`Storage::Server`]: cPanel's pkgacct
//! `/home/cpmove-<user>.tar.gz`, DirectAdmin's admin backups, Plesk's repository) stays.
//!
//! An archive holds what the account held when the backup started (its [`Snapshot`]): the
//! account, its sites and their zones, mailboxes, databases with their users and grants,
//! certificates and web-root files. A restore puts exactly that back, [`RESTORE_TIME`] after
//! it started; panels whose archives have fixed names (cPanel's `cpmove-<user>.tar.gz`,
//! DirectAdmin's `user.admin.<user>.tar.gz`) replace the previous archive once the new one is
//! written.

use std::time::{Duration, Instant};

use crate::state::{
    Account, Certificate, Database, DbUser, Grant, Mailbox, Site, WebFile, World, Zone, clock,
};

/// How long the simulated panels take to write an archive.
pub(crate) const BACKUP_WRITE_TIME: Duration = Duration::from_millis(300);
/// How long the simulated panels take to restore an account from an archive.
pub(crate) const RESTORE_TIME: Duration = Duration::from_millis(300);

/// Where an archive is kept, which decides whether removing the account takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storage {
    /// In the account's home directory: removed with the account.
    Home,
    /// In the server's backup storage: outlives the account.
    Server,
}

/// What an account held when its backup started.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub account: Option<Account>,
    pub sites: Vec<Site>,
    pub zones: Vec<(String, Zone)>,
    pub mailboxes: Vec<Mailbox>,
    pub databases: Vec<Database>,
    pub db_users: Vec<DbUser>,
    pub grants: Vec<Grant>,
    pub certificates: Vec<(String, Certificate)>,
    pub files: Vec<(String, WebFile)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Backup {
    pub owner: String,
    pub name: String,
    pub size_bytes: u64,
    /// Unix seconds when the backup started.
    pub created: i64,
    pub ready_at: Instant,
    pub storage: Storage,
    pub snapshot: Snapshot,
}

impl Backup {
    pub(crate) fn ready(&self) -> bool {
        Instant::now() >= self.ready_at
    }
}

/// One restore of an account from an archive.
#[derive(Debug, Clone)]
pub(crate) struct Restore {
    /// The panel's id for the restore (a transfer session, a task).
    pub id: String,
    pub owner: String,
    pub archive: String,
    /// Unix seconds when it started.
    pub started: i64,
    pub done_at: Instant,
    /// `None` while running; `Some(Err(reason))` when the panel gave up.
    pub outcome: Option<Result<(), String>>,
    snapshot: Snapshot,
    /// Replace an existing account instead of failing on it.
    overwrite: bool,
}

impl Restore {
    pub(crate) fn running(&self) -> bool {
        self.outcome.is_none()
    }
}

/// Why a restore could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RestoreRefusal {
    /// No finished archive by that name.
    NoArchive,
    /// The account exists and the panel does not restore over it.
    AccountExists,
}

impl World {
    fn snapshot_of(&self, owner: &str) -> Snapshot {
        let sites: Vec<Site> = self
            .sites
            .values()
            .filter(|s| s.owner == owner)
            .cloned()
            .collect();
        let zones = sites
            .iter()
            .filter_map(|s| self.zones.get(&s.name).map(|z| (s.name.clone(), z.clone())))
            .collect();
        let site_ids: Vec<u64> = sites.iter().map(|s| s.id).collect();
        let databases: Vec<Database> = self
            .databases
            .values()
            .filter(|d| d.owner == owner || d.site_id.is_some_and(|id| site_ids.contains(&id)))
            .cloned()
            .collect();
        let db_users: Vec<DbUser> = self
            .db_users
            .values()
            .filter(|u| u.owner == owner)
            .cloned()
            .collect();
        let grants = self
            .grants
            .iter()
            .filter(|g| databases.iter().any(|d| d.name == g.database))
            .cloned()
            .collect();
        Snapshot {
            account: self.accounts.get(owner).cloned(),
            sites,
            zones,
            mailboxes: self
                .mailboxes
                .values()
                .filter(|m| m.owner == owner)
                .cloned()
                .collect(),
            databases,
            db_users,
            grants,
            certificates: self
                .certificates
                .iter()
                .filter(|(_, c)| c.owner == owner)
                .map(|(k, c)| (k.clone(), c.clone()))
                .collect(),
            files: self
                .files
                .iter()
                .filter(|(_, f)| f.owner == owner)
                .map(|(k, f)| (k.clone(), f.clone()))
                .collect(),
        }
    }

    /// Starts a backup of `owner` into `storage`, named by `name_of(created unix seconds,
    /// sequence number)`. Its size follows what the account holds (a few KiB of configuration
    /// plus its files), so sizes differ between accounts and over time.
    pub(crate) fn start_backup(
        &mut self,
        owner: &str,
        storage: Storage,
        name_of: impl Fn(i64, usize) -> String,
    ) -> Backup {
        let created = clock::now_unix();
        let sequence = self.backups.iter().filter(|b| b.owner == owner).count() + 1;
        let files: u64 = self
            .files
            .values()
            .filter(|f| f.owner == owner)
            .map(|f| f.content.len() as u64)
            .sum();
        let backup = Backup {
            owner: owner.to_owned(),
            name: name_of(created, sequence),
            size_bytes: 20_480 + 512 * sequence as u64 + files,
            created,
            ready_at: Instant::now() + BACKUP_WRITE_TIME,
            storage,
            snapshot: self.snapshot_of(owner),
        };
        self.backups.push(backup.clone());
        backup
    }

    /// `owner`'s archives kept in `storage`, oldest first.
    pub(crate) fn backups_of(&self, owner: &str, storage: Storage) -> Vec<Backup> {
        self.backups
            .iter()
            .filter(|b| b.owner == owner && b.storage == storage)
            .cloned()
            .collect()
    }

    /// Removes `owner`'s archives named `name` in `storage`; false when it has none by that
    /// name.
    pub(crate) fn delete_backup(&mut self, owner: &str, storage: Storage, name: &str) -> bool {
        let before = self.backups.len();
        self.backups
            .retain(|b| !(b.owner == owner && b.storage == storage && b.name == name));
        self.backups.len() != before
    }

    /// Starts restoring `owner` from its finished archive `archive` in `storage`; it finishes
    /// `takes` later. `overwrite`: replace an existing account (DirectAdmin) instead of
    /// refusing (cPanel, Plesk).
    pub(crate) fn start_restore(
        &mut self,
        owner: &str,
        storage: Storage,
        archive: &str,
        overwrite: bool,
        id: String,
        takes: Duration,
    ) -> Result<Restore, RestoreRefusal> {
        let Some(backup) = self
            .backups_of(owner, storage)
            .into_iter()
            .rev()
            .find(|b| b.name == archive && b.ready())
        else {
            return Err(RestoreRefusal::NoArchive);
        };
        if !overwrite && self.accounts.contains_key(owner) {
            return Err(RestoreRefusal::AccountExists);
        }
        let restore = Restore {
            id,
            owner: owner.to_owned(),
            archive: archive.to_owned(),
            started: clock::now_unix(),
            done_at: Instant::now() + takes,
            outcome: None,
            snapshot: backup.snapshot,
            overwrite,
        };
        self.restores.push(restore.clone());
        Ok(restore)
    }

    pub(crate) fn restore_by_id(&self, id: &str) -> Option<Restore> {
        self.restores.iter().find(|r| r.id == id).cloned()
    }

    /// Brings the background work up to date: finishes the restores that are due and drops
    /// an archive once a newer one of the same name (a fixed-name panel) is written.
    pub(crate) fn settle(&mut self) {
        let now = Instant::now();
        let mut superseded = Vec::new();
        for (i, b) in self.backups.iter().enumerate() {
            let newer = self.backups[i + 1..].iter().any(|n| {
                n.owner == b.owner && n.storage == b.storage && n.name == b.name && n.ready()
            });
            if newer {
                superseded.push(i);
            }
        }
        for i in superseded.into_iter().rev() {
            self.backups.remove(i);
        }
        let due: Vec<usize> = self
            .restores
            .iter()
            .enumerate()
            .filter(|(_, r)| r.running() && r.done_at <= now)
            .map(|(i, _)| i)
            .collect();
        for i in due {
            let restore = self.restores[i].clone();
            let outcome = self.apply_restore(&restore);
            self.restores[i].outcome = Some(outcome);
        }
    }

    /// Puts an archive's contents back. A domain another account took meanwhile fails the
    /// restore and changes nothing.
    fn apply_restore(&mut self, restore: &Restore) -> Result<(), String> {
        let snapshot = &restore.snapshot;
        let Some(account) = snapshot.account.clone() else {
            return Err(format!("the archive holds no account {}", restore.owner));
        };
        if self.accounts.contains_key(&restore.owner) {
            if !restore.overwrite {
                return Err(format!("the account {} already exists", restore.owner));
            }
            // Replacing: what the account holds now gives way to the archive.
            let _ = self.remove_account(&restore.owner, false);
        }
        if let Some(taken) = snapshot.sites.iter().find(|s| {
            self.sites
                .get(&s.name)
                .is_some_and(|t| t.owner != restore.owner)
        }) {
            return Err(format!(
                "the domain {} belongs to another account",
                taken.name
            ));
        }
        self.accounts.insert(account.username.clone(), account);
        for site in &snapshot.sites {
            self.sites.insert(site.name.clone(), site.clone());
        }
        for (domain, zone) in &snapshot.zones {
            self.zones.insert(domain.clone(), zone.clone());
        }
        for mailbox in &snapshot.mailboxes {
            self.mailboxes
                .insert(mailbox.address.clone(), mailbox.clone());
        }
        for database in &snapshot.databases {
            self.databases
                .insert(database.name.clone(), database.clone());
        }
        for user in &snapshot.db_users {
            self.db_users.insert(user.name.clone(), user.clone());
        }
        for grant in &snapshot.grants {
            self.set_grant(&grant.user, &grant.database, &grant.privileges);
        }
        for (key, certificate) in &snapshot.certificates {
            self.certificates.insert(key.clone(), certificate.clone());
        }
        for (path, file) in &snapshot.files {
            self.files.insert(path.clone(), file.clone());
        }
        Ok(())
    }
}
