//! Files that hold secrets (generated keys): one way to write them, so every such file is
//! created owner-only, never replaces another, and is on disk before it is used.

use std::io::Write;
use std::path::Path;

/// Creates `path` readable and writable by its owner alone (mode 0600 on unix), writes `data`
/// and syncs it to disk. Refuses to overwrite: an existing file (another instance's key, an
/// operator's file) is an `AlreadyExists` error, never replaced.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_owner_only_and_refuses_to_overwrite() {
        let dir = std::env::temp_dir().join(format!("edge-idp-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret");
        let _ = std::fs::remove_file(&path);
        write_private(&path, b"one").unwrap();
        let err = write_private(&path, b"two").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
