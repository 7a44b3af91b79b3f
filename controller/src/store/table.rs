//! The tables of the state machine, by name: one enum instead of strings.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Node,
    Service,
    Task,
    Network,
    Secret,
    Config,
    /// The cluster's CA and join secrets (one record).
    Pki,
    /// Named local volumes (#14).
    Volume,
    /// Cluster-wide settings (#17; one record, id "cluster").
    ClusterSettings,
}

impl Table {
    pub const ALL: [Table; 9] = [
        Table::Node,
        Table::Service,
        Table::Task,
        Table::Network,
        Table::Secret,
        Table::Config,
        Table::Pki,
        Table::Volume,
        Table::ClusterSettings,
    ];

    /// The name in keys, in `Delete` operations and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Table::Node => "node",
            Table::Service => "service",
            Table::Task => "task",
            Table::Network => "network",
            Table::Secret => "secret",
            Table::Config => "config",
            Table::Pki => "pki",
            Table::Volume => "volume",
            Table::ClusterSettings => "cluster_settings",
        }
    }

    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Table;

    #[test]
    fn names_round_trip() {
        for table in Table::ALL {
            assert_eq!(Table::parse(table.name()), Some(table));
        }
        assert_eq!(Table::parse("tasks"), None);
    }
}
