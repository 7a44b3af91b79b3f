//! The container's user: `uid[:gid]` or names, resolved through the image's
//! `/etc/passwd` and `/etc/group`.

use std::path::Path;

/// A resolved user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups the user is a member of in `/etc/group`.
    pub groups: Vec<u32>,
}

/// Resolves `user` (`uid`, `uid:gid`, `name`, `name:group`) in `rootfs`.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<User, String> {
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_db(rootfs, "etc/passwd");
    let (uid, name, primary) = match u.parse::<u32>() {
        Ok(uid) => {
            let entry = passwd.iter().find(|e| e.get(2) == Some(&u.to_string()));
            let gid = entry.and_then(|e| e.get(3)).and_then(|g| g.parse().ok());
            (uid, entry.and_then(|e| e.first().cloned()), gid)
        }
        Err(_) => {
            let entry = passwd
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(u))
                .ok_or_else(|| format!("user {u:?} is not in the image's /etc/passwd"))?;
            let uid = entry
                .get(2)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("user {u:?} has a bad uid in the image's /etc/passwd"))?;
            let gid = entry.get(3).and_then(|s| s.parse().ok());
            (uid, Some(u.to_string()), gid)
        }
    };
    let groups_db = read_db(rootfs, "etc/group");
    let gid = match g {
        None => primary.unwrap_or(0),
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups_db
                .iter()
                .find(|e| e.first().map(String::as_str) == Some(g))
                .and_then(|e| e.get(2))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("group {g:?} is not in the image's /etc/group"))?,
        },
    };
    let mut groups = Vec::new();
    if let Some(name) = name {
        for e in &groups_db {
            let members = e.get(3).map(String::as_str).unwrap_or("");
            if members.split(',').any(|m| m == name)
                && let Some(id) = e.get(2).and_then(|s| s.parse::<u32>().ok())
                && id != gid
            {
                groups.push(id);
            }
        }
    }
    Ok(User { uid, gid, groups })
}

/// The colon-separated entries of a file in the rootfs (empty if missing). A
/// symlink is not followed: it could point out of the rootfs.
fn read_db(rootfs: &Path, rel: &str) -> Vec<Vec<String>> {
    let path = rootfs.join(rel);
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.is_file() => {}
        _ => return Vec::new(),
    }
    std::fs::read_to_string(&path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_resolve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nweb:x:1001:\nlogs:x:1002:web,other\n",
        )
        .unwrap();
        let r = |u| resolve_user(dir.path(), u);
        assert_eq!(
            r("web").unwrap(),
            User {
                uid: 1000,
                gid: 1001,
                groups: vec![1002]
            }
        );
        assert_eq!(r("1000").unwrap().gid, 1001);
        assert_eq!(
            r("5:6").unwrap(),
            User {
                uid: 5,
                gid: 6,
                groups: vec![]
            }
        );
        assert_eq!(r("web:logs").unwrap().gid, 1002);
        assert!(r("nobody").unwrap_err().contains("nobody"));
        assert!(r("web:nogroup").unwrap_err().contains("nogroup"));
    }
}
