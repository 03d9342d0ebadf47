//! File-backed EEPROM: a device's or client's persistent storage (its nonce records)
//! as a file, shared safely by every process that uses it.
//!
//! * Several processes may use one file at once (four `zepto send` with one key):
//!   [`Storage::lock`] takes an exclusive advisory lock (`flock`) on a lock file
//!   beside it and re-reads the file, so the nonce store's read-modify-write sees
//!   what the others wrote; [`Storage::unlock`] releases it. The lock is always on
//!   the lock file at the path *now*: one deleted while in use is made again, so
//!   every process still locks the same file.
//! * A write is atomic: [`Storage::flush`] writes a temporary file, syncs it,
//!   renames it over the state file and syncs the folder, so a power cut leaves the
//!   old file or the new one, never an empty or half-written one.
//!
//! A missing or empty file reads as erased EEPROM (0xFF): the nonce store then
//! starts its records as the port's blank-start policy says (`docs/security.md`).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use zepto_kernel::hal::Storage;
use zepto_kernel::Error;

/// Size of the simulated EEPROM, in bytes.
pub const EEPROM_SIZE: usize = 1024;

/// Write granularity of the simulated EEPROM (32-bit words, as on many MCUs).
pub const EEPROM_GRANULARITY: usize = 4;

/// What [`FileStorage::open`] found at the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// No file: a new state.
    Missing,
    /// A file of 0 bytes (truncated): read as erased.
    Empty,
    /// A state file of the right size.
    Present,
    /// Kept in memory only.
    Memory,
}

/// The file behind a [`FileStorage`] and its lock.
#[derive(Debug)]
struct Backing {
    path: PathBuf,
    lock: File,
}

/// An EEPROM image kept in memory and written through to a file (if any).
#[derive(Debug)]
pub struct FileStorage {
    data: Vec<u8>,
    file: Option<Backing>,
    /// Physical writes made (in granules).
    pub writes: u64,
    /// What the last read of the file found (at open, and at every
    /// [`Storage::lock`]): the file may be deleted or emptied meanwhile.
    pub found: Found,
    /// Why the last read or write of the file failed (the nonce store only sees
    /// `Error::Storage`): the path and the system's reason, e.g. no space left.
    pub failure: Option<String>,
}

/// The lock file of state file `path`: `path` with `.lock` added.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Reads the state file at `path` into an image; a missing or empty file is erased
/// EEPROM. A file of another size is not a state file.
fn read_image(path: &Path) -> io::Result<(Vec<u8>, Found)> {
    let mut data = vec![0xff; EEPROM_SIZE];
    match std::fs::read(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((data, Found::Missing)),
        Err(e) => Err(e),
        Ok(bytes) if bytes.is_empty() => Ok((data, Found::Empty)),
        Ok(bytes) if bytes.len() == EEPROM_SIZE => {
            data.copy_from_slice(&bytes);
            Ok((data, Found::Present))
        }
        Ok(bytes) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "not a Zepto state file ({} bytes, expected {EEPROM_SIZE})",
                bytes.len()
            ),
        )),
    }
}

impl FileStorage {
    /// Opens the EEPROM image at `path` (the file need not exist yet: it is written
    /// at the first flush). Creates the lock file beside it.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut backing = Backing {
            path: path.to_path_buf(),
            lock: open_lock(path)?,
        };
        lock_current(&mut backing)?;
        let read = read_image(path);
        backing.lock.unlock()?;
        let (data, found) = read?;
        Ok(Self {
            data,
            file: Some(backing),
            writes: 0,
            found,
            failure: None,
        })
    }

    /// An erased EEPROM that lives only in memory.
    pub fn in_memory() -> Self {
        Self {
            data: vec![0xff; EEPROM_SIZE],
            file: None,
            writes: 0,
            found: Found::Memory,
            failure: None,
        }
    }

    /// The state file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|b| b.path.as_path())
    }
}

/// Replaces `path` with `data` atomically: temporary file, sync, rename, sync of
/// the folder. A temporary file that cannot be finished (no space left) is removed.
fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = File::create(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Opens (creating it if needed) the lock file of state file `path`.
fn open_lock(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(path))
}

/// Takes the exclusive lock on the lock file that is at the lock path *now*. A lock
/// file deleted (or replaced) while this process held it open would lock a file no
/// newcomer can find: then the file at the path is opened and locked instead.
fn lock_current(b: &mut Backing) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    loop {
        b.lock.lock()?;
        let held = b.lock.metadata()?;
        match std::fs::metadata(lock_path(&b.path)) {
            Ok(m) if m.dev() == held.dev() && m.ino() == held.ino() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                let _ = b.lock.unlock();
                return Err(e);
            }
        }
        b.lock.unlock()?;
        b.lock = open_lock(&b.path)?;
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
        self.writes += data.len().div_ceil(EEPROM_GRANULARITY) as u64;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        let Some(b) = &self.file else {
            return Ok(());
        };
        replace_file(&b.path, &self.data).map_err(|e| {
            self.failure = Some(format!("cannot write {}: {e}", b.path.display()));
            Error::Storage
        })
    }

    fn lock(&mut self) -> Result<(), Error> {
        let Some(b) = &mut self.file else {
            return Ok(());
        };
        if let Err(e) = lock_current(b) {
            self.failure = Some(format!("cannot lock {}: {e}", lock_path(&b.path).display()));
            return Err(Error::Storage);
        }
        match read_image(&b.path) {
            Ok((data, found)) => {
                self.data = data;
                self.found = found;
                Ok(())
            }
            Err(e) => {
                let _ = b.lock.unlock();
                self.failure = Some(format!("cannot read {}: {e}", b.path.display()));
                Err(Error::Storage)
            }
        }
    }

    fn unlock(&mut self) {
        if let Some(b) = &self.file {
            let _ = b.lock.unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_writes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dev.state");
        {
            let mut s = FileStorage::open(&path).unwrap();
            assert_eq!(s.found, Found::Missing);
            assert!(!path.exists(), "nothing is written before a flush");
            let mut b = [0u8; 4];
            s.read(0, &mut b).unwrap();
            assert_eq!(b, [0xff; 4]);
            s.lock().unwrap();
            s.write(8, &[1, 2, 3, 4]).unwrap();
            s.flush().unwrap();
            s.unlock();
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), EEPROM_SIZE as u64);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains(".tmp")),
            "no temporary file left: {names:?}"
        );
        let mut s = FileStorage::open(&path).unwrap();
        assert_eq!(s.found, Found::Present);
        let mut b = [0u8; 4];
        s.read(8, &mut b).unwrap();
        assert_eq!(b, [1, 2, 3, 4]);
        assert_eq!(s.write(EEPROM_SIZE - 1, &[0, 0]), Err(Error::Storage));
        std::fs::write(&path, [0u8; 3]).unwrap();
        let e = FileStorage::open(&path).unwrap_err();
        assert!(e.to_string().contains("3 bytes"), "{e}");
        std::fs::write(&path, []).unwrap();
        assert_eq!(FileStorage::open(&path).unwrap().found, Found::Empty);
    }

    #[test]
    fn lock_reloads_what_another_opener_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.state");
        let mut a = FileStorage::open(&path).unwrap();
        let mut b = FileStorage::open(&path).unwrap();
        a.lock().unwrap();
        a.write(0, &[9, 9, 9, 9]).unwrap();
        a.flush().unwrap();
        a.unlock();
        let mut buf = [0u8; 4];
        b.read(0, &mut buf).unwrap();
        assert_eq!(buf, [0xff; 4], "b's view is stale until it locks");
        b.lock().unwrap();
        b.read(0, &mut buf).unwrap();
        b.unlock();
        assert_eq!(buf, [9; 4]);
    }

    #[test]
    fn a_lock_file_deleted_while_in_use_still_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        let mut a = FileStorage::open(&path).unwrap();
        // The folder is cleaned while A runs, and a newcomer makes a new lock file.
        std::fs::remove_file(lock_path(&path)).unwrap();
        let mut b = FileStorage::open(&path).unwrap();
        a.lock().unwrap();
        let other = File::open(lock_path(&path)).unwrap();
        assert!(
            other.try_lock().is_err(),
            "A holds a lock on a file nobody else can find"
        );
        a.unlock();
        b.lock().unwrap();
        assert!(File::open(lock_path(&path)).unwrap().try_lock().is_err());
        b.unlock();
    }

    #[test]
    fn found_tells_what_the_last_read_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.state");
        std::fs::write(&path, vec![0xffu8; EEPROM_SIZE]).unwrap();
        let mut s = FileStorage::open(&path).unwrap();
        assert_eq!(s.found, Found::Present);
        std::fs::remove_file(&path).unwrap();
        s.lock().unwrap();
        s.unlock();
        assert_eq!(s.found, Found::Missing, "deleted after the open");
        std::fs::write(&path, []).unwrap();
        s.lock().unwrap();
        s.unlock();
        assert_eq!(s.found, Found::Empty);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.state");
        let mut s = FileStorage::open(&path).unwrap();
        // The rename onto the state file fails (a folder is in the way); space
        // running out fails the same way, after the temporary file was made.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), b"x").unwrap();
        s.write(0, &[1, 2, 3, 4]).unwrap();
        assert_eq!(s.flush(), Err(Error::Storage));
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["w.state", "w.state.lock"]);
        let why = s.failure.clone().unwrap();
        assert!(
            why.starts_with("cannot write ") && why.contains("w.state"),
            "{why}"
        );
    }

    #[test]
    fn the_lock_is_exclusive_between_openers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.state");
        let mut a = FileStorage::open(&path).unwrap();
        a.lock().unwrap();
        let other = File::open(lock_path(&path)).unwrap();
        assert!(other.try_lock().is_err(), "a second lock must wait");
        a.unlock();
        other.try_lock().unwrap();
    }
}
