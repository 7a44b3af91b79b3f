//! The objects a stack plan is computed from: one read of each table.

use berth_proto::store::object::Kind;
use berth_proto::v1::{Config, Network, Secret, Service, Volume};

use crate::store::{StateMachine, StoreError, Table};

#[derive(Clone, Debug, Default)]
pub struct Current {
    pub networks: Vec<Network>,
    pub volumes: Vec<Volume>,
    pub configs: Vec<Config>,
    pub secrets: Vec<Secret>,
    pub services: Vec<Service>,
}

impl Current {
    pub fn read(sm: &StateMachine) -> Result<Current, StoreError> {
        let mut current = Current::default();
        for table in [
            Table::Network,
            Table::Volume,
            Table::Config,
            Table::Secret,
            Table::Service,
        ] {
            for object in sm.list(table)? {
                match object.kind {
                    Some(Kind::Network(o)) => current.networks.push(o),
                    Some(Kind::Volume(o)) => current.volumes.push(o),
                    Some(Kind::Config(o)) => current.configs.push(o),
                    Some(Kind::Secret(o)) => current.secrets.push(o),
                    Some(Kind::Service(o)) => current.services.push(*o),
                    _ => {}
                }
            }
        }
        Ok(current)
    }

    pub fn network(&self, name: &str) -> Option<&Network> {
        self.networks.iter().find(|o| o.name == name)
    }

    pub fn volume(&self, name: &str) -> Option<&Volume> {
        self.volumes.iter().find(|o| o.name == name)
    }

    pub fn config(&self, name: &str) -> Option<&Config> {
        self.configs.iter().find(|o| o.name == name)
    }

    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.iter().find(|o| o.name == name)
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.spec.as_ref().is_some_and(|spec| spec.name == name))
    }
}
