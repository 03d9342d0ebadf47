//! File-backed EEPROM: the device's persistent storage (nonce counters) as a file,
//! so that state survives restarts of the simulated device.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use zepto_kernel::hal::Storage;
use zepto_kernel::Error;

/// Size of the simulated EEPROM, in bytes.
pub const EEPROM_SIZE: usize = 1024;

/// Write granularity of the simulated EEPROM (32-bit words, as on many MCUs).
pub const EEPROM_GRANULARITY: usize = 4;

/// An EEPROM image kept in memory and written through to a file (if any).
#[derive(Debug)]
pub struct FileStorage {
    data: Vec<u8>,
    file: Option<File>,
    /// Physical writes made (in granules).
    pub writes: u64,
}

impl FileStorage {
    /// Opens (or creates, erased to 0xFF) the EEPROM image at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut data = vec![0xff; EEPROM_SIZE];
        let len = file.metadata()?.len() as usize;
        if len == 0 {
            file.write_all_at(&data, 0)?;
            file.sync_data()?;
        } else if len != EEPROM_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: not a Zepto state file ({len} bytes, expected {EEPROM_SIZE})",
                    path.display()
                ),
            ));
        } else {
            file.read_exact_at(&mut data, 0)?;
        }
        Ok(Self {
            data,
            file: Some(file),
            writes: 0,
        })
    }

    /// An erased EEPROM that lives only in memory.
    pub fn in_memory() -> Self {
        Self {
            data: vec![0xff; EEPROM_SIZE],
            file: None,
            writes: 0,
        }
    }
}

impl Storage for FileStorage {
    fn size(&self) -> usize {
        self.data.len()
    }

    fn write_granularity(&self) -> usize {
        EEPROM_GRANULARITY
    }

    fn read(&mut self, addr: usize, buf: &mut [u8]) -> Result<(), Error> {
        let end = addr.checked_add(buf.len()).ok_or(Error::Storage)?;
        buf.copy_from_slice(self.data.get(addr..end).ok_or(Error::Storage)?);
        Ok(())
    }

    fn write(&mut self, addr: usize, data: &[u8]) -> Result<(), Error> {
        let end = addr.checked_add(data.len()).ok_or(Error::Storage)?;
        self.data
            .get_mut(addr..end)
            .ok_or(Error::Storage)?
            .copy_from_slice(data);
        if let Some(f) = &self.file {
            f.write_all_at(data, addr as u64)
                .map_err(|_| Error::Storage)?;
        }
        self.writes += data.len().div_ceil(EEPROM_GRANULARITY) as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        if let Some(f) = &self.file {
            f.sync_data().map_err(|_| Error::Storage)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.state");
        {
            let mut s = FileStorage::open(&path).unwrap();
            let mut b = [0u8; 4];
            s.read(0, &mut b).unwrap();
            assert_eq!(b, [0xff; 4]);
            s.write(8, &[1, 2, 3, 4]).unwrap();
            s.flush().unwrap();
        }
        let mut s = FileStorage::open(&path).unwrap();
        let mut b = [0u8; 4];
        s.read(8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(s.write(EEPROM_SIZE - 1, &[0, 0]), Err(Error::Storage));
        std::fs::write(&path, [0u8; 3]).unwrap();
        assert!(FileStorage::open(&path).is_err());
    }
}
