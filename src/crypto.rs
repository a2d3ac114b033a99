//! Security primitives, in one place: random secrets, SHA-256 and
//! HMAC-SHA256, constant-time comparison, argon2id password hashing,
//! authenticated encryption of the few secrets that must be read back
//! (XChaCha20-Poly1305).

use argon2::password_hash::{Output, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{Hmac, Mac};
use rand::distr::{Alphanumeric, SampleString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A random string of `len` characters from `[A-Za-z0-9]`, from the OS-seeded CSPRNG.
pub fn random_alphanumeric(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rng(), len)
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// Lowercase hex (through `data-encoding`).
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Standard base64 with padding (HTTP Basic credentials).
pub fn base64(data: &[u8]) -> String {
    data_encoding::BASE64.encode(data)
}

pub fn sha1_hex(data: &[u8]) -> String {
    use sha1::Sha1;
    hex(&Sha1::digest(data))
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-256 of the parts one after another, without joining them first.
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Whether `given_hex` (either case) is the HMAC-SHA256 of `message` under
/// `key`, checked by the `hmac` crate's constant-time `verify_slice`.
pub fn hmac_sha256_verify(key: &[u8], message: &[u8], given_hex: &str) -> bool {
    let Ok(tag) = data_encoding::HEXLOWER_PERMISSIVE.decode(given_hex.trim().as_bytes()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.verify_slice(&tag).is_ok()
}

/// Compares two byte strings in time that depends only on their lengths
/// (through `subtle`).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Encrypts `plain` under `key` with XChaCha20-Poly1305 and a random
/// nonce; the nonce is the first 24 bytes of the result. `context` is
/// authenticated too (say, the owner's id), so a sealed value copied to
/// another row does not open there.
pub fn seal(key: &[u8; 32], context: &[u8], plain: &[u8]) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    let nonce = random_bytes::<24>();
    let sealed = cipher
        .encrypt((&nonce).into(), Payload { msg: plain, aad: context })
        .expect("encrypting into memory does not fail");
    [&nonce[..], &sealed].concat()
}

/// The plain text of a [`seal`]ed value; None if it was altered, sealed
/// under another key or for another context.
pub fn open(key: &[u8; 32], context: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    if sealed.len() < 24 {
        return None;
    }
    let (nonce, body) = sealed.split_at(24);
    let cipher = chacha20poly1305::XChaCha20Poly1305::new(key.into());
    cipher.decrypt(nonce.into(), Payload { msg: body, aad: context }).ok()
}

/// RFC 4648 base32 without padding (TOTP secrets for authenticator apps).
pub fn base32(data: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(data)
}

/// RFC 6238 TOTP with HMAC-SHA1 and 6 digits, for time step `step`
/// (unix seconds / 30).
pub fn totp(secret: &[u8], step: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(&step.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = (hash[19] & 0x0f) as usize;
    let code = u32::from_be_bytes([hash[offset] & 0x7f, hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    format!("{:06}", code % 1_000_000)
}

/// The time step of `code` within ±1 step of `now_step`, if it matches one.
pub fn totp_match(secret: &[u8], code: &str, now_step: u64) -> Option<u64> {
    let code = code.trim();
    [now_step.saturating_sub(1), now_step, now_step + 1]
        .into_iter()
        .find(|&step| ct_eq(totp(secret, step).as_bytes(), code.as_bytes()))
}

/// argon2id with the OWASP baseline: 19 MiB of memory, 2 passes, 1 lane.
/// About 20 ms on one core of a small VPS: slow enough to make offline
/// guessing expensive, cheap enough for a login to feel instant.
const ARGON2_M_KIB: u32 = 19 * 1024;
const ARGON2_T: u32 = 2;
const ARGON2_P: u32 = 1;
const HASH_LEN: usize = 32;

fn params() -> Params {
    Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, Some(HASH_LEN)).expect("static argon2 parameters are valid")
}

/// Working memory for argon2: at most one 19 MiB buffer per core, reused
/// while logins keep coming. Hashing is CPU-bound, so more at once would
/// not be faster; a burst of logins waits its turn here instead of
/// allocating 19 MiB per request (which left a loaded server holding half
/// a gigabyte). Buffers idle for [`SCRATCH_IDLE`] are freed by
/// [`release_idle_scratch`], so a quiet server does not keep them.
struct Scratch {
    /// Buffers not in use, with when each was last used; and how many exist.
    state: Mutex<(Vec<Idle>, usize)>,
    freed: Condvar,
    max: usize,
}

/// A buffer between hashes, and when it was last used.
type Idle = (Vec<Block>, Instant);

/// How long an unused argon2 buffer is kept for the next login.
pub const SCRATCH_IDLE: Duration = Duration::from_secs(2);

impl Scratch {
    fn get() -> &'static Scratch {
        static SCRATCH: OnceLock<Scratch> = OnceLock::new();
        SCRATCH.get_or_init(|| Scratch {
            state: Mutex::new((Vec::new(), 0)),
            freed: Condvar::new(),
            max: std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8),
        })
    }

    fn with<T>(&self, blocks: usize, f: impl FnOnce(&mut [Block]) -> T) -> T {
        let mut buf = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some((buf, _)) = state.0.pop() {
                    break buf;
                }
                if state.1 < self.max {
                    state.1 += 1;
                    break Vec::new();
                }
                state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        // Given back even if `f` unwinds.
        struct Slot<'a>(&'a Scratch, Vec<Block>);
        impl Drop for Slot<'_> {
            fn drop(&mut self) {
                let buf = std::mem::take(&mut self.1);
                self.0.state.lock().unwrap_or_else(|e| e.into_inner()).0.push((buf, Instant::now()));
                self.0.freed.notify_one();
            }
        }
        if buf.len() < blocks {
            buf.resize(blocks, Block::default());
        }
        let mut slot = Slot(self, buf);
        f(&mut slot.1[..blocks])
    }

    fn release_idle(&self, idle: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let before = state.0.len();
        state.0.retain(|(_, used)| used.elapsed() < idle);
        state.1 -= before - state.0.len();
    }
}

/// Frees the argon2 buffers no login has used for [`SCRATCH_IDLE`]; the
/// server's background jobs call this.
pub fn release_idle_scratch() {
    Scratch::get().release_idle(SCRATCH_IDLE);
}

fn argon2_into(
    params: Params,
    algorithm: Algorithm,
    version: Version,
    pwd: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> bool {
    let blocks = params.block_count();
    let argon = Argon2::new(algorithm, version, params);
    Scratch::get().with(blocks, |memory| argon.hash_password_into_with_memory(pwd, salt, out, memory).is_ok())
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash_password(password: &str) -> String {
    let salt = random_bytes::<16>();
    let mut out = [0u8; HASH_LEN];
    let ok = argon2_into(params(), Algorithm::Argon2id, Version::V0x13, password.as_bytes(), &salt, &mut out);
    assert!(ok, "argon2 with static parameters cannot fail");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    let hash = Output::new(&out).expect("32 bytes is a valid output");
    format!("$argon2id$v=19$m={ARGON2_M_KIB},t={ARGON2_T},p={ARGON2_P}${}${hash}", salt.as_str())
}

/// Checks a password against a stored PHC string, with the parameters the
/// string names. A malformed hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::new(parsed.algorithm.as_str()), Params::try_from(&parsed)) else {
        return false;
    };
    let version = parsed.version.and_then(|v| Version::try_from(v).ok()).unwrap_or(Version::V0x13);
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    argon2_into(params, algorithm, version, password.as_bytes(), salt, &mut out) && ct_eq(&out, expected.as_bytes())
}

/// Spends the same time as a real verification, for logins of unknown
/// emails: the answer and its timing must not tell whether an account exists.
pub fn burn_password_check(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("apextrack-dummy-password"));
    let _ = verify_password(password, phc);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = [7u8; 32];
        let sealed = seal(&key, b"user 1", b"123456:secret-token");
        assert!(!sealed.windows(6).any(|w| w == b"secret"), "the text is not in the clear");
        assert_eq!(open(&key, b"user 1", &sealed).as_deref(), Some(&b"123456:secret-token"[..]));
        assert_eq!(open(&key, b"user 2", &sealed), None, "another row's context");
        assert_eq!(open(&[8u8; 32], b"user 1", &sealed), None, "another key");
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(open(&key, b"user 1", &altered), None);
        assert_eq!(open(&key, b"user 1", &sealed[..10]), None);
        assert_ne!(seal(&key, b"user 1", b"x"), seal(&key, b"user 1", b"x"), "a fresh nonce each time");
    }

    #[test]
    fn argon2_buffers_are_reused_while_busy_and_freed_when_idle() {
        let scratch = Scratch { state: Mutex::new((Vec::new(), 0)), freed: Condvar::new(), max: 2 };
        let first = scratch.with(8, |m| m.as_ptr() as usize);
        let second = scratch.with(8, |m| m.as_ptr() as usize);
        assert_eq!(first, second, "the same buffer serves the next hash");
        scratch.release_idle(Duration::from_secs(60));
        assert_eq!(scratch.state.lock().unwrap().1, 1, "a recently used buffer is kept");
        scratch.release_idle(Duration::ZERO);
        let state = scratch.state.lock().unwrap();
        assert_eq!((state.0.len(), state.1), (0, 0), "an idle buffer is freed");
    }

    #[test]
    fn password_round_trip_and_phc_shape() {
        let phc = hash_password("correct horse");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("correct hors", &phc));
        assert!(!verify_password("correct horse", "not-a-hash"));
        assert_ne!(phc, hash_password("correct horse"), "salts must differ");
    }

    #[test]
    fn hashes_interoperate_with_the_reference_phc_implementation() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params());
        let ours = hash_password("s3cret-pass");
        assert!(reference.verify_password(b"s3cret-pass", &PasswordHash::new(&ours).unwrap()).is_ok());
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = reference.hash_password(b"s3cret-pass", &salt).unwrap().to_string();
        assert!(verify_password("s3cret-pass", &theirs));
        assert!(!verify_password("s3cret-pas", &theirs));
        // Other parameters (say, from an older release) still verify.
        let light = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).unwrap());
        let old = light.hash_password(b"s3cret-pass", &salt).unwrap().to_string();
        assert!(verify_password("s3cret-pass", &old));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(hex(&mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn base64_and_sha1_match_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(
            base64(b"api:key-3ax6xnjp29jd6fds4gc373sgvjxteol0"),
            "YXBpOmtleS0zYXg2eG5qcDI5amQ2ZmRzNGdjMzczc2d2anh0ZW9sMA=="
        );
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn totp_matches_the_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1, secret "12345678901234567890"; the
        // RFC prints 8 digits, authenticator apps show the last 6.
        let secret = b"12345678901234567890";
        let vectors = [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ];
        for (time, eight) in vectors {
            assert_eq!(totp(secret, time / 30), eight[2..], "t={time}");
        }
        assert_eq!(totp_match(secret, "287082", 59 / 30 + 1), Some(1));
        assert_eq!(totp_match(secret, "287082", 59 / 30 + 2), None);
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(base32(b"f"), "MY");
    }

    #[test]
    fn sha256_and_ct_eq() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }

    #[test]
    fn random_strings_are_alphanumeric_and_distinct() {
        let a = random_alphanumeric(40);
        assert_eq!(a.len(), 40);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, random_alphanumeric(40));
    }

    #[test]
    fn hmac_verification_takes_either_case_and_refuses_anything_else() {
        let tag = hex(&hmac_sha256(b"key", b"message"));
        assert!(hmac_sha256_verify(b"key", b"message", &tag));
        assert!(hmac_sha256_verify(b"key", b"message", &tag.to_ascii_uppercase()));
        assert!(!hmac_sha256_verify(b"key", b"messagE", &tag));
        assert!(!hmac_sha256_verify(b"key", b"message", &tag[..62]));
        assert!(!hmac_sha256_verify(b"key", b"message", "zz"));
        assert!(!hmac_sha256_verify(b"key", b"message", ""));
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    }
}
