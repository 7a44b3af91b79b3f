//! Per-key async locks, so that concurrent pulls of images sharing a layer
//! download and unpack it once: the second waits, then finds it there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

use super::digest::Digest;

#[derive(Clone, Default)]
pub struct KeyedLocks {
    locks: Arc<Mutex<HashMap<Digest, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Held while working on one key; the entry goes when nobody else wants it.
pub struct KeyGuard {
    key: Digest,
    owner: KeyedLocks,
    guard: Option<OwnedMutexGuard<()>>,
}

impl KeyedLocks {
    pub async fn lock(&self, key: &Digest) -> KeyGuard {
        let lock = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        KeyGuard {
            key: key.clone(),
            owner: self.clone(),
            guard: Some(lock.lock_owned().await),
        }
    }
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.owner.locks.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it now: nobody waits.
        if map
            .get(&self.key)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_per_key_and_no_leftover_entries() {
        let locks = KeyedLocks::default();
        let a = Digest::of(b"a");
        let g = locks.lock(&a).await;
        let other = locks.clone();
        let key = a.clone();
        let waiter = tokio::spawn(async move { other.lock(&key).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "a second holder got in");
        // Another key is free meanwhile.
        drop(locks.lock(&Digest::of(b"b")).await);
        drop(g);
        drop(waiter.await.unwrap());
        assert!(locks.locks.lock().unwrap().is_empty());
    }
}
