//! The key of the embedded SQLite databases, in one place for every crate that opens
//! one (saga-core's runtime store, activities' order store). With a key, SQLCipher
//! encrypts every page of the database and of its WAL; without one it does no
//! encryption work at all, so an unencrypted data dir costs what plain SQLite does.
//!
//! The key is 64 hex characters: a raw 256-bit key, used as is. A passphrase would go
//! through PBKDF2 (256,000 rounds) at every connection's open, and the stores open
//! connections as they need them; a random key also has no weak passphrase to guess.

use rusqlite::{Connection, ErrorCode};
use std::fmt;
use std::path::Path;

/// The environment variable holding the key itself.
pub const KEY_ENV: &str = "OMS_DB_KEY";
/// The environment variable naming a file that holds the key.
pub const KEY_FILE_ENV: &str = "OMS_DB_KEY_FILE";

const KEY_HEX_CHARS: usize = 64;
/// What an unencrypted SQLite database begins with.
const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A database key and where it came from (errors name the source, never the key).
#[derive(Clone, PartialEq, Eq)]
pub struct DbKey {
    hex: String,
    source: String,
}

/// Redacted: a key must not reach a log through `{:?}`.
impl fmt::Debug for DbKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbKey")
            .field("source", &self.source)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl DbKey {
    /// `text` is the key; `source` says where it came from ("OMS_DB_KEY", "the key file
    /// PATH"). Surrounding whitespace (a key file's newline) is ignored.
    pub fn parse(text: &str, source: &str) -> Result<DbKey, String> {
        let hex = text.trim();
        if hex.len() != KEY_HEX_CHARS || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            // The length only: the text may be a real secret in the wrong format.
            return Err(format!(
                "{source}: the database key must be {KEY_HEX_CHARS} hex characters (a 256-bit key, made with e.g. `openssl rand -hex 32`), not {} characters{}",
                hex.chars().count(),
                if hex.len() == KEY_HEX_CHARS { " that are not all hex digits" } else { "" }
            ));
        }
        Ok(DbKey {
            hex: hex.to_ascii_lowercase(),
            source: source.to_string(),
        })
    }

    /// Reads a key file. One that other users may read or write is refused, not just
    /// warned about: it would give the key to the very users the encryption is meant to
    /// keep out, and a warning scrolls by unread. Its group may read it (a secret
    /// mounted 0440 for a service's group).
    pub fn from_file(path: &Path) -> Result<DbKey, String> {
        use std::os::unix::fs::PermissionsExt;
        let source = format!("the key file {}", path.display());
        let meta = std::fs::metadata(path).map_err(|e| format!("{source}: {e}"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(format!(
                "{source} is open to other users (mode {mode:o}): `chmod 600 {}` (or 640)",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{source}: {e}"))?;
        DbKey::parse(&text, &source)
    }

    /// Where the key came from, for messages.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// The key configured for this process: `OMS_DB_KEY`, or the key file `key_file`.
/// Both at once is refused (which should win is a guess); neither means no encryption.
/// An empty `OMS_DB_KEY` is an error, not "no key": an unset secret expanding to
/// nothing must not silently create an unencrypted data dir.
pub fn configured(key_file: Option<&Path>) -> Result<Option<DbKey>, String> {
    let from_env = match std::env::var(KEY_ENV) {
        Ok(text) => Some(DbKey::parse(&text, KEY_ENV)?),
        Err(std::env::VarError::NotPresent) => None,
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!("{KEY_ENV}: the database key must be {KEY_HEX_CHARS} hex characters, not non-UTF-8 bytes"))
        }
    };
    match (from_env, key_file) {
        (Some(_), Some(file)) => Err(format!(
            "the database key is given twice, by {KEY_ENV} and by the key file {}: give one",
            file.display()
        )),
        (Some(key), None) => Ok(Some(key)),
        (None, Some(file)) => DbKey::from_file(file).map(Some),
        (None, None) => Ok(None),
    }
}

/// The key the environment alone configures (`OMS_DB_KEY` or `OMS_DB_KEY_FILE`), for
/// processes without flags or oms.toml: the Lambda binaries, `oms worker`.
pub fn from_env() -> Result<Option<DbKey>, String> {
    let file = std::env::var_os(KEY_FILE_ENV).map(std::path::PathBuf::from);
    configured(file.as_deref())
}

/// Unlocks a freshly opened connection to the database at `path`: `PRAGMA key` as its
/// first statement, then a read, because SQLCipher checks the key only when it first
/// reads a page. A key that does not fit the file (wrong key, a key for an unencrypted
/// file, no key for an encrypted one) is reported here, naming the file and the key's
/// source, instead of at the first request.
pub fn unlock(conn: &Connection, path: &Path, key: Option<&DbKey>) -> Result<(), String> {
    if let Some(key) = key {
        // `x'...'`: the raw key, no passphrase derivation. The hex was checked, so
        // the statement cannot be anything but this pragma.
        conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", key.hex))
            .map_err(|e| {
                format!(
                    "cannot apply the key from {} to {}: {e}",
                    key.source,
                    path.display()
                )
            })?;
    }
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())) {
        Ok(()) => Ok(()),
        Err(rusqlite::Error::SqliteFailure(f, _)) if f.code == ErrorCode::NotADatabase => {
            Err(key_mismatch(path, key))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Why SQLite called `path` "not a database": told apart by the file's first bytes.
fn key_mismatch(path: &Path, key: Option<&DbKey>) -> String {
    let plain = std::fs::read(path).is_ok_and(|bytes| bytes.starts_with(PLAIN_HEADER));
    let file = path.display();
    match (key, plain) {
        (Some(key), true) => format!(
            "{file} is not encrypted but a key was given ({}): start without the key, or move the data dir aside to start an encrypted one (docs/security.md)",
            key.source
        ),
        (Some(key), false) => format!(
            "{file} is encrypted and the key from {} does not open it (or it is not a database)",
            key.source
        ),
        (None, _) => format!(
            "{file} is encrypted or is not a database: if encrypted, give its key with {KEY_ENV} or a key file (docs/security.md)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("oms-dbkey-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn open(path: &Path, key: Option<&DbKey>) -> Result<Connection, String> {
        let conn = Connection::open(path).unwrap();
        unlock(&conn, path, key).map(|()| conn)
    }

    #[test]
    fn a_key_must_be_64_hex_characters_and_the_error_names_source_and_rule() {
        assert!(DbKey::parse(&format!("{KEY}\n"), KEY_ENV).is_ok());
        for bad in [
            "",
            "secret passphrase",
            &KEY[..63],
            &format!("{}g", &KEY[..63]),
        ] {
            let err = DbKey::parse(bad, KEY_ENV).unwrap_err();
            assert!(err.starts_with("OMS_DB_KEY: "), "{err}");
            assert!(err.contains("64 hex characters"), "{err}");
            assert!(
                bad.is_empty() || !err.contains(bad),
                "the key leaked: {err}"
            );
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let shown = format!("{:?}", DbKey::parse(KEY, KEY_ENV).unwrap());
        assert!(
            !shown.contains(KEY) && shown.contains("OMS_DB_KEY"),
            "{shown}"
        );
    }

    #[test]
    fn a_key_file_open_to_other_users_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let file = temp_dir("file").join("key");
        std::fs::write(&file, KEY).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = DbKey::from_file(&file).unwrap_err();
        assert!(
            err.contains("open to other users") && err.contains("644"),
            "{err}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(DbKey::from_file(&file).unwrap().hex, KEY);
    }

    #[test]
    fn an_encrypted_database_opens_with_its_key_only_and_holds_no_plaintext() {
        let path = temp_dir("roundtrip").join("db.sqlite3");
        let key = DbKey::parse(KEY, KEY_ENV).unwrap();
        let conn = open(&path, Some(&key)).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE t (v TEXT); INSERT INTO t VALUES ('Ada Lovelace');",
        )
        .unwrap();
        drop(conn);
        let on_disk = std::fs::read(&path).unwrap();
        assert!(!on_disk.windows(12).any(|w| w == b"Ada Lovelace"));
        assert!(!on_disk.starts_with(PLAIN_HEADER));

        let conn = open(&path, Some(&key)).unwrap();
        let v: String = conn.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(v, "Ada Lovelace");
        drop(conn);

        let other = DbKey::parse(&KEY.replace('0', "1"), "the key file /k").unwrap();
        let err = open(&path, Some(&other)).unwrap_err();
        assert!(
            err.contains("is encrypted and the key from the key file /k does not open it"),
            "{err}"
        );
        let err = open(&path, None).unwrap_err();
        assert!(
            err.contains("is encrypted or is not a database") && err.contains(KEY_ENV),
            "{err}"
        );
    }

    #[test]
    fn a_key_for_an_unencrypted_database_is_reported() {
        let path = temp_dir("plain").join("db.sqlite3");
        open(&path, None)
            .unwrap()
            .execute_batch("CREATE TABLE t (v TEXT)")
            .unwrap();
        let key = DbKey::parse(KEY, KEY_ENV).unwrap();
        let err = open(&path, Some(&key)).unwrap_err();
        assert!(
            err.contains("is not encrypted but a key was given (OMS_DB_KEY)"),
            "{err}"
        );
    }
}
