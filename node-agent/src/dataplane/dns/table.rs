//! The names one overlay network's containers resolve locally.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The names one overlay network's containers can resolve: `NAME` → the service VIP,
/// `tasks.NAME` → the running tasks' IPs. Keys are lower-case, without a trailing dot.
///
/// Addresses are kept sorted and deduplicated so that two tables built from the
/// same state in a different order compare equal (the agent can skip sending an
/// unchanged table); the server shuffles them per answer anyway.
///
/// A container on several networks asks only its first network's server: the
/// names of its other networks are kept for it, by its address on this
/// network ([`DnsTable::insert_for`]), and answered to it alone.
///
/// A name of a service whose serving tasks this node does not hold yet (it
/// does not follow it: docs/design/dispatcher.md, "Endpoints by interest") is
/// marked with the service's id ([`DnsTable::needs_follow`]): the server asks
/// for the service and answers once its tasks are in the kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DnsTable {
    names: BTreeMap<String, Vec<Ipv4Addr>>,
    clients: BTreeMap<Ipv4Addr, BTreeMap<String, Vec<Ipv4Addr>>>,
    /// Name → id of a service this node does not follow.
    unfollowed: BTreeMap<String, String>,
}

impl DnsTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the addresses of `name` (any case, trailing dot optional), replacing
    /// what it had. An empty list keeps the name known with no addresses: the
    /// server then answers NOERROR with no records and never forwards it. A name
    /// that is empty once normalised (`""`, `"."`) is ignored: it would be the root.
    pub fn insert(&mut self, name: &str, mut addrs: Vec<Ipv4Addr>) {
        let key = normalise(name);
        if key.is_empty() {
            return;
        }
        addrs.sort_unstable();
        addrs.dedup();
        self.names.insert(key, addrs);
    }

    /// Sets the addresses of `name` for queries from `client` only (a name of
    /// another network the client is on). The network's own names win.
    pub fn insert_for(&mut self, client: Ipv4Addr, name: &str, mut addrs: Vec<Ipv4Addr>) {
        let key = normalise(name);
        if key.is_empty() {
            return;
        }
        addrs.sort_unstable();
        addrs.dedup();
        self.clients.entry(client).or_default().insert(key, addrs);
    }

    /// Marks `name` as a name of service `service_id`, which this node does
    /// not follow yet.
    pub fn mark_unfollowed(&mut self, name: &str, service_id: &str) {
        let key = normalise(name);
        if !key.is_empty() {
            self.unfollowed.insert(key, service_id.to_string());
        }
    }

    /// The service to follow before `name` is answered: set when the name is
    /// one of a service this node does not follow.
    pub fn needs_follow(&self, name: &str) -> Option<&str> {
        self.unfollowed.get(&normalise(name)).map(String::as_str)
    }

    /// Every name marked with [`DnsTable::mark_unfollowed`], with its service.
    pub fn unfollowed(&self) -> impl Iterator<Item = (&str, &str)> {
        self.unfollowed
            .iter()
            .map(|(name, service)| (name.as_str(), service.as_str()))
    }

    /// The addresses of `name` as `client` sees them: the network's names,
    /// then those of the client's other networks.
    pub fn lookup_from(&self, client: Option<Ipv4Addr>, name: &str) -> Option<&[Ipv4Addr]> {
        let key = normalise(name);
        self.names
            .get(&key)
            .or_else(|| self.clients.get(&client?)?.get(&key))
            .map(Vec::as_slice)
    }

    /// Forgets `name`; queries for it are then forwarded upstream like any other.
    pub fn remove(&mut self, name: &str) -> Option<Vec<Ipv4Addr>> {
        self.names.remove(&normalise(name))
    }

    /// The addresses of `name` (any case, trailing dot optional); `None` if the
    /// name is not ours, `Some(&[])` if it is ours with no addresses.
    pub fn lookup(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.names.get(&normalise(name)).map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The names (normalised) and their addresses, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Ipv4Addr])> {
        self.names.iter().map(|(n, a)| (n.as_str(), a.as_slice()))
    }
}

/// Lower-case without one trailing dot: `Web.` and `web` are the same name.
pub(crate) fn normalise(name: &str) -> String {
    let name = name.trim();
    let name = name.strip_suffix('.').unwrap_or(name);
    name.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

    #[test]
    fn case_and_trailing_dot_do_not_matter() {
        let mut t = DnsTable::new();
        t.insert("Web.", vec![A]);
        assert_eq!(t.lookup("web"), Some(&[A][..]));
        assert_eq!(t.lookup("WEB."), Some(&[A][..]));
        assert_eq!(t.lookup("web.."), None);
        assert_eq!(t.lookup("tasks.web"), None);
        assert_eq!(t.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["web"]);
    }

    #[test]
    fn empty_list_is_a_known_name_without_addresses() {
        let mut t = DnsTable::new();
        t.insert("tasks.web", vec![]);
        assert_eq!(t.lookup("tasks.web"), Some(&[][..]));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn insert_replaces_and_remove_forgets() {
        let mut t = DnsTable::new();
        t.insert("web", vec![A]);
        t.insert("WEB", vec![B]);
        assert_eq!(t.lookup("web"), Some(&[B][..]));
        assert_eq!(t.remove("Web."), Some(vec![B]));
        assert_eq!(t.lookup("web"), None);
        assert!(t.is_empty());
    }

    #[test]
    fn order_and_duplicates_do_not_change_equality() {
        let mut x = DnsTable::new();
        x.insert("tasks.web", vec![B, A, B]);
        let mut y = DnsTable::new();
        y.insert("tasks.web", vec![A, B]);
        assert_eq!(x, y);
        assert_eq!(x.lookup("tasks.web"), Some(&[A, B][..]));
    }

    #[test]
    fn a_clients_other_networks_answer_to_it_alone() {
        const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 9);
        let mut t = DnsTable::new();
        t.insert("web", vec![A]);
        t.insert_for(CLIENT, "DB.", vec![B]);
        t.insert_for(CLIENT, "web", vec![B]);
        assert_eq!(t.lookup_from(Some(CLIENT), "db"), Some(&[B][..]));
        assert_eq!(t.lookup_from(Some(A), "db"), None, "another client");
        assert_eq!(t.lookup_from(None, "db"), None);
        assert_eq!(t.lookup("db"), None);
        // The network's own names win.
        assert_eq!(t.lookup_from(Some(CLIENT), "web"), Some(&[A][..]));
    }

    #[test]
    fn root_is_never_a_table_name() {
        let mut t = DnsTable::new();
        t.insert(".", vec![A]);
        t.insert("", vec![A]);
        assert!(t.is_empty());
        assert_eq!(t.lookup("."), None);
    }
}
