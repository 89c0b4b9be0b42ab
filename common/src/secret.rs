//! [`Secret`], a wrapper for passwords, tokens and keys that keeps them out of logs and JSON.
//!
//! It prevents accidental disclosure through formatting and serialisation only; it does not
//! zero memory or compare in constant time.

use std::fmt;

use serde::Deserialize;

/// A value that prints as `***`. There is deliberately no `Serialize`: a secret placed in a
/// response or an event struct fails to compile instead of leaking, and code that really must
/// send one has to call [`Secret::expose`] where a reviewer can see it.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub const fn new(value: T) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::marker::PhantomData;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::from("hunter2".to_owned());
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:>10}"), "***");
    }

    #[test]
    fn debug_of_a_containing_struct_hides_the_value() {
        #[derive(Debug)]
        #[allow(dead_code)] // read only through Debug, which is the point
        struct Config {
            user: &'static str,
            password: Secret<String>,
        }
        let c = Config {
            user: "admin",
            password: Secret::new("hunter2".into()),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("admin"), "{shown}");
    }

    #[test]
    fn expose_and_into_inner_return_the_value() {
        let s = Secret::from(String::from("hunter2"));
        assert_eq!(s.clone().into_inner(), "hunter2");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn deserializes_transparently() {
        let s: Secret<String> = serde_json::from_str("\"hunter2\"").unwrap();
        assert_eq!(s.expose(), "hunter2");
        let n: Secret<u32> = serde_json::from_str("7").unwrap();
        assert_eq!(*n.expose(), 7);
    }

    /// Inherent methods win over trait methods only when their bounds hold, so `probe()`
    /// reports at run time whether `T: Serialize` (the `impls` crate's trick).
    struct Probe<T>(PhantomData<T>);
    trait NotSerialize {
        fn implements_serialize(&self) -> bool {
            false
        }
    }
    impl<T> NotSerialize for Probe<T> {}
    impl<T: serde::Serialize> Probe<T> {
        fn implements_serialize(&self) -> bool {
            true
        }
    }

    #[test]
    fn secret_does_not_implement_serialize() {
        assert!(
            Probe::<String>(PhantomData).implements_serialize(),
            "probe is broken"
        );
        assert!(!Probe::<Secret<String>>(PhantomData).implements_serialize());
    }
}
