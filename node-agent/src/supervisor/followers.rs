//! Who follows which task's logs: a task forgotten while someone follows its
//! output (a one-off removed by `run --rm` right after it ended, while the
//! attached `berth run` still reads the last lines) keeps its log files until
//! the last follower is done.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Followers(Mutex<HashMap<String, Following>>);

struct Following {
    readers: usize,
    /// The task was forgotten meanwhile: the last reader removes the logs.
    forgotten: bool,
}

impl Followers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Following>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A follower of `task` starts.
    pub fn start(&self, task: &str) {
        self.lock()
            .entry(task.to_string())
            .or_insert(Following {
                readers: 0,
                forgotten: false,
            })
            .readers += 1;
    }

    /// A follower of `task` is done; true if the logs are to be removed now.
    pub fn end(&self, task: &str) -> bool {
        let mut map = self.lock();
        let Some(f) = map.get_mut(task) else {
            return false;
        };
        f.readers = f.readers.saturating_sub(1);
        if f.readers > 0 {
            return false;
        }
        let forgotten = f.forgotten;
        map.remove(task);
        forgotten
    }

    /// `task` is forgotten; true if its logs can go now (nobody follows).
    pub fn forget(&self, task: &str) -> bool {
        match self.lock().get_mut(task) {
            Some(f) => {
                f.forgotten = true;
                false
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_follower_of_a_forgotten_task_removes_its_logs() {
        let f = Followers::default();
        assert!(f.forget("a"), "nobody follows: removed at once");
        f.start("b");
        f.start("b");
        assert!(!f.forget("b"));
        assert!(!f.end("b"), "one reader left");
        assert!(f.end("b"), "the last one removes them");
        f.start("c");
        assert!(!f.end("c"), "not forgotten: the logs stay");
    }
}
