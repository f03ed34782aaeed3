//! `Path<T>`: the route's parameters, percent-decoded, deserialized with serde; `Params`:
//! the same by name.

use std::borrow::Cow;
use std::rc::Rc;

use percent_encoding::percent_decode_str;
use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::{FromRequestParts, Parts, Rejection, RejectionKind};

/// The route's path parameters, percent-decoded (`/items/%41` gives `A`), deserialized into
/// `T` with serde:
///
/// - one parameter: any type that deserializes from a string or number
///   (`Path<u64>`, `Path<String>`, an enum of unit variants);
/// - several: a tuple in route order (`Path<(String, u32)>`) or a struct by name
///   (`#[derive(Deserialize)] struct P { shop: String, id: u32 }`), or a map.
///
/// 400 `invalid-path-params` when a parameter is not valid percent-encoded UTF-8, the count
/// does not match, or a value does not parse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<S, T: DeserializeOwned> FromRequestParts<S> for Path<T> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Rejection> {
        let params = decode(parts.params())?;
        T::deserialize(ParamsDe(&params))
            .map(Path)
            .map_err(|e| Rejection::new(RejectionKind::InvalidPathParams, e.0))
    }
}

/// All path parameters by name, percent-decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The value of parameter `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl<S> FromRequestParts<S> for Params {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _: &Rc<S>) -> Result<Self, Rejection> {
        let params = decode(parts.params())?;
        Ok(Params(
            params
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into_owned()))
                .collect(),
        ))
    }
}

/// The parameters percent-decoded, borrowed where nothing was encoded.
fn decode(raw: &[(String, String)]) -> Result<Vec<(&str, Cow<'_, str>)>, Rejection> {
    raw.iter()
        .map(|(k, v)| match percent_decode_str(v).decode_utf8() {
            Ok(d) => Ok((k.as_str(), d)),
            Err(_) => Err(Rejection::new(
                RejectionKind::InvalidPathParams,
                format!("parameter {k:?} is not UTF-8 once percent-decoded"),
            )),
        })
        .collect()
}

/// A deserialization failure: its message becomes the rejection's detail.
#[derive(Debug)]
struct DeError(String);

impl std::fmt::Display for DeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

/// All parameters: a scalar needs exactly one; a sequence takes them in order; a map or struct
/// by name.
struct ParamsDe<'a>(&'a [(&'a str, Cow<'a, str>)]);

impl<'a> ParamsDe<'a> {
    fn single(&self) -> Result<ValueDe<'a>, DeError> {
        match self.0 {
            [(k, v)] => Ok(ValueDe { name: k, value: v }),
            other => Err(DeError(format!(
                "expected 1 path parameter, the route has {}",
                other.len()
            ))),
        }
    }
}

macro_rules! via_single {
    ($($m:ident)*) => {
        $(
            fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                self.single()?.$m(visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for ParamsDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0.len() {
            1 => self.single()?.deserialize_any(visitor),
            _ => self.deserialize_map(visitor),
        }
    }

    via_single! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_str deserialize_string deserialize_bytes
        deserialize_byte_buf deserialize_option
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_seq(Seq(self.0.iter()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        if len != self.0.len() {
            return Err(DeError(format!(
                "expected {len} path parameters, the route has {}",
                self.0.len()
            )));
        }
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_map(Map {
            iter: self.0.iter(),
            value: None,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.single()?.deserialize_enum(name, variants, visitor)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.single()?.deserialize_identifier(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct Seq<'a>(std::slice::Iter<'a, (&'a str, Cow<'a, str>)>);

impl<'de> de::SeqAccess<'de> for Seq<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        match self.0.next() {
            Some((k, v)) => seed.deserialize(ValueDe { name: k, value: v }).map(Some),
            None => Ok(None),
        }
    }
}

struct Map<'a> {
    iter: std::slice::Iter<'a, (&'a str, Cow<'a, str>)>,
    value: Option<&'a (&'a str, Cow<'a, str>)>,
}

impl<'de> de::MapAccess<'de> for Map<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        match self.iter.next() {
            Some(pair) => {
                self.value = Some(pair);
                seed.deserialize(pair.0.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((k, v)) => seed.deserialize(ValueDe { name: k, value: v }),
            None => Err(DeError("value asked before key".to_string())),
        }
    }
}

/// One parameter's value: a string that numbers and booleans are parsed from.
struct ValueDe<'a> {
    name: &'a str,
    value: &'a str,
}

macro_rules! parse_value {
    ($($m:ident => $visit:ident $ty:ty,)*) => {
        $(
            fn $m<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                match self.value.parse::<$ty>() {
                    Ok(v) => visitor.$visit(v),
                    Err(_) => Err(DeError(format!(
                        "parameter {:?}: {:?} is not a valid {}",
                        self.name,
                        self.value,
                        stringify!($ty)
                    ))),
                }
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for ValueDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_str(self.value)
    }

    parse_value! {
        deserialize_bool => visit_bool bool,
        deserialize_i8 => visit_i8 i8,
        deserialize_i16 => visit_i16 i16,
        deserialize_i32 => visit_i32 i32,
        deserialize_i64 => visit_i64 i64,
        deserialize_i128 => visit_i128 i128,
        deserialize_u8 => visit_u8 u8,
        deserialize_u16 => visit_u16 u16,
        deserialize_u32 => visit_u32 u32,
        deserialize_u64 => visit_u64 u64,
        deserialize_u128 => visit_u128 u128,
        deserialize_f32 => visit_f32 f32,
        deserialize_f64 => visit_f64 f64,
        deserialize_char => visit_char char,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(self.value.into_deserializer())
    }

    fn deserialize_seq<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DeError> {
        Err(DeError(format!(
            "parameter {:?}: a sequence cannot come from one value",
            self.name
        )))
    }

    fn deserialize_map<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DeError> {
        Err(DeError(format!(
            "parameter {:?}: a map cannot come from one value",
            self.name
        )))
    }

    forward_to_deserialize_any! {
        str string bytes byte_buf unit unit_struct tuple tuple_struct struct identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    fn de<T: DeserializeOwned>(pairs: &[(&str, &str)]) -> Result<T, String> {
        let raw: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let params = decode(&raw).map_err(|r| r.detail().to_string())?;
        T::deserialize(ParamsDe(&params)).map_err(|e| e.0)
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct ShopItem {
        shop: String,
        id: u32,
        note: Option<String>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Color {
        Red,
        Blue,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Id(u64);

    #[test]
    fn one_value_of_any_scalar_type() {
        assert_eq!(de::<u64>(&[("id", "42")]), Ok(42));
        assert_eq!(de::<i8>(&[("id", "-3")]), Ok(-3));
        assert_eq!(de::<bool>(&[("on", "true")]), Ok(true));
        assert_eq!(de::<f64>(&[("x", "1.5")]), Ok(1.5));
        assert_eq!(de::<char>(&[("c", "é")]), Ok('é'));
        assert_eq!(de::<String>(&[("s", "a%20b%2Fc")]), Ok("a b/c".to_string()));
        assert_eq!(de::<Color>(&[("c", "blue")]), Ok(Color::Blue));
        assert_eq!(de::<Id>(&[("id", "7")]), Ok(Id(7)));
        assert_eq!(de::<Option<u8>>(&[("n", "9")]), Ok(Some(9)));
        assert!(de::<Color>(&[("c", "green")]).is_err());
        assert!(de::<Color>(&[("c", "Red")]).is_err());
    }

    #[test]
    fn tuples_in_order_structs_and_maps_by_name() {
        let two = [("shop", "s%C3%A9"), ("id", "8")];
        assert_eq!(de::<(String, u32)>(&two), Ok(("sé".to_string(), 8)));
        assert_eq!(
            de::<ShopItem>(&two),
            Ok(ShopItem {
                shop: "sé".into(),
                id: 8,
                note: None
            })
        );
        let map = de::<BTreeMap<String, String>>(&two).expect("map");
        assert_eq!(map.get("id").map(String::as_str), Some("8"));
        assert_eq!(
            de::<Vec<String>>(&two),
            Ok(vec!["sé".to_string(), "8".to_string()])
        );
    }

    #[test]
    fn mismatches_say_which_parameter_and_why() {
        let e = de::<u32>(&[("id", "x")]).expect_err("not a number");
        assert!(e.contains("\"id\"") && e.contains("u32"), "{e}");
        let e = de::<u32>(&[("a", "1"), ("b", "2")]).expect_err("two for one");
        assert!(e.contains("expected 1"), "{e}");
        let e = de::<(u32, u32, u32)>(&[("a", "1"), ("b", "2")]).expect_err("two for three");
        assert!(e.contains("expected 3"), "{e}");
        let e = de::<ShopItem>(&[("shop", "s")]).expect_err("missing id");
        assert!(e.contains("id"), "{e}");
        let e = de::<String>(&[("s", "%FF")]).expect_err("not UTF-8");
        assert!(e.contains("UTF-8"), "{e}");
        assert!(de::<u8>(&[("n", "256")]).is_err());
    }
}
