//! Mount options of config.json (`ro`, `nosuid`, `rbind`, `mode=755`, ...) to
//! mount(2) flags, propagation flags and the data string.

use nix::mount::MsFlags;

#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub flags: MsFlags,
    /// Flags cleared by options such as `rw` or `suid` (only for remounts).
    pub cleared: MsFlags,
    pub propagation: MsFlags,
    /// Options passed to the filesystem (`mode=755,size=65536k`).
    pub data: String,
}

impl Options {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

pub fn parse(options: &[String]) -> Options {
    let mut out = Options {
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        propagation: MsFlags::empty(),
        data: String::new(),
    };
    let mut data = Vec::new();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let mut p = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if opt.starts_with('r') {
                    p |= MsFlags::MS_REC;
                }
                out.propagation |= p;
                continue;
            }
            // runc-specific hints without a kernel meaning.
            "tmpcopyup" | "idmap" | "ridmap" => continue,
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        out.flags |= set;
        out.flags &= !clear;
        out.cleared |= clear;
    }
    out.data = data.join(",");
    out
}

/// Propagation of `rootfsPropagation` (default: private, recursively).
pub fn propagation(name: Option<&str>) -> MsFlags {
    match name {
        Some("shared") => MsFlags::MS_SHARED | MsFlags::MS_REC,
        Some("slave") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some("unbindable") => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Options {
        parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = opts(&["rbind", "ro", "rprivate"]);
        assert!(o.is_bind());
        assert!(o.flags.contains(MsFlags::MS_RDONLY | MsFlags::MS_REC));
        assert_eq!(o.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        let o = opts(&["ro", "rw"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
    }
}
