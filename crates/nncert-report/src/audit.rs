//! The audit trail: SHA-256 of files, the hash chain over evidence records, UTC timestamps, machine facts, and
//! Ed25519 signatures of a report folder.

use crate::error::ReportError;
use crate::evidence::{EvidenceFile, EvidenceRecord, Machine};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string, `None` if it is not hex of even length.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The hash of `record` chained to `prev`: SHA-256 of `prev`, a newline, and the record's JSON with `hash` set
/// to the empty string (serde_json writes fields in declaration order, so the bytes are reproducible).
pub fn record_hash(record: &EvidenceRecord, prev: &str) -> String {
    let mut r = record.clone();
    r.hash = String::new();
    r.prev_hash = prev.to_string();
    let json = serde_json::to_vec(&r).unwrap_or_default();
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(&json);
    hex(&h.finalize())
}

/// Sets `prev_hash` and `hash` of `record` to follow `prev`.
pub fn seal(record: &mut EvidenceRecord, prev: &str) {
    record.prev_hash = prev.to_string();
    record.hash = record_hash(record, prev);
}

/// Checks the chain of `records` from [`GENESIS`].
///
/// # Errors
/// A message naming the first record whose link or hash is wrong.
pub fn check_chain(records: &[EvidenceRecord]) -> Result<(), String> {
    let mut prev = GENESIS.to_string();
    for (i, r) in records.iter().enumerate() {
        if r.prev_hash != prev {
            return Err(format!(
                "record {i} ({}) does not link to the record before it (records removed, inserted or reordered)",
                r.check_id
            ));
        }
        if record_hash(r, &prev) != r.hash {
            return Err(format!(
                "record {i} ({}) was altered after it was written (its hash does not match its content)",
                r.check_id
            ));
        }
        prev = r.hash.clone();
    }
    Ok(())
}

/// Now as UTC RFC 3339 with seconds, e.g. `2026-11-30T04:55:00Z`.
pub fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format_utc(secs)
}

/// Seconds since the Unix epoch as UTC RFC 3339 (proleptic Gregorian calendar).
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from a day count (the well-known era-based algorithm: 400-year eras of 146097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Host name, OS and core count of this machine.
pub fn machine() -> Machine {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .unwrap_or_default();
    Machine {
        hostname,
        os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        cores: std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1),
    }
}

/// The files of a report folder that a signature covers, in this order.
pub const SIGNED_FILES: [&str; 3] = ["evidence.json", "report.html", "report.md"];

/// Name of the signature file in a report folder.
pub const SIGNATURE_FILE: &str = "signature.json";

/// `signature.json`: the hashes of the signed files, the public key, and the signature over the manifest.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureFile {
    /// Always `ed25519`.
    pub algorithm: String,
    /// Hex public key of the signer.
    pub public_key: String,
    /// `(file name, hex SHA-256)` of each signed file.
    pub files: Vec<(String, String)>,
    /// Hex Ed25519 signature of [`manifest`] of `files`.
    pub signature: String,
}

/// The signed bytes: one line `sha256  name` per file (like `sha256sum`).
pub fn manifest(files: &[(String, String)]) -> String {
    files
        .iter()
        .map(|(name, h)| format!("{h}  {name}\n"))
        .collect()
}

/// A new random key pair: (secret key hex, public key hex). Randomness comes from the operating system.
///
/// # Errors
/// If the operating system gives no randomness.
pub fn keygen() -> Result<(String, String), ReportError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| ReportError::Key {
        path: "<os randomness>".into(),
        message: e.to_string(),
    })?;
    let sk = SigningKey::from_bytes(&seed);
    Ok((hex(&seed), hex(sk.verifying_key().as_bytes())))
}

fn read_key32(path: &Path, what: &str) -> Result<[u8; 32], ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    unhex(&text)
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| ReportError::Key {
            path: path.to_path_buf(),
            message: format!("expected a {what} of 64 hex digits (as written by `nncert keygen`)"),
        })
}

/// Signs the report folder `dir` with the secret key in `key_path`; writes nothing, returns the signature file's
/// JSON for the caller to write atomically.
///
/// # Errors
/// A missing report file or a malformed key.
pub fn sign_dir(dir: &Path, key_path: &Path) -> Result<String, ReportError> {
    let sk = SigningKey::from_bytes(&read_key32(key_path, "secret key")?);
    let files = hash_files(dir)?;
    let sig = sk.sign(manifest(&files).as_bytes());
    let file = SignatureFile {
        algorithm: "ed25519".into(),
        public_key: hex(sk.verifying_key().as_bytes()),
        files,
        signature: hex(&sig.to_bytes()),
    };
    let mut s = serde_json::to_string_pretty(&file).unwrap_or_default();
    s.push('\n');
    Ok(s)
}

fn hash_files(dir: &Path) -> Result<Vec<(String, String)>, ReportError> {
    SIGNED_FILES
        .iter()
        .map(|name| {
            let p = dir.join(name);
            let bytes = std::fs::read(&p).map_err(|e| ReportError::io(&p, e))?;
            Ok((name.to_string(), sha256_hex(&bytes)))
        })
        .collect()
}

/// Verifies a signed report folder against the public key in `pubkey_path`: the signature, every file's hash,
/// and the evidence records' hash chain. Returns a one-line summary.
///
/// # Errors
/// [`ReportError::Tampered`] naming what does not match; I/O and key errors.
pub fn verify_dir(dir: &Path, pubkey_path: &Path) -> Result<String, ReportError> {
    let pk_bytes = read_key32(pubkey_path, "public key")?;
    let vk = VerifyingKey::from_bytes(&pk_bytes).map_err(|e| ReportError::Key {
        path: pubkey_path.to_path_buf(),
        message: format!("not a valid Ed25519 public key: {e}"),
    })?;
    let sig_path = dir.join(SIGNATURE_FILE);
    let text = std::fs::read_to_string(&sig_path).map_err(|e| ReportError::io(&sig_path, e))?;
    let sf: SignatureFile = serde_json::from_str(&text).map_err(|e| {
        ReportError::Tampered(format!("{}: not a signature file: {e}", sig_path.display()))
    })?;
    if sf.public_key != hex(&pk_bytes) {
        return Err(ReportError::Tampered(format!(
            "{} was made with key {}, not with the given public key",
            sig_path.display(),
            sf.public_key
        )));
    }
    let sig_bytes = unhex(&sf.signature)
        .and_then(|b| <[u8; 64]>::try_from(b).ok())
        .ok_or_else(|| ReportError::Tampered("the signature is not 128 hex digits".into()))?;
    let sig = Signature::from_bytes(&sig_bytes);
    vk.verify(manifest(&sf.files).as_bytes(), &sig)
        .map_err(|_| {
            ReportError::Tampered("the signature does not match the signed file list".into())
        })?;
    let names: Vec<&str> = sf.files.iter().map(|(n, _)| n.as_str()).collect();
    if names != SIGNED_FILES {
        return Err(ReportError::Tampered(format!(
            "the signature covers {names:?}, expected {SIGNED_FILES:?}"
        )));
    }
    let now = hash_files(dir)?;
    for ((name, signed), (_, actual)) in sf.files.iter().zip(&now) {
        if signed != actual {
            return Err(ReportError::Tampered(format!(
                "{name} changed after signing (SHA-256 {actual}, signed {signed})"
            )));
        }
    }
    let ev_path = dir.join("evidence.json");
    // The signature matched, so an unreadable evidence file was signed that way: still not a valid report.
    let ev = read_evidence(&ev_path).map_err(|e| ReportError::Tampered(e.to_string()))?;
    check_chain(&ev.records).map_err(|m| ReportError::Tampered(format!("evidence.json: {m}")))?;
    Ok(format!(
        "OK: {} signed by {}; {} evidence records, hash chain intact",
        SIGNED_FILES.join(", "),
        sf.public_key,
        ev.records.len()
    ))
}

/// Reads an evidence file.
///
/// # Errors
/// I/O errors, or JSON that is not an evidence file of this version.
pub fn read_evidence(path: &Path) -> Result<EvidenceFile, ReportError> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    let ev: EvidenceFile = serde_json::from_str(&text).map_err(|e| ReportError::Evidence {
        path: path.to_path_buf(),
        message: format!("not an nncert evidence file: {e}"),
    })?;
    if ev.schema_version != crate::evidence::SCHEMA_VERSION {
        return Err(ReportError::Evidence {
            path: path.to_path_buf(),
            message: format!(
                "schema version {} is not the supported {}",
                ev.schema_version,
                crate::evidence::SCHEMA_VERSION
            ),
        });
    }
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formatting_matches_known_dates() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_798_692_900), "2026-12-31T04:55:00Z");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
