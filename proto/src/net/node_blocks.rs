//! The blocks a node holds, as `Node.network_blocks` carries them: written by
//! the allocator with [`NetworkBlocks::of`], read by the allocator and every
//! agent with [`Node::blocks_in`].

use super::{Block, Ipv4Prefix, NetError};
use crate::v1::{NetworkBlocks, Node};

impl NetworkBlocks {
    /// The message for `blocks`, lowest first.
    pub fn of<'a>(blocks: impl IntoIterator<Item = &'a Block>) -> NetworkBlocks {
        let mut blocks: Vec<Block> = blocks.into_iter().copied().collect();
        blocks.sort();
        NetworkBlocks {
            blocks: blocks.into_iter().map(Ipv4Prefix::from).collect(),
        }
    }

    /// Every block, checked (an entry that is no block is an error naming it).
    pub fn blocks(&self) -> impl Iterator<Item = Result<Block, NetError>> + '_ {
        self.blocks.iter().map(Ipv4Prefix::block)
    }
}

impl Node {
    /// This node's blocks in `network`, checked; none when it holds none there.
    pub fn blocks_in(&self, network: &str) -> impl Iterator<Item = Result<Block, NetError>> + '_ {
        self.network_blocks
            .get(network)
            .into_iter()
            .flat_map(NetworkBlocks::blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn blocks_are_written_sorted_and_read_checked() {
        let b = |third| Block::containing(Ipv4Addr::new(10, 96, third, 0), 26).expect("block");
        let mut entry = NetworkBlocks::of(&[b(1), b(0)]);
        assert_eq!(entry.blocks().collect::<Vec<_>>(), vec![Ok(b(0)), Ok(b(1))]);
        entry.blocks.push("10.96.2.5/26".parse().expect("prefix"));
        let node = Node {
            network_blocks: [("berth".to_string(), entry)].into(),
            ..Default::default()
        };
        let read: Vec<_> = node.blocks_in("berth").collect();
        assert_eq!(read.len(), 3);
        assert!(matches!(read[2], Err(NetError::HostBits { .. })));
        assert_eq!(node.blocks_in("other").count(), 0);
    }
}
