//! Account backups, shared by the three panels: each panel names and lists its archives in
//! its own way (see the panel modules), but all of them write an archive in the background.
//! A backup is listed as running until [`BACKUP_WRITE_TIME`] has passed, then as finished
//! with its size; deleting a name the account does not have answers "not found".

use std::time::{Duration, Instant};

use crate::state::{World, clock};

/// How long the simulated panels take to write an archive.
pub(crate) const BACKUP_WRITE_TIME: Duration = Duration::from_millis(300);

#[derive(Debug, Clone)]
pub(crate) struct Backup {
    pub owner: String,
    pub name: String,
    pub size_bytes: u64,
    /// Unix seconds when the backup started.
    pub created: i64,
    pub ready_at: Instant,
}

impl Backup {
    pub(crate) fn ready(&self) -> bool {
        Instant::now() >= self.ready_at
    }
}

impl World {
    /// Starts a backup of `owner` named by `name_of(created unix seconds, sequence number)`.
    /// Its size follows what the account holds (a few KiB of configuration plus its files), so
    /// sizes differ between accounts and over time.
    pub(crate) fn start_backup(
        &mut self,
        owner: &str,
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
        };
        self.backups.push(backup.clone());
        backup
    }

    pub(crate) fn backups_of(&self, owner: &str) -> Vec<Backup> {
        self.backups
            .iter()
            .filter(|b| b.owner == owner)
            .cloned()
            .collect()
    }

    /// Removes `owner`'s archive `name`; false when it has none by that name.
    pub(crate) fn delete_backup(&mut self, owner: &str, name: &str) -> bool {
        let before = self.backups.len();
        self.backups
            .retain(|b| !(b.owner == owner && b.name == name));
        self.backups.len() != before
    }
}
