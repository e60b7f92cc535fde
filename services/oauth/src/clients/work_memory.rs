//! Argon2's working memory (8 MiB per hash at this service's cost), kept and
//! reused instead of allocated for every hash, with at most one hash per CPU
//! at a time.
//!
//! Allocated per hash, the freed buffers stayed in the allocator's
//! per-thread arenas: the service's resident memory grew with every token
//! request served on another blocking thread (to ~100 MiB after a handful,
//! ~600 MiB when 64 sessions asked at once). Here it is bounded by one
//! buffer per slot, each as large as the costliest hash it served.

use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError, TryLockError};

use argon2::Block;

/// Slots of reusable working memory.
#[derive(Debug)]
pub(super) struct WorkMemory {
    slots: Vec<Mutex<Vec<Block>>>,
}

impl WorkMemory {
    /// `slots` buffers (at least one), empty until a hash needs them.
    fn new(slots: usize) -> Self {
        Self {
            slots: (0..slots.max(1)).map(|_| Mutex::new(Vec::new())).collect(),
        }
    }

    /// The process's working memory: one slot per CPU, since a hash is
    /// CPU-bound and more at once would only cost memory.
    pub(super) fn shared() -> &'static Self {
        static SHARED: OnceLock<WorkMemory> = OnceLock::new();
        SHARED
            .get_or_init(|| Self::new(std::thread::available_parallelism().map_or(1, usize::from)))
    }

    /// A free slot, or (all busy) the first one once it is free.
    fn take_slot(&self) -> MutexGuard<'_, Vec<Block>> {
        for slot in &self.slots {
            match slot.try_lock() {
                Ok(guard) => return guard,
                Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.slots[0].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `hash` on `count` blocks of reused memory (holding whatever the
    /// last hash left: Argon2 writes every block before it reads it).
    /// Blocks the calling thread while every slot is in use: call it off
    /// the async workers.
    pub(super) fn with_blocks<R>(&self, count: usize, hash: impl FnOnce(&mut [Block]) -> R) -> R {
        let mut memory = self.take_slot();
        if memory.len() < count {
            memory.resize(count, Block::default());
        }
        hash(&mut memory[..count])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hash_after_another_reuses_the_same_memory() {
        let memory = WorkMemory::new(1);
        let first = memory.with_blocks(16, |blocks| blocks.as_ptr());
        let second = memory.with_blocks(8, |blocks| {
            assert_eq!(blocks.len(), 8);
            blocks.as_ptr()
        });
        assert_eq!(first, second);
    }

    #[test]
    fn hashes_at_once_get_memory_of_their_own() {
        let memory = WorkMemory::new(2);
        memory.with_blocks(4, |outer| {
            memory.with_blocks(4, |inner| assert_ne!(outer.as_ptr(), inner.as_ptr()));
        });
    }

    #[test]
    fn a_slot_keeps_the_size_of_its_costliest_hash() {
        let memory = WorkMemory::new(1);
        memory.with_blocks(32, |blocks| assert_eq!(blocks.len(), 32));
        memory.with_blocks(8, |blocks| assert_eq!(blocks.len(), 8));
        assert_eq!(memory.slots[0].lock().unwrap().len(), 32);
    }
}
