//! A header map as the proxy-wasm host serialises it, read in place: one
//! host call (and one copy into the VM) for all headers instead of one per
//! header. Layout: u32 count, count × (u32 name length, u32 value length),
//! then each name and value followed by a NUL. Integers are little-endian.

#[derive(Debug, Clone, Default)]
pub struct HeaderPairs {
    bytes: Vec<u8>,
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let b: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(b) as usize)
}

impl HeaderPairs {
    pub fn new(bytes: Vec<u8>) -> Self {
        HeaderPairs { bytes }
    }

    /// Every (name, value), in order. Stops at the first malformed entry.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let b = &self.bytes[..];
        let count = read_u32(b, 0).unwrap_or(0);
        let mut sizes_at = 4;
        let mut data_at = 4usize.saturating_add(count.saturating_mul(8));
        (0..count).map_while(move |_| {
            let name_len = read_u32(b, sizes_at)?;
            let value_len = read_u32(b, sizes_at + 4)?;
            sizes_at += 8;
            let name = b.get(data_at..data_at.checked_add(name_len)?)?;
            data_at += name_len + 1;
            let value = b.get(data_at..data_at.checked_add(value_len)?)?;
            data_at += value_len + 1;
            Some((name, value))
        })
    }

    /// The first value of `name` (header names are lower-case in Envoy).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The `content-length` a message declares, if it is one number.
    pub fn content_length(&self) -> Option<u64> {
        self.get_str("content-length")
            .and_then(|l| l.trim().parse::<u64>().ok())
    }
}

/// Serialises pairs the same way (for tests and local replies).
pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_serialized_pairs() {
        let h = HeaderPairs::new(serialize(&[
            (":path", "/v1/chat/completions"),
            ("x-a", ""),
            ("x-b", "é"),
        ]));
        assert_eq!(h.get_str(":path"), Some("/v1/chat/completions"));
        assert_eq!(h.get("x-a"), Some(&b""[..]));
        assert_eq!(h.get_str("x-b"), Some("é"));
        assert_eq!(h.get("missing"), None);
        assert_eq!(h.iter().count(), 3);
    }

    #[test]
    fn malformed_input_never_panics() {
        for bytes in [
            vec![],
            vec![5, 0, 0, 0],
            vec![1, 0, 0, 0, 255, 255, 255, 255, 0, 0, 0, 0],
            vec![1; 40],
        ] {
            let h = HeaderPairs::new(bytes);
            let _ = h.get("x");
            let _ = h.iter().count();
        }
    }
}
