//! Names parsed into types: context slugs, contract ids (`orders/OrderPlaced@2`), translator and
//! route names. Nothing past the loader passes a name around as a loose string.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {input:?} is invalid: {why}")]
pub struct NameError {
    what: &'static str,
    input: String,
    why: &'static str,
}

impl NameError {
    fn new(what: &'static str, input: &str, why: &'static str) -> Self {
        // Never echo an unbounded input back.
        let input: String = input.chars().take(80).collect();
        Self { what, input, why }
    }
}

const MAX_SLUG: usize = 32;
const MAX_CONTRACT_NAME: usize = 128;

/// A slug: lowercase ASCII letter, then lowercase letters, digits and `-`/`_` (as allowed).
fn check_slug(what: &'static str, input: &str, extra: &[u8], max: usize) -> Result<(), NameError> {
    if input.is_empty() {
        return Err(NameError::new(what, input, "it is empty"));
    }
    if input.len() > max {
        return Err(NameError::new(what, input, "it is too long"));
    }
    let bytes = input.as_bytes();
    if !bytes[0].is_ascii_lowercase() {
        return Err(NameError::new(
            what,
            input,
            "it must start with a lowercase letter",
        ));
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || extra.contains(b))
    {
        return Err(NameError::new(
            what,
            input,
            "it may hold only lowercase ASCII letters, digits and the separators allowed",
        ));
    }
    Ok(())
}

macro_rules! string_name {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

string_name!(
    /// A bounded context, named by a slug such as `orders`.
    ContextName
);
string_name!(
    /// A route's name, a slug such as `orders-to-shipping`.
    RouteName
);

impl ContextName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        check_slug("context name", input, b"-", MAX_SLUG)?;
        Ok(Self(input.to_owned()))
    }
}

impl RouteName {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        check_slug("route name", input, b"-", 64)?;
        Ok(Self(input.to_owned()))
    }
}

/// One message type of one owning context, without a version: `orders/OrderPlaced`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractName {
    context: ContextName,
    name: String,
}

impl ContractName {
    pub fn new(context: ContextName, name: &str) -> Result<Self, NameError> {
        check_contract_name(name)?;
        Ok(Self {
            context,
            name: name.to_owned(),
        })
    }

    pub fn parse(input: &str) -> Result<Self, NameError> {
        let Some((context, name)) = input.split_once('/') else {
            return Err(NameError::new(
                "contract name",
                input,
                "expected <context>/<Name>",
            ));
        };
        Self::new(ContextName::parse(context)?, name)
    }

    /// The context that owns this contract.
    pub fn context(&self) -> &ContextName {
        &self.context
    }

    /// The message type name, such as `OrderPlaced`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CloudEvents `type` that messages of this contract carry: `orders.OrderPlaced`.
    pub fn event_type(&self) -> String {
        format!("{}.{}", self.context, self.name)
    }

    pub fn version(&self, version: u32) -> ContractId {
        ContractId {
            name: self.clone(),
            version,
        }
    }
}

impl fmt::Display for ContractName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.context, self.name)
    }
}

fn check_contract_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > MAX_CONTRACT_NAME {
        return Err(NameError::new(
            "contract name",
            name,
            "it must hold 1 to 128 characters",
        ));
    }
    let bytes = name.as_bytes();
    if !bytes[0].is_ascii_uppercase() || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return Err(NameError::new(
            "contract name",
            name,
            "it must be PascalCase ASCII letters and digits",
        ));
    }
    Ok(())
}

/// One version of one contract: `orders/OrderPlaced@2`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContractId {
    name: ContractName,
    version: u32,
}

/// The scheme under which the gateway names contract versions in `dataschema` and `$ref`.
pub const DATASCHEMA_PREFIX: &str = "contextgate:";

impl ContractId {
    pub fn parse(input: &str) -> Result<Self, NameError> {
        let Some((name, version)) = input.rsplit_once('@') else {
            return Err(NameError::new(
                "contract id",
                input,
                "expected <context>/<Name>@<version>",
            ));
        };
        let version = parse_version(version)
            .ok_or_else(|| NameError::new("contract id", input, "the version must be 1 or more"))?;
        Ok(Self {
            name: ContractName::parse(name)?,
            version,
        })
    }

    /// Parses a CloudEvents `dataschema`: `contextgate:orders/OrderPlaced@2`.
    pub fn from_dataschema(dataschema: &str) -> Result<Self, NameError> {
        match dataschema.strip_prefix(DATASCHEMA_PREFIX) {
            Some(rest) => Self::parse(rest),
            None => Err(NameError::new(
                "dataschema",
                dataschema,
                "expected contextgate:<context>/<Name>@<version>",
            )),
        }
    }

    pub fn dataschema(&self) -> String {
        format!("{DATASCHEMA_PREFIX}{self}")
    }

    pub fn name(&self) -> &ContractName {
        &self.name
    }

    pub fn context(&self) -> &ContextName {
        self.name.context()
    }

    pub fn version(&self) -> u32 {
        self.version
    }
}

/// A version number written canonically: decimal digits without a sign or a leading zero, from
/// 1 (so `01` and `+1` are not version 1; one version has one spelling).
pub(crate) fn parse_version(input: &str) -> Option<u32> {
    if input.is_empty() || input.len() > 6 || input.starts_with('0') {
        return None;
    }
    if !input.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    input.parse().ok()
}

impl fmt::Display for ContractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

/// A translator, named by its owning context and its file name: `shipping/prepare_shipments`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TranslatorId {
    context: ContextName,
    name: String,
}

impl TranslatorId {
    pub fn new(context: ContextName, name: &str) -> Result<Self, NameError> {
        check_slug("translator name", name, b"_", 64)?;
        Ok(Self {
            context,
            name: name.to_owned(),
        })
    }

    pub fn parse(input: &str) -> Result<Self, NameError> {
        let Some((context, name)) = input.split_once('/') else {
            return Err(NameError::new(
                "translator id",
                input,
                "expected <context>/<name>",
            ));
        };
        Self::new(ContextName::parse(context)?, name)
    }

    /// The context that owns this translator (the folder it lives in).
    pub fn context(&self) -> &ContextName {
        &self.context
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TranslatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.context, self.name)
    }
}

macro_rules! display_serde {
    ($name:ident) => {
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

display_serde!(ContractName);
display_serde!(ContractId);
display_serde!(TranslatorId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_ids_parse_and_print_back() {
        let id = ContractId::parse("orders/OrderPlaced@2").unwrap();
        assert_eq!(id.context().as_str(), "orders");
        assert_eq!(id.name().name(), "OrderPlaced");
        assert_eq!(id.version(), 2);
        assert_eq!(id.to_string(), "orders/OrderPlaced@2");
        assert_eq!(id.dataschema(), "contextgate:orders/OrderPlaced@2");
        assert_eq!(ContractId::from_dataschema(&id.dataschema()).unwrap(), id);
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "Orders",
            "../etc",
            "orders%2e",
            "ord\0ers",
            "ordérs",
            "1orders",
            &"a".repeat(100),
        ] {
            assert!(ContextName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        for bad in [
            "orders/OrderPlaced",
            "orders/OrderPlaced@0",
            "orders/OrderPlaced@01",
            "orders/orderPlaced@1",
            "orders/Order-Placed@1",
            "orders/OrderPlaced@x",
            "OrderPlaced@1",
        ] {
            assert!(ContractId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn errors_never_echo_long_inputs_whole() {
        let long = "x".repeat(10_000);
        let error = ContextName::parse(&long).unwrap_err().to_string();
        assert!(error.len() < 300, "{error}");
    }
}
