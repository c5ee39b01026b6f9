//! One file's page cache as a power cut sees it: what was written since the file's
//! last sync lives here, in memory, and reaches the disk only when the file is synced.
//! Reads see it, as reads see the kernel's page cache. Pure logic over a [`Backing`]
//! (the real file), so it is tested without SQLite.

use std::collections::BTreeMap;

/// The unit the cache keeps: a write dirties every block it touches, read whole from
/// the disk first. SQLite's pages are 4 KiB, so most writes are whole blocks.
pub const BLOCK_BYTES: u64 = 4096;

/// A power cut tears a write at a sector boundary: whole 512-byte sectors land or not.
pub const SECTOR_BYTES: usize = 512;

/// The file under the cache.
pub trait Backing {
    type Error;
    /// Reads at `offset`; bytes past the end of the file read as zeros.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Self::Error>;
    fn size_bytes(&mut self) -> Result<u64, Self::Error>;
    fn set_size(&mut self, len: u64) -> Result<(), Self::Error>;
}

/// What was written to one file and not yet synced.
#[derive(Debug)]
pub struct Overlay {
    /// The file's size as its readers see it.
    size_bytes: u64,
    /// Below this offset, a block not in `dirty` is as on the disk; at or past it the
    /// file was truncated since the last sync, and reads zeros. Never above `size_bytes`.
    kept_bytes: u64,
    /// Block index -> the block's contents, as written.
    dirty: BTreeMap<u64, Box<[u8]>>,
}

/// One write that lands on the disk at a power cut.
#[derive(Debug, PartialEq, Eq)]
pub struct Landed {
    pub offset: u64,
    pub data: Vec<u8>,
}

impl Overlay {
    /// The cache of a file whose disk copy is `disk_len` bytes and all synced.
    pub fn new(disk_len: u64) -> Overlay {
        Overlay {
            size_bytes: disk_len,
            kept_bytes: disk_len,
            dirty: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> u64 {
        self.size_bytes
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// Nothing written since the last sync.
    pub fn is_clean(&self) -> bool {
        self.dirty.is_empty() && self.kept_bytes == self.size_bytes
    }

    /// Fills `buf` from `offset`; returns whether the read went past the end of the
    /// file (the rest of `buf` is zeros, as SQLite's xRead requires).
    pub fn read<B: Backing>(
        &self,
        disk: &mut B,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<bool, B::Error> {
        buf.fill(0);
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        while pos < end.min(self.size_bytes) {
            let (block, within) = (pos / BLOCK_BYTES, (pos % BLOCK_BYTES) as usize);
            let n = (BLOCK_BYTES - within as u64).min(end - pos) as usize;
            let dst = &mut buf[(pos - offset) as usize..][..n];
            if let Some(data) = self.dirty.get(&block) {
                dst.copy_from_slice(&data[within..within + n]);
            } else if pos < self.kept_bytes {
                let from_disk = (self.kept_bytes - pos).min(n as u64) as usize;
                disk.read_at(pos, &mut dst[..from_disk])?;
            }
            pos += n as u64;
        }
        if end > self.size_bytes {
            let valid = self.size_bytes.saturating_sub(offset) as usize;
            buf[valid..].fill(0);
            return Ok(true);
        }
        Ok(false)
    }

    /// Keeps `data` at `offset` until the next sync; the disk is only read.
    pub fn write<B: Backing>(
        &mut self,
        disk: &mut B,
        offset: u64,
        data: &[u8],
    ) -> Result<(), B::Error> {
        let end = offset + data.len() as u64;
        let mut pos = offset;
        while pos < end {
            let (block, within) = (pos / BLOCK_BYTES, (pos % BLOCK_BYTES) as usize);
            let n = (BLOCK_BYTES - within as u64).min(end - pos) as usize;
            if !self.dirty.contains_key(&block) {
                let loaded = self.load(disk, block)?;
                self.dirty.insert(block, loaded);
            }
            let dst = self.dirty.get_mut(&block).expect("inserted above");
            dst[within..within + n].copy_from_slice(&data[(pos - offset) as usize..][..n]);
            pos += n as u64;
        }
        self.size_bytes = self.size_bytes.max(end);
        Ok(())
    }

    /// A block as the file holds it now, before a write to part of it.
    fn load<B: Backing>(&self, disk: &mut B, block: u64) -> Result<Box<[u8]>, B::Error> {
        let mut data = vec![0u8; BLOCK_BYTES as usize].into_boxed_slice();
        let start = block * BLOCK_BYTES;
        if start < self.kept_bytes {
            let from_disk = (self.kept_bytes - start).min(BLOCK_BYTES) as usize;
            disk.read_at(start, &mut data[..from_disk])?;
        }
        Ok(data)
    }

    /// Sets the size until the next sync; a later growth reads zeros.
    pub fn truncate(&mut self, size_bytes: u64) {
        self.dirty
            .retain(|&block, _| block * BLOCK_BYTES < size_bytes);
        if let Some(data) = self.dirty.get_mut(&(size_bytes / BLOCK_BYTES)) {
            data[(size_bytes % BLOCK_BYTES) as usize..].fill(0);
        }
        self.size_bytes = size_bytes;
        self.kept_bytes = self.kept_bytes.min(size_bytes);
    }

    /// Puts everything on the disk (the caller then syncs it): the truncation first,
    /// then the blocks, then the size. On an error the cache is kept whole, so the
    /// next sync writes it all again.
    pub fn flush<B: Backing>(&mut self, disk: &mut B) -> Result<(), B::Error> {
        if disk.size_bytes()? > self.kept_bytes {
            disk.set_size(self.kept_bytes)?;
        }
        for (&block, data) in &self.dirty {
            let start = block * BLOCK_BYTES;
            let n = (self.size_bytes - start).min(BLOCK_BYTES) as usize;
            disk.write_at(start, &data[..n])?;
        }
        if disk.size_bytes()? != self.size_bytes {
            disk.set_size(self.size_bytes)?;
        }
        self.dirty.clear();
        self.kept_bytes = self.size_bytes;
        Ok(())
    }

    /// What of the unsynced blocks a power cut lets through: each one or not, as `rng`
    /// says, and one of those torn after a random number of whole sectors. A disk may
    /// write back any part of its cache, in any order, before the power goes.
    pub fn landed(&self, rng: &mut fastrand::Rng) -> Vec<Landed> {
        let mut landed: Vec<Landed> = self
            .dirty
            .iter()
            .filter(|_| rng.bool())
            .map(|(&block, data)| {
                let start = block * BLOCK_BYTES;
                let n = (self.size_bytes - start).min(BLOCK_BYTES) as usize;
                Landed {
                    offset: start,
                    data: data[..n].to_vec(),
                }
            })
            .collect();
        if !landed.is_empty() {
            let torn = rng.usize(..landed.len());
            let sectors = landed[torn].data.len().div_ceil(SECTOR_BYTES);
            let keep = (rng.usize(..sectors) * SECTOR_BYTES).min(landed[torn].data.len());
            landed[torn].data.truncate(keep);
        }
        landed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// A file as a vector of bytes.
    #[derive(Default)]
    struct Disk(Vec<u8>);

    impl Backing for Disk {
        type Error = Infallible;
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), Infallible> {
            buf.fill(0);
            let from = (offset as usize).min(self.0.len());
            let n = (self.0.len() - from).min(buf.len());
            buf[..n].copy_from_slice(&self.0[from..from + n]);
            Ok(())
        }
        fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Infallible> {
            let end = offset as usize + data.len();
            if self.0.len() < end {
                self.0.resize(end, 0);
            }
            self.0[offset as usize..end].copy_from_slice(data);
            Ok(())
        }
        fn size_bytes(&mut self) -> Result<u64, Infallible> {
            Ok(self.0.len() as u64)
        }
        fn set_size(&mut self, len: u64) -> Result<(), Infallible> {
            self.0.resize(len as usize, 0);
            Ok(())
        }
    }

    fn read_all(o: &Overlay, disk: &mut Disk) -> Vec<u8> {
        let mut buf = vec![0; o.len() as usize];
        let Ok(short) = o.read(disk, 0, &mut buf);
        assert!(!short);
        buf
    }

    #[test]
    fn writes_are_read_back_and_reach_the_disk_only_when_flushed() {
        let mut disk = Disk(vec![1; 5000]);
        let mut o = Overlay::new(5000);
        let Ok(()) = o.write(&mut disk, 4090, &[9; 20]);
        assert_eq!(
            disk.0,
            vec![1; 5000],
            "nothing reaches the disk before a sync"
        );
        let mut want = vec![1u8; 5000];
        want[4090..4110].fill(9);
        assert_eq!(read_all(&o, &mut disk), want);
        assert!(!o.is_clean());
        let Ok(()) = o.flush(&mut disk);
        assert_eq!(disk.0, want);
        assert!(o.is_clean());
    }

    #[test]
    fn a_read_past_the_end_is_short_and_zero_filled() {
        let mut disk = Disk(vec![7; 10]);
        let mut o = Overlay::new(10);
        let Ok(()) = o.write(&mut disk, 10, &[8; 2]);
        let mut buf = [5u8; 16];
        let Ok(short) = o.read(&mut disk, 4, &mut buf);
        assert!(short);
        assert_eq!(&buf, &[7, 7, 7, 7, 7, 7, 8, 8, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_truncated_file_grown_again_reads_zeros_and_is_flushed_so() {
        let mut disk = Disk(vec![3; 9000]);
        let mut o = Overlay::new(9000);
        o.truncate(100);
        assert_eq!(o.len(), 100);
        let Ok(()) = o.write(&mut disk, 8000, &[4; 10]);
        let mut want = vec![0u8; 8010];
        want[..100].fill(3);
        want[8000..].fill(4);
        assert_eq!(read_all(&o, &mut disk), want);
        assert_eq!(
            disk.0,
            vec![3; 9000],
            "the truncation waits for the sync too"
        );
        let Ok(()) = o.flush(&mut disk);
        assert_eq!(disk.0, want);
    }

    #[test]
    fn a_truncation_then_a_write_of_the_same_block_keeps_no_stale_bytes() {
        let mut disk = Disk(vec![3; 4096]);
        let mut o = Overlay::new(4096);
        let Ok(()) = o.write(&mut disk, 0, &[5; 64]);
        o.truncate(32);
        let Ok(()) = o.write(&mut disk, 40, &[6; 8]);
        let mut want = vec![5u8; 48];
        want[32..40].fill(0);
        want[40..].fill(6);
        assert_eq!(read_all(&o, &mut disk), want);
        let Ok(()) = o.flush(&mut disk);
        assert_eq!(disk.0, want);
    }

    #[test]
    fn a_power_cut_lands_some_blocks_whole_and_tears_one_at_a_sector() {
        let mut disk = Disk::default();
        let mut o = Overlay::new(0);
        let Ok(()) = o.write(&mut disk, 0, &vec![1; 10 * BLOCK_BYTES as usize]);
        let mut rng = fastrand::Rng::with_seed(3);
        let landed = o.landed(&mut rng);
        assert!(!landed.is_empty() && landed.len() <= 10, "{}", landed.len());
        let torn: Vec<_> = landed
            .iter()
            .filter(|l| l.data.len() != BLOCK_BYTES as usize)
            .collect();
        assert_eq!(torn.len(), 1, "one write is torn");
        assert_eq!(torn[0].data.len() % SECTOR_BYTES, 0);
        let again = o.landed(&mut fastrand::Rng::with_seed(3));
        assert_eq!(landed, again, "the same seed, the same cut");
    }
}
