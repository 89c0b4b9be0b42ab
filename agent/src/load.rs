//! The host's load for heartbeats: load averages and memory from procfs, disk and inodes of the
//! accounts' partition from `statvfs`, CPU count from the scheduler. Parsing is separate from
//! reading so it is tested on fixed text.

use std::path::Path;

pub use mpanel_common::load::LoadReport;

pub fn parse_loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut parts = text.split_whitespace().map(str::parse::<f64>);
    Some((
        parts.next()?.ok()?,
        parts.next()?.ok()?,
        parts.next()?.ok()?,
    ))
}

/// (MemTotal, MemAvailable) in bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            let kb: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kb * 1024)
        })
    };
    Some((field("MemTotal")?, field("MemAvailable")?))
}

/// Reads the host's fields (the session adds the panel's and its own); a source that cannot be
/// read leaves its fields at zero rather than failing the heartbeat (a beat without disk
/// numbers is better than no beat).
pub fn read(accounts_path: &Path) -> LoadReport {
    let mut load = LoadReport {
        cpu_count: std::thread::available_parallelism()
            .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX)),
        ..LoadReport::default()
    };
    if let Some((a, b, c)) = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .as_deref()
        .and_then(parse_loadavg)
    {
        (load.load1, load.load5, load.load15) = (a, b, c);
    }
    if let Some((total, available)) = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .as_deref()
        .and_then(parse_meminfo)
    {
        (load.memory_total_bytes, load.memory_available_bytes) = (total, available);
    }
    // `u64::from`: the statvfs field types differ between platforms (u64 on Linux x86_64).
    #[allow(clippy::useless_conversion)]
    if let Ok(vfs) = nix::sys::statvfs::statvfs(accounts_path) {
        let frsize = u64::from(vfs.fragment_size());
        load.disk_total_bytes = u64::from(vfs.blocks()).saturating_mul(frsize);
        load.disk_free_bytes = u64::from(vfs.blocks_available()).saturating_mul(frsize);
        load.inodes_total = u64::from(vfs.files());
        load.inodes_free = u64::from(vfs.files_available());
    }
    load
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_text_parses() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 1/389 12345\n"),
            Some((0.52, 0.58, 0.59))
        );
        assert_eq!(parse_loadavg("garbage"), None);
        let meminfo =
            "MemTotal:       16318196 kB\nMemFree:         1000 kB\nMemAvailable:   8000000 kB\n";
        assert_eq!(
            parse_meminfo(meminfo),
            Some((16_318_196 * 1024, 8_000_000 * 1024))
        );
        assert_eq!(parse_meminfo("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn this_host_reports_something() {
        let load = read(Path::new("/"));
        assert!(load.cpu_count >= 1);
        assert!(load.memory_total_bytes > 0);
        assert!(load.disk_total_bytes > 0 && load.inodes_total > 0);
    }
}
