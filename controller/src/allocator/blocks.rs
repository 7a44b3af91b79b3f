//! A network's address layout and its per-node blocks: the top sixteenth of the
//! subnet is the VIP range, the rest splits into /26 blocks handed to nodes on
//! demand (a node takes another block only when its blocks are full). What a
//! block holds (network address, gateway, task addresses, broadcast) is
//! [`Block`]'s rule, the one the agents read.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use berth_proto::net::{Block, Ipv4Net, Ipv4Subnets, overlaps};
use berth_proto::v1::Node;
use tracing::warn;

use super::AllocError;

/// Prefix length of a node's address block (64 addresses, 61 for tasks).
pub const BLOCK_PREFIX: u8 = 26;
/// Longest subnet prefix a network may have (4 blocks, a VIP range of 16).
pub const MAX_SUBNET_PREFIX: u8 = 24;

/// Where a network's addresses go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The network's subnet (host bits zero).
    pub subnet: Ipv4Net,
    /// Service VIPs: the last sixteenth of the subnet.
    pub vips: Ipv4Net,
}

impl Layout {
    pub fn of(network: &str, subnet: Ipv4Net) -> Result<Layout, AllocError> {
        let subnet = subnet.trunc();
        if subnet.prefix_len() > MAX_SUBNET_PREFIX {
            return Err(AllocError::SubnetTooSmall {
                network: network.into(),
                subnet: subnet.to_string(),
            });
        }
        // At most /28: always a valid prefix length.
        let vips = Ipv4Net::new_assert(subnet.broadcast(), subnet.prefix_len() + 4).trunc();
        Ok(Layout { subnet, vips })
    }

    /// The blocks nodes may hold from the block at `start` on, lowest first
    /// (`start` is a block's first address; the subnet is at most /24, so it
    /// always splits into /26s).
    fn blocks_from(&self, start: Ipv4Addr) -> impl Iterator<Item = Block> + use<> {
        let vips = self.vips;
        Ipv4Subnets::new(start, self.subnet.broadcast(), BLOCK_PREFIX)
            .filter(move |b| b.prefix_len() == BLOCK_PREFIX && !overlaps(b, &vips))
            .filter_map(|b| Block::new(b).ok())
    }

    /// The blocks nodes may hold, lowest first.
    pub fn blocks(&self) -> impl Iterator<Item = Block> + use<> {
        self.blocks_from(self.subnet.network())
    }

    pub fn is_block(&self, block: &Block) -> bool {
        let net = block.net();
        net.prefix_len() == BLOCK_PREFIX
            && self.subnet.contains(&net)
            && !overlaps(&net, &self.vips)
    }

    /// The block of this layout's size around `addr` (whether or not the
    /// layout has it: see [`Layout::is_block`]).
    pub fn block_of(addr: Ipv4Addr) -> Option<Block> {
        Block::containing(addr, BLOCK_PREFIX).ok()
    }
}

/// The blocks `node` holds in `network`; malformed entries are skipped with a
/// warning (the allocator rewrites the list).
fn read_blocks(node: &Node, network: &str) -> Vec<Block> {
    node.blocks_in(network)
        .filter_map(|block| match block {
            Ok(block) => Some(block),
            Err(err) => {
                warn!(node = %node.id, network, %err, "ignoring a malformed address block");
                None
            }
        })
        .collect()
}

/// One network's blocks and used addresses while a round allocates.
#[derive(Clone, Debug)]
pub struct Pool {
    pub name: String,
    pub layout: Layout,
    /// Blocks per existing node.
    nodes: BTreeMap<String, BTreeSet<Block>>,
    /// Every block in use: by a node, or (None) by live tasks of a node that
    /// is gone.
    owners: BTreeMap<Block, Option<String>>,
    used: BTreeSet<Ipv4Addr>,
    changed: BTreeSet<String>,
    /// Nodes that keep a block even without tasks (the network carries
    /// published ports, which every node forwards into it).
    held: BTreeSet<String>,
    /// Every block of the layout below this address is owned: a search for
    /// a free block starts here. Without it, 1,000 nodes each taking a block
    /// in one round scanned the layout from its start every time (quadratic:
    /// ~4 % of the leader's CPU while a 1,000-node cluster converged).
    unowned_from: Ipv4Addr,
}

impl Pool {
    /// Reads the blocks the nodes hold in this network. A block outside the
    /// layout, or held by two nodes, is dropped from the later node (by id).
    pub fn new(name: &str, layout: Layout, nodes: &[Node]) -> Pool {
        let mut pool = Pool {
            name: name.into(),
            layout,
            nodes: BTreeMap::new(),
            owners: BTreeMap::new(),
            used: BTreeSet::new(),
            changed: BTreeSet::new(),
            held: BTreeSet::new(),
            unowned_from: layout.subnet.network(),
        };
        let mut sorted: Vec<&Node> = nodes.iter().collect();
        sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for node in sorted {
            let mut mine = BTreeSet::new();
            let listed = read_blocks(node, name);
            for block in &listed {
                if layout.is_block(block) && !pool.owners.contains_key(block) {
                    pool.owners.insert(*block, Some(node.id.clone()));
                    mine.insert(*block);
                }
            }
            if mine.len() != listed.len() {
                pool.changed.insert(node.id.clone());
            }
            pool.nodes.insert(node.id.clone(), mine);
        }
        pool
    }

    /// Records the address of a live task on `node`. An address in a block no
    /// node holds makes the task's node hold it (repairing a block write that
    /// was refused while the task's was not), or keeps the block out of use
    /// while the task lives when its node is gone.
    pub fn mark_used(&mut self, addr: Ipv4Addr, node: &str) {
        self.used.insert(addr);
        let Some(block) = Layout::block_of(addr) else {
            return;
        };
        if !self.layout.is_block(&block) || self.owners.contains_key(&block) {
            return;
        }
        match self.nodes.get_mut(node) {
            Some(blocks) => {
                blocks.insert(block);
                self.owners.insert(block, Some(node.to_string()));
                self.changed.insert(node.to_string());
            }
            None => {
                self.owners.insert(block, None);
            }
        }
    }

    pub fn is_used(&self, addr: Ipv4Addr) -> bool {
        self.used.contains(&addr)
    }

    /// Whether `addr` is a valid task address of `node` that nobody else uses.
    pub fn is_free_for(&self, addr: Ipv4Addr, node: &str) -> bool {
        !self.used.contains(&addr)
            && self
                .nodes
                .get(node)
                .is_some_and(|blocks| blocks.iter().any(|b| b.holds(addr)))
    }

    /// The lowest free address in `node`'s blocks, taking a new block for the
    /// node when they are full.
    pub fn allocate(&mut self, node: &str) -> Result<Ipv4Addr, AllocError> {
        let Some(blocks) = self.nodes.get(node) else {
            return Err(AllocError::NoSuchNode {
                network: self.name.clone(),
                node: node.into(),
            });
        };
        let free = blocks
            .iter()
            .flat_map(Block::task_addresses)
            .find(|a| !self.used.contains(a));
        let addr = match free {
            Some(addr) => addr,
            None => {
                let (block, addr) = self
                    .lowest_unowned()
                    .and_then(|b| Some((b, b.task_addresses().next()?)))
                    .ok_or_else(|| AllocError::Exhausted {
                        network: self.name.clone(),
                        subnet: self.layout.subnet.to_string(),
                        blocks: self.owners.len(),
                        prefix: BLOCK_PREFIX,
                    })?;
                self.owners.insert(block, Some(node.to_string()));
                self.nodes
                    .entry(node.to_string())
                    .or_default()
                    .insert(block);
                self.changed.insert(node.to_string());
                addr
            }
        };
        self.used.insert(addr);
        Ok(addr)
    }

    /// The lowest block no one owns; the search starts where the last one
    /// ended (the caller takes the block).
    fn lowest_unowned(&mut self) -> Option<Block> {
        let owners = &self.owners;
        let block = self
            .layout
            .blocks_from(self.unowned_from)
            .find(|b| !owners.contains_key(b))?;
        let next = u32::from(block.net().broadcast()).checked_add(1);
        self.unowned_from = next.map_or(Ipv4Addr::BROADCAST, Ipv4Addr::from);
        Some(block)
    }

    /// Gives an address back (a task that could not get all its addresses).
    pub fn release(&mut self, addr: Ipv4Addr) {
        self.used.remove(&addr);
    }

    /// Makes `node` hold a block even without tasks (taking the lowest free
    /// one if it has none); a full network leaves it without.
    pub fn hold_block(&mut self, node: &str) {
        let Some(blocks) = self.nodes.get_mut(node) else {
            return;
        };
        self.held.insert(node.to_string());
        if !blocks.is_empty() {
            return;
        }
        let Some(block) = self.lowest_unowned() else {
            warn!(network = %self.name, node, "no free block to hold for published ports");
            return;
        };
        if let Some(blocks) = self.nodes.get_mut(node) {
            blocks.insert(block);
        }
        self.owners.insert(block, Some(node.to_string()));
        self.changed.insert(node.to_string());
    }

    /// Gives back the blocks in which no live task has an address, so a node
    /// without tasks in the network holds nothing there (and its agent removes
    /// the network's devices); a held node keeps one. Call after every address
    /// is marked or allocated.
    pub fn release_idle_blocks(&mut self) {
        for (node, blocks) in &mut self.nodes {
            let mut idle: Vec<Block> = blocks
                .iter()
                .filter(|b| b.task_addresses().all(|a| !self.used.contains(&a)))
                .copied()
                .collect();
            if self.held.contains(node) && idle.len() == blocks.len() {
                idle.remove(0);
            }
            for block in idle {
                blocks.remove(&block);
                self.owners.remove(&block);
                self.unowned_from = self.unowned_from.min(block.net().network());
                self.changed.insert(node.clone());
            }
        }
    }

    /// Nodes whose block list changed.
    pub fn changed_nodes(&self) -> impl Iterator<Item = &str> {
        self.changed.iter().map(String::as_str)
    }

    pub fn blocks_of(&self, node: &str) -> Option<&BTreeSet<Block>> {
        self.nodes.get(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::net::parse_subnet;
    use berth_proto::v1::NetworkBlocks;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().expect("ip")
    }

    /// A node whose blocks are given as "CIDR,CIDR" per network (any prefix).
    fn node(id: &str, blocks: &[(&str, &str)]) -> Node {
        Node {
            id: id.into(),
            network_blocks: blocks
                .iter()
                .map(|(n, list)| {
                    let blocks = list
                        .split(',')
                        .map(|b| b.parse().expect("prefix"))
                        .collect();
                    (n.to_string(), NetworkBlocks { blocks })
                })
                .collect(),
            ..Default::default()
        }
    }

    fn format_blocks<'a>(blocks: impl IntoIterator<Item = &'a Block>) -> String {
        let texts: Vec<String> = blocks.into_iter().map(Block::to_string).collect();
        texts.join(",")
    }

    fn layout(subnet: &str) -> Layout {
        Layout::of("n", parse_subnet(subnet).expect("subnet")).expect("layout")
    }

    #[test]
    fn layout_keeps_the_top_sixteenth_for_vips() {
        let l = layout("10.96.0.0/16");
        assert_eq!(l.vips.to_string(), "10.96.240.0/20");
        assert_eq!(l.blocks().count(), 960);
        let l = layout("10.1.2.0/24");
        assert_eq!(l.vips.to_string(), "10.1.2.240/28");
        let blocks: Vec<String> = l.blocks().map(|b| b.to_string()).collect();
        assert_eq!(blocks, vec!["10.1.2.0/26", "10.1.2.64/26", "10.1.2.128/26"]);
        let err = Layout::of("small", parse_subnet("10.1.2.0/25").expect("parse"))
            .expect_err("too small")
            .to_string();
        assert!(
            err.contains("small") && err.contains("10.1.2.0/25"),
            "{err}"
        );
    }

    #[test]
    fn a_node_grows_block_by_block_skipping_gateway_and_broadcast() {
        let mut pool = Pool::new(
            "n",
            layout("10.96.0.0/16"),
            &[node("a", &[]), node("b", &[])],
        );
        let first = pool.allocate("a").expect("first");
        assert_eq!(first, ip("10.96.0.2"));
        for _ in 1..61 {
            pool.allocate("a").expect("within the block");
        }
        assert_eq!(pool.blocks_of("a").map(|b| b.len()), Some(1));
        assert_eq!(pool.allocate("b").expect("b"), ip("10.96.0.66"));
        assert_eq!(pool.allocate("a").expect("grow"), ip("10.96.0.130"));
        assert_eq!(
            format_blocks(pool.blocks_of("a").expect("a")),
            "10.96.0.0/26,10.96.0.128/26"
        );
        assert_eq!(pool.changed_nodes().collect::<Vec<_>>(), vec!["a", "b"]);
        let err = pool.allocate("ghost").expect_err("no node").to_string();
        assert!(err.contains("ghost"), "{err}");
    }

    #[test]
    fn blocks_without_live_addresses_are_given_back() {
        let mut pool = Pool::new(
            "n",
            layout("10.96.0.0/16"),
            &[
                node("a", &[("n", "10.96.0.0/26,10.96.0.64/26")]),
                node("b", &[("n", "10.96.0.128/26")]),
            ],
        );
        pool.mark_used(ip("10.96.0.70"), "a");
        pool.release_idle_blocks();
        assert_eq!(
            format_blocks(pool.blocks_of("a").expect("a")),
            "10.96.0.64/26"
        );
        assert!(pool.blocks_of("b").expect("b").is_empty());
        assert_eq!(pool.changed_nodes().collect::<Vec<_>>(), vec!["a", "b"]);
        // A freed block is taken again by the next node that needs one.
        assert_eq!(pool.allocate("b").expect("b"), ip("10.96.0.2"));
    }

    #[test]
    fn a_held_node_keeps_one_block_without_tasks() {
        let mut pool = Pool::new(
            "n",
            layout("10.96.0.0/16"),
            &[
                node("a", &[]),
                node("b", &[("n", "10.96.0.0/26,10.96.0.64/26")]),
            ],
        );
        pool.hold_block("a");
        pool.hold_block("b");
        pool.release_idle_blocks();
        assert_eq!(
            format_blocks(pool.blocks_of("a").expect("a")),
            "10.96.0.128/26"
        );
        assert_eq!(
            format_blocks(pool.blocks_of("b").expect("b")),
            "10.96.0.0/26"
        );
    }

    #[test]
    fn exhaustion_names_the_network_subnet_and_blocks() {
        let mut pool = Pool::new(
            "tiny",
            Layout::of("tiny", parse_subnet("10.1.2.0/24").expect("p")).expect("l"),
            &[node("a", &[])],
        );
        for _ in 0..3 * 61 {
            pool.allocate("a").expect("room");
        }
        let err = pool.allocate("a").expect_err("full").to_string();
        assert_eq!(
            err,
            "network tiny has no free address: 10.1.2.0/24 is exhausted (3 blocks of /26 in use)"
        );
        pool.release(ip("10.1.2.70"));
        assert_eq!(pool.allocate("a").expect("released"), ip("10.1.2.70"));
    }

    #[test]
    fn stored_blocks_are_read_checked_and_repaired() {
        let nodes = [
            node("a", &[("n", "10.96.0.0/26,10.96.0.70/26,10.96.240.0/26")]),
            node("b", &[("n", "10.96.0.0/26,10.96.0.64/26")]),
        ];
        let mut pool = Pool::new("n", layout("10.96.0.0/16"), &nodes);
        assert_eq!(
            format_blocks(pool.blocks_of("a").expect("a")),
            "10.96.0.0/26"
        );
        assert_eq!(
            format_blocks(pool.blocks_of("b").expect("b")),
            "10.96.0.64/26"
        );
        assert_eq!(pool.changed_nodes().collect::<Vec<_>>(), vec!["a", "b"]);
        // A task address in an unheld block: its node adopts the block.
        pool.mark_used(ip("10.96.1.5"), "b");
        assert!(
            pool.blocks_of("b")
                .expect("b")
                .contains(&Block::containing(ip("10.96.1.0"), 26).expect("p"))
        );
        // On a node that is gone: the block stays out of use.
        pool.mark_used(ip("10.96.0.200"), "gone");
        assert_eq!(pool.allocate("a").expect("a"), ip("10.96.0.2"));
        pool.mark_used(ip("10.96.0.3"), "a");
        for _ in 0..59 {
            pool.allocate("a").expect("a");
        }
        // 10.96.0.192/26 is held by the gone node's task: skipped.
        assert_eq!(pool.allocate("a").expect("grow"), ip("10.96.0.130"));
        for _ in 0..60 {
            pool.allocate("a").expect("a");
        }
        assert_eq!(pool.allocate("a").expect("grow"), ip("10.96.1.66"));
        assert!(pool.is_free_for(ip("10.96.1.67"), "a"));
        assert!(!pool.is_free_for(ip("10.96.1.65"), "a"), "gateway");
        assert!(!pool.is_free_for(ip("10.96.1.66"), "a"), "used");
        assert!(!pool.is_free_for(ip("10.96.1.6"), "a"), "b's block");
    }
}
