//! Automatic state encryption (`primaryEncryptionKey`, `secondaryEncryptionKey`).
//!
//! [`Encrypted`] wraps any store: values are sealed with AES-GCM (a random nonce per write) and
//! stored as `base64(nonce ‖ ciphertext ‖ tag) + "||" + key-id`; reads open them with whichever
//! configured key has that id, so rotating keys (new primary, old one as secondary) keeps old
//! values readable while new writes use the new key. The key id is a fingerprint of the key, so
//! it stays the same when a key moves from primary to secondary. The exact bytes written come
//! back (values are not stringified). Keys are hex: 16 or 32 bytes (AES-128 or AES-256-GCM).

use std::sync::Arc;

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine as _;
use bytes::Bytes;

use super::{
    BoxFuture, DeleteRequest, Features, Item, Metadata, Operation, SetRequest, StateError,
    StateStore,
};
use crate::fault::Fault;

/// One encryption key.
pub struct EncryptionKey {
    id: String,
    key: RandomizedNonceKey,
}

impl EncryptionKey {
    /// Parses a hex key of 16 or 32 bytes.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        let hex = hex.trim();
        if !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("the key must be hex".into());
        }
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0))
            .collect();
        let alg = match bytes.len() {
            16 => &AES_128_GCM,
            32 => &AES_256_GCM,
            n => {
                return Err(format!(
                    "the key is {n} bytes; use 16 (AES-128) or 32 (AES-256)"
                ));
            }
        };
        let key =
            RandomizedNonceKey::new(alg, &bytes).map_err(|_| "the key was refused".to_owned())?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let id: String = digest.as_ref()[..6]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(Self {
            id: format!("k{id}"),
            key,
        })
    }

    fn seal(&self, plain: &[u8]) -> Bytes {
        let mut buf = plain.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::empty(), &mut buf)
            .expect("AES-GCM sealing does not fail");
        let mut out = nonce.as_ref().to_vec();
        out.extend_from_slice(&buf);
        let mut sealed = base64::engine::general_purpose::STANDARD.encode(out);
        sealed.push_str("||");
        sealed.push_str(&self.id);
        Bytes::from(sealed)
    }

    fn open(&self, b64: &str) -> Result<Vec<u8>, StateError> {
        let corrupt = || {
            StateError::Store(Fault::new(
                "an encrypted value is corrupt or was tampered with",
            ))
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| corrupt())?;
        if raw.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut buf = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::empty(), &mut buf)
            .map_err(|_| corrupt())?;
        Ok(plain.to_vec())
    }
}

/// A store whose values are encrypted at rest.
pub struct Encrypted {
    inner: Arc<dyn StateStore>,
    keys: Arc<[EncryptionKey]>,
}

impl Encrypted {
    /// Encrypts with `primary`; reads values written with `primary` or `secondary`.
    pub fn new(
        inner: Arc<dyn StateStore>,
        primary: EncryptionKey,
        secondary: Option<EncryptionKey>,
    ) -> Self {
        Self {
            inner,
            keys: std::iter::once(primary).chain(secondary).collect(),
        }
    }

    fn seal_set(&self, mut r: SetRequest) -> SetRequest {
        r.value = self.keys[0].seal(&r.value);
        r
    }
}

fn decrypt(keys: &[EncryptionKey], data: &[u8]) -> Result<Bytes, StateError> {
    let text = std::str::from_utf8(data)
        .map_err(|_| StateError::Store(Fault::new("a stored value is not encrypted")))?;
    let (b64, id) = text
        .rsplit_once("||")
        .ok_or_else(|| StateError::Store(Fault::new("a stored value is not encrypted")))?;
    let key = keys.iter().find(|k| k.id == id).ok_or_else(|| {
        StateError::Store(Fault::new(format!(
            "no configured key matches key id {id} of the stored value"
        )))
    })?;
    key.open(b64).map(Bytes::from)
}

impl StateStore for Encrypted {
    fn features(&self) -> Features {
        // Encrypted values cannot be queried.
        Features {
            query: false,
            ..self.inner.features()
        }
    }

    fn get(&self, key: String, metadata: Metadata) -> BoxFuture<Result<Option<Item>, StateError>> {
        let (fut, keys) = (self.inner.get(key, metadata), self.keys.clone());
        Box::pin(async move {
            match fut.await? {
                Some(item) => Ok(Some(Item {
                    data: decrypt(&keys, &item.data)?,
                    ..item
                })),
                None => Ok(None),
            }
        })
    }

    fn set(&self, req: SetRequest) -> BoxFuture<Result<(), StateError>> {
        self.inner.set(self.seal_set(req))
    }

    fn delete(&self, req: DeleteRequest) -> BoxFuture<Result<(), StateError>> {
        self.inner.delete(req)
    }

    fn multi(&self, ops: Vec<Operation>) -> BoxFuture<Result<(), StateError>> {
        let ops = ops
            .into_iter()
            .map(|op| match op {
                Operation::Upsert(r) => Operation::Upsert(self.seal_set(r)),
                d => d,
            })
            .collect();
        self.inner.multi(ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::MemoryStore;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "ffeeddccbbaa99887766554433221100";

    fn set(key: &str, v: &[u8]) -> SetRequest {
        SetRequest {
            key: key.into(),
            value: Bytes::copy_from_slice(v),
            ..Default::default()
        }
    }

    /// The value stored under `key`, which must be there.
    async fn stored(store: &dyn StateStore, key: &str) -> Bytes {
        store
            .get(key.into(), Metadata::new())
            .await
            .unwrap()
            .unwrap()
            .data
    }

    #[tokio::test]
    async fn values_are_sealed_at_rest_and_keys_rotate() {
        let raw: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let a = Encrypted::new(raw.clone(), EncryptionKey::from_hex(A).unwrap(), None);
        a.set(set("k", b"{\"secret\":1}")).await.unwrap();
        let at_rest = stored(&*raw, "k").await;
        assert!(
            !String::from_utf8_lossy(&at_rest).contains("secret"),
            "plaintext at rest"
        );
        assert_eq!(stored(&a, "k").await.as_ref(), b"{\"secret\":1}");
        // Rotation: B is primary, A secondary; old values still read, new ones use B.
        let rotated = Encrypted::new(
            raw.clone(),
            EncryptionKey::from_hex(B).unwrap(),
            Some(EncryptionKey::from_hex(A).unwrap()),
        );
        assert_eq!(stored(&rotated, "k").await.as_ref(), b"{\"secret\":1}");
        rotated.set(set("n", b"new")).await.unwrap();
        let only_a = Encrypted::new(raw.clone(), EncryptionKey::from_hex(A).unwrap(), None);
        let err = only_a.get("n".into(), Metadata::new()).await.unwrap_err();
        assert!(err.to_string().contains("no configured key"), "{err}");
    }

    #[tokio::test]
    async fn tampering_is_detected() {
        let raw: Arc<dyn StateStore> = Arc::new(MemoryStore::new());
        let e = Encrypted::new(raw.clone(), EncryptionKey::from_hex(A).unwrap(), None);
        e.set(set("k", b"value")).await.unwrap();
        let mut sealed = stored(&*raw, "k").await.to_vec();
        sealed[5] ^= 1; // still base64, different bytes
        raw.set(SetRequest {
            value: Bytes::from(sealed),
            ..set("k", b"")
        })
        .await
        .unwrap();
        assert!(e.get("k".into(), Metadata::new()).await.is_err());
        raw.set(set("plain", b"not encrypted")).await.unwrap();
        assert!(e.get("plain".into(), Metadata::new()).await.is_err());
    }

    #[test]
    fn keys() {
        assert!(EncryptionKey::from_hex(A).is_ok());
        assert!(EncryptionKey::from_hex(B).is_ok());
        for bad in [
            "",
            "xyz",
            "abc",
            "000102030405060708090a0b0c0d0e0f1011121314151617",
        ] {
            assert!(EncryptionKey::from_hex(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            EncryptionKey::from_hex(A).unwrap().id,
            EncryptionKey::from_hex(&A.to_uppercase()).unwrap().id
        );
    }
}
