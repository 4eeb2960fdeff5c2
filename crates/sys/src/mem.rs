//! Memory: locking it, making it present, anonymous mappings, allocator tuning.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

/// Lock all of the process's memory, present and future (`mlockall(MCL_CURRENT |
/// MCL_FUTURE)`).
pub fn lock_all() -> io::Result<()> {
    use rustix::mm::MlockAllFlags;
    rustix::mm::mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE).map_err(io::Error::from)
}

/// Lock (and so make present) the memory mapped now, not what comes later
/// (`mlockall(MCL_CURRENT)`).
pub fn lock_all_now() -> io::Result<()> {
    rustix::mm::mlockall(rustix::mm::MlockAllFlags::CURRENT).map_err(io::Error::from)
}

/// Undo [`lock_all`].
pub fn unlock_all() -> io::Result<()> {
    rustix::mm::munlockall().map_err(io::Error::from)
}

/// Lock the pages of `v` (best effort: without the privilege, they stay unlocked).
pub fn lock<T>(v: &[T]) {
    // SAFETY: mlock only reads the address range, which is a live allocation of exactly
    // size_of_val(v) bytes.
    unsafe { libc::mlock(v.as_ptr().cast(), std::mem::size_of_val(v)) };
}

/// Set every element of `v` to `value` with volatile writes, so that each page is
/// written (and so present and private) even where the optimiser sees no reader.
pub fn fill_volatile<T: Copy>(v: &mut [T], value: T) {
    for x in v.iter_mut() {
        // SAFETY: `x` is a valid, exclusively borrowed T.
        unsafe { std::ptr::write_volatile(x, value) };
    }
}

/// Tune glibc's allocator for threads that must not fault: one arena (no per-thread arena
/// created in the middle of a measurement), large blocks from the heap rather than fresh
/// mappings, and no trimming (no `madvise` or `munmap` behind the program's back).
pub fn keep_allocations_mapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; every value is within its range.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

/// A private anonymous mapping, unmapped when dropped: memory whose pages a test or a
/// disturbance can fault in, write, and unmap (which sends TLB shootdowns to the CPUs
/// where the process's threads ran).
#[derive(Debug)]
pub struct Mapping {
    addr: usize,
    len: usize,
    writable: bool,
}

impl Mapping {
    /// `len` bytes (rounded up to pages by the kernel), readable and writable, not yet
    /// present.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh private anonymous mapping; it overlaps nothing the program uses.
        let p = unsafe {
            rustix::mm::mmap_anonymous(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                rustix::mm::MapFlags::PRIVATE,
            )
        }
        .map_err(io::Error::from)?;
        Ok(Mapping {
            addr: p as usize,
            len,
            writable: true,
        })
    }

    /// A private, read-only mapping of the first `len` bytes of `file`, not yet present:
    /// its first read of each page is a page fault that reads the file.
    pub fn of_file(file: &std::fs::File, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh private read-only mapping of an open file; it overlaps nothing
        // the program uses, and changes to the file are not written through it.
        let p = unsafe {
            rustix::mm::mmap(
                std::ptr::null_mut(),
                len,
                rustix::mm::ProtFlags::READ,
                rustix::mm::MapFlags::PRIVATE,
                file,
                0,
            )
        }
        .map_err(io::Error::from)?;
        Ok(Mapping {
            addr: p as usize,
            len,
            writable: false,
        })
    }

    /// Its address.
    pub fn addr(&self) -> usize {
        self.addr
    }

    /// Its length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write `value` at byte `offset` (a write fault when its page is not present yet).
    pub fn write(&self, offset: usize, value: u8) {
        assert!(offset < self.len, "offset {offset} outside the mapping");
        assert!(self.writable, "a read-only mapping");
        // SAFETY: in bounds of our own live mapping, as an atomic byte (other threads may
        // write the same byte; no reference into the mapping outlives the call).
        unsafe { (*((self.addr + offset) as *const AtomicU8)).store(value, Ordering::Relaxed) };
    }

    /// Read the byte at `offset` (a read fault when its page is not present yet).
    pub fn read(&self, offset: usize) -> u8 {
        assert!(offset < self.len, "offset {offset} outside the mapping");
        // SAFETY: as in `write`.
        unsafe { (*((self.addr + offset) as *const AtomicU8)).load(Ordering::Relaxed) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once; no reference into it outlives `self`.
        let _ = unsafe { rustix::mm::munmap(self.addr as *mut _, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapping_is_written_read_and_unmapped() {
        let m = Mapping::anonymous(3 * 4096).unwrap();
        assert_eq!(m.read(4096), 0);
        m.write(4096, 7);
        assert_eq!(m.read(4096), 7);
        let mut v = vec![1u64; 1000];
        fill_volatile(&mut v, 0);
        lock(&v);
        assert!(v.iter().all(|&x| x == 0));
    }
}
