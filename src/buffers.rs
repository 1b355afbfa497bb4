//! Large byte buffers reused from one response to the next.
//!
//! Every response in flight needs a few buffers of up to a quarter megabyte (decoded base64, a
//! direct-I/O staging block, the head of an image). Allocated afresh per response, each was page
//! faults and zeroing every time, and churn across glibc's per-thread arenas (which keep freed
//! memory instead of returning it). Kept in a pool, they are allocated once per response in
//! flight and live for the run. On their own they changed a long run's peak little (the short
//! receive jobs and the capped blocking pool did that, see ARCHITECTURE.md); they keep the
//! per-response allocations out of the allocator.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Spare buffers, kept up to a count (one per response in flight at the usual `-j`).
#[derive(Debug)]
pub struct BufferPool {
    spares: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl BufferPool {
    pub const fn new(keep: usize) -> BufferPool {
        BufferPool { spares: Mutex::new(Vec::new()), keep }
    }

    /// A spare buffer as it was given back (its length too: callers that only overwrite can
    /// skip zeroing it again), or a new empty one; it goes back to the pool when dropped.
    pub fn take(&'static self) -> Pooled {
        let buffer = self.spares.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        Pooled { buffer, pool: self }
    }

    fn give(&self, buffer: Vec<u8>) {
        if buffer.capacity() == 0 {
            return;
        }
        let mut spares = self.spares.lock().unwrap_or_else(|e| e.into_inner());
        if spares.len() < self.keep {
            spares.push(buffer);
        }
    }
}

/// A buffer of a [`BufferPool`], given back when dropped.
#[derive(Debug)]
pub struct Pooled {
    buffer: Vec<u8>,
    pool: &'static BufferPool,
}

impl Deref for Pooled {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buffer
    }
}

impl DerefMut for Pooled {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_buffer_comes_back_with_its_allocation() {
        static POOL: BufferPool = BufferPool::new(1);
        let mut buffer = POOL.take();
        assert_eq!(buffer.capacity(), 0);
        buffer.resize(1000, 7);
        let address = buffer.as_ptr();
        drop(buffer);
        let again = POOL.take();
        assert_eq!((again.as_ptr(), again.len()), (address, 1000));
    }

    #[test]
    fn keeps_at_most_its_count() {
        static POOL: BufferPool = BufferPool::new(1);
        let (mut one, mut two) = (POOL.take(), POOL.take());
        one.push(1);
        two.push(2);
        drop(one);
        drop(two);
        let kept = POOL.take();
        assert_eq!(*kept, vec![1]);
        assert!(POOL.take().is_empty(), "the second buffer was not kept");
    }
}
