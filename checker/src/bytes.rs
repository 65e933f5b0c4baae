//! [`Key`] and [`Value`]: byte strings that print and serialize readably.
//!
//! JSON form: a string when the bytes are UTF-8, else `{"hex": "00ff"}`. Integers convert to
//! and from their decimal text, so a workload of `u64` values reads naturally in a saved
//! history.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! byte_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub Vec<u8>);

        impl $name {
            /// The bytes.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }

            /// The integer this is the decimal text of, if it is one.
            pub fn as_u64(&self) -> Option<u64> {
                std::str::from_utf8(&self.0).ok()?.parse().ok()
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.as_bytes().to_vec())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s.into_bytes())
            }
        }

        impl From<&[u8]> for $name {
            fn from(b: &[u8]) -> Self {
                Self(b.to_vec())
            }
        }

        impl From<Vec<u8>> for $name {
            fn from(b: Vec<u8>) -> Self {
                Self(b)
            }
        }

        /// The decimal text of the integer.
        impl From<u64> for $name {
            fn from(n: u64) -> Self {
                Self(n.to_string().into_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                show(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                show(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_bytes(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_bytes(d).map(Self)
            }
        }
    };
}

byte_string!(
    /// A key. Each key is an independent object (register, set or list) of one workload.
    Key
);

byte_string!(
    /// A value of a register, or an element of a set or list.
    Value
);

/// Printable ASCII as a quoted string, anything else as `0x` and hex.
fn show(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if bytes.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
        // Only printable ASCII, so this is lossless.
        write!(f, "{:?}", String::from_utf8_lossy(bytes))
    } else {
        f.write_str("0x")?;
        bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Text(String),
    Hex { hex: String },
}

fn serialize_bytes<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => s.serialize_str(text),
        Err(_) => {
            let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
            Repr::Hex { hex }.serialize(s)
        }
    }
}

fn deserialize_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    match Repr::deserialize(d)? {
        Repr::Text(text) => Ok(text.into_bytes()),
        Repr::Hex { hex } => {
            let digits = hex.as_bytes();
            if digits.len() % 2 != 0 {
                return Err(serde::de::Error::custom("odd number of hex digits"));
            }
            digits
                .chunks(2)
                .map(|pair| {
                    std::str::from_utf8(pair)
                        .ok()
                        .and_then(|p| u8::from_str_radix(p, 16).ok())
                        .ok_or_else(|| serde::de::Error::custom(format!("bad hex digits {pair:?}")))
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_round_trip_through_json() {
        for v in [Value::from("v1"), Value::from(vec![0xff, 0, 7]), Value::from(""), Value::from(42)] {
            let json = serde_json::to_string(&v).unwrap();
            assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), v, "{json}");
        }
        assert_eq!(serde_json::to_string(&Key::from("k")).unwrap(), r#""k""#);
        assert_eq!(serde_json::to_string(&Value::from(vec![0xff, 1])).unwrap(), r#"{"hex":"ff01"}"#);
    }

    #[test]
    fn corrupt_hex_is_rejected() {
        for json in [r#"{"hex":"f"}"#, r#"{"hex":"zz"}"#, "17"] {
            assert!(serde_json::from_str::<Value>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn integers_are_decimal_text() {
        let v = Value::from(1234);
        assert_eq!(v.as_bytes(), b"1234");
        assert_eq!(v.as_u64(), Some(1234));
        assert_eq!(Value::from("x").as_u64(), None);
        assert_eq!(v.to_string(), "\"1234\"");
        assert_eq!(Value::from(vec![0, 0xab]).to_string(), "0x00ab");
    }
}
