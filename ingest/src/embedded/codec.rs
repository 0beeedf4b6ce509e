//! The stored form of one record: `[timestamp i64][key len u32][key][tag u8][value]`, all
//! little-endian. The tag distinguishes a tombstone from an empty value, as Kafka does.

use crate::LogError;

const TOMBSTONE: u8 = 0;
const VALUE: u8 = 1;
const HEADER: usize = 8 + 4;

pub(crate) fn encode_into(buf: &mut Vec<u8>, timestamp_ms: i64, key: &[u8], value: Option<&[u8]>) {
    buf.clear();
    buf.reserve(HEADER + key.len() + 1 + value.map_or(0, <[u8]>::len));
    buf.extend_from_slice(&timestamp_ms.to_le_bytes());
    // Keys longer than u32::MAX are rejected before encoding, so the cast cannot truncate.
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    match value {
        None => buf.push(TOMBSTONE),
        Some(v) => {
            buf.push(VALUE);
            buf.extend_from_slice(v);
        }
    }
}

pub(crate) struct Decoded<'a> {
    pub timestamp_ms: i64,
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, LogError> {
    let corrupt = || LogError::Storage("corrupt record encoding".into());
    let ts = bytes.get(0..8).ok_or_else(corrupt)?;
    let klen = bytes.get(8..12).ok_or_else(corrupt)?;
    let timestamp_ms = i64::from_le_bytes(ts.try_into().map_err(|_| corrupt())?);
    let klen = u32::from_le_bytes(klen.try_into().map_err(|_| corrupt())?) as usize;
    let key_end = HEADER.checked_add(klen).ok_or_else(corrupt)?;
    let key = bytes.get(HEADER..key_end).ok_or_else(corrupt)?;
    let value = match *bytes.get(key_end).ok_or_else(corrupt)? {
        TOMBSTONE => None,
        VALUE => Some(&bytes[key_end + 1..]),
        _ => return Err(corrupt()),
    };
    Ok(Decoded {
        timestamp_ms,
        key,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_values_empty_values_and_tombstones() {
        let mut buf = Vec::new();
        for (key, value) in [
            (&b"k"[..], Some(&b"v"[..])),
            (b"", Some(b"")),
            (b"key", None),
        ] {
            encode_into(&mut buf, -5, key, value);
            let d = decode(&buf).unwrap();
            assert_eq!((d.timestamp_ms, d.key, d.value), (-5, key, value));
        }
    }

    #[test]
    fn rejects_truncated_input() {
        let mut buf = Vec::new();
        encode_into(&mut buf, 1, b"abc", Some(b"v"));
        for len in 0..13 {
            assert!(decode(&buf[..len]).is_err(), "len {len}");
        }
        buf[15] = 9;
        assert!(decode(&buf).is_err());
    }
}
