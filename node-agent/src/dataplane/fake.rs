//! An in-memory kernel for the diff logic's unit tests (the real implementation
//! is tested against the kernel in node-agent/tests/network_*.rs).

use std::sync::Mutex;

use super::error::NetworkError;
use super::netlink::{
    Address, Fdb, Link, LinkKind, LinkUpdate, Neighbour, Netlink, Route, VxlanInfo, VxlanSpec,
};

type R<T> = Result<T, NetworkError>;

#[derive(Default)]
pub struct State {
    pub links: Vec<Link>,
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub neighbours: Vec<Neighbour>,
    pub fdb: Vec<Fdb>,
    pub forwarding: bool,
    pub next_index: u32,
    pub writes: usize,
}

#[derive(Default)]
pub struct FakeNetlink {
    pub state: Mutex<State>,
}

impl FakeNetlink {
    /// A kernel with `lo` and `eth0` (index 2, mtu `mtu`, address `addr`/15).
    pub fn with_underlay(addr: std::net::Ipv4Addr, mtu: u32) -> FakeNetlink {
        let fake = FakeNetlink::default();
        {
            let mut s = fake.state.lock().expect("lock");
            s.next_index = 3;
            for (index, name, mtu) in [(1, "lo", 65536), (2, "eth0", mtu)] {
                s.links.push(Link {
                    index,
                    name: name.into(),
                    kind: LinkKind::Other,
                    mtu,
                    mac: None,
                    up: true,
                    master: None,
                });
            }
            s.addresses.push(Address {
                index: 2,
                addr,
                prefix: 15,
            });
        }
        fake
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().expect("fake netlink lock"))
    }

    fn write<T>(&self, f: impl FnOnce(&mut State) -> R<T>) -> R<T> {
        self.with(|s| {
            s.writes += 1;
            f(s)
        })
    }

    fn add_link(&self, name: &str, kind: LinkKind, mtu: u32, mac: Option<Vec<u8>>) -> R<()> {
        self.write(|s| {
            if s.links.iter().any(|l| l.name == name) {
                return Err(NetworkError::Kernel(format!("fake: {name} exists")));
            }
            let index = s.next_index;
            s.next_index += 1;
            s.links.push(Link {
                index,
                name: name.into(),
                kind,
                mtu,
                mac,
                up: false,
                master: None,
            });
            Ok(())
        })
    }
}

fn not_found(what: &str) -> NetworkError {
    NetworkError::Kernel(format!("fake: no {what}"))
}

impl Netlink for FakeNetlink {
    async fn links(&self) -> R<Vec<Link>> {
        Ok(self.with(|s| s.links.clone()))
    }
    async fn link(&self, name: &str) -> R<Option<Link>> {
        Ok(self.with(|s| s.links.iter().find(|l| l.name == name).cloned()))
    }
    async fn addresses(&self) -> R<Vec<Address>> {
        Ok(self.with(|s| s.addresses.clone()))
    }
    async fn routes(&self) -> R<Vec<Route>> {
        Ok(self.with(|s| s.routes.clone()))
    }
    async fn neighbours(&self, index: u32) -> R<Vec<Neighbour>> {
        Ok(self.with(|s| {
            s.neighbours
                .iter()
                .filter(|n| n.index == index)
                .cloned()
                .collect()
        }))
    }
    async fn fdb(&self, index: u32) -> R<Vec<Fdb>> {
        Ok(self.with(|s| s.fdb.iter().filter(|f| f.index == index).cloned().collect()))
    }
    async fn add_bridge(&self, name: &str, mtu: u32) -> R<()> {
        self.add_link(name, LinkKind::Bridge, mtu, None)
    }
    async fn add_vxlan(&self, spec: &VxlanSpec) -> R<()> {
        let info = VxlanInfo {
            vni: spec.vni,
            local: Some(spec.local),
            port: spec.port,
            learning: false,
            lower: Some(spec.lower),
        };
        self.add_link(
            &spec.name,
            LinkKind::Vxlan(info),
            spec.mtu,
            Some(spec.mac.to_vec()),
        )
    }
    async fn add_veth(
        &self,
        name: &str,
        peer: &str,
        mtu: u32,
        peer_netns: Option<std::os::fd::RawFd>,
    ) -> R<()> {
        self.add_link(name, LinkKind::Veth, mtu, None)?;
        // A peer born elsewhere is not in this (host) namespace.
        match peer_netns {
            Some(_) => Ok(()),
            None => self.add_link(peer, LinkKind::Veth, mtu, None),
        }
    }
    async fn set_hairpin(&self, index: u32, _on: bool) -> R<()> {
        self.write(|s| {
            s.links
                .iter()
                .any(|l| l.index == index)
                .then_some(())
                .ok_or_else(|| not_found("link"))
        })
    }

    async fn set_link(&self, index: u32, u: &LinkUpdate) -> R<()> {
        self.write(|s| {
            let link = s
                .links
                .iter_mut()
                .find(|l| l.index == index)
                .ok_or_else(|| not_found("link"))?;
            if let Some(mtu) = u.mtu {
                link.mtu = mtu;
            }
            if let Some(mac) = &u.mac {
                link.mac = Some(mac.clone());
            }
            if let Some(name) = &u.name {
                link.name = name.clone();
            }
            link.up |= u.up;
            if u.master.is_some() {
                link.master = u.master;
            }
            Ok(())
        })
    }
    async fn del_link(&self, index: u32) -> R<()> {
        self.write(|s| {
            let before = s.links.len();
            s.links.retain(|l| l.index != index);
            if s.links.len() == before {
                return Err(not_found("link"));
            }
            s.addresses.retain(|a| a.index != index);
            s.routes.retain(|r| r.oif != index);
            s.neighbours.retain(|n| n.index != index);
            s.fdb.retain(|f| f.index != index);
            Ok(())
        })
    }
    async fn add_address(&self, a: Address) -> R<()> {
        self.write(|s| {
            s.addresses.retain(|x| *x != a);
            s.addresses.push(a);
            Ok(())
        })
    }
    async fn del_address(&self, a: Address) -> R<()> {
        self.write(|s| {
            s.addresses.retain(|x| *x != a);
            Ok(())
        })
    }
    async fn replace_route(&self, r: Route) -> R<()> {
        self.write(|s| {
            s.routes.retain(|x| (x.dst, x.prefix) != (r.dst, r.prefix));
            s.routes.push(r);
            Ok(())
        })
    }
    async fn del_route(&self, r: Route) -> R<()> {
        self.write(|s| {
            s.routes.retain(|x| *x != r);
            Ok(())
        })
    }
    async fn replace_neighbour(&self, n: &Neighbour) -> R<()> {
        self.write(|s| {
            s.neighbours.retain(|x| (x.index, x.ip) != (n.index, n.ip));
            s.neighbours.push(n.clone());
            Ok(())
        })
    }
    async fn del_neighbour(&self, n: &Neighbour) -> R<()> {
        self.write(|s| {
            s.neighbours.retain(|x| (x.index, x.ip) != (n.index, n.ip));
            Ok(())
        })
    }
    async fn replace_fdb(&self, f: &Fdb) -> R<()> {
        self.write(|s| {
            s.fdb
                .retain(|x| (x.index, &x.mac, x.dst) != (f.index, &f.mac, f.dst));
            s.fdb.push(f.clone());
            Ok(())
        })
    }
    async fn del_fdb(&self, f: &Fdb) -> R<()> {
        self.write(|s| {
            s.fdb.retain(|x| x != f);
            Ok(())
        })
    }
    async fn enable_forwarding(&self) -> R<bool> {
        Ok(self.with(|s| !std::mem::replace(&mut s.forwarding, true)))
    }
}
