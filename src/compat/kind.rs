//! The closed set of difference types, named as Confluent Schema Registry names them, and which of
//! them each policy accepts.
//!
//! The names are Confluent's `Difference.Type` names wherever the meaning is the same, so a
//! developer who knows Confluent's messages recognises ours. The few types Confluent does not have
//! (for `format` and `if`/`then`/`else`, which its checker does not look at) are listed at the
//! end and documented in docs/compatibility.md as deviations; `contains` and `propertyNames` reuse
//! `SCHEMA_ADDED`/`SCHEMA_REMOVED` at their own path.

use serde::Serialize;

use super::Policy;

/// Declares the enum and its Confluent name in one place, so the two cannot drift apart.
macro_rules! change_kinds {
    ($($(#[$meta:meta])* $variant:ident => $name:literal,)*) => {
        /// What changed between two schema versions at one place.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ChangeKind {
            $($(#[$meta])* $variant,)*
        }

        impl ChangeKind {
            /// Every kind, in declaration order (for documentation and tests).
            pub const ALL: &'static [ChangeKind] = &[$(ChangeKind::$variant,)*];

            /// The SCREAMING_SNAKE name (Confluent's name where it has one).
            pub fn name(self) -> &'static str {
                match self {
                    $(ChangeKind::$variant => $name,)*
                }
            }

            /// The kind with that name, if there is one.
            pub fn parse(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(ChangeKind::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

change_kinds! {
    IdChanged => "ID_CHANGED",
    DescriptionChanged => "DESCRIPTION_CHANGED",
    TitleChanged => "TITLE_CHANGED",
    DefaultChanged => "DEFAULT_CHANGED",
    SchemaAdded => "SCHEMA_ADDED",
    SchemaRemoved => "SCHEMA_REMOVED",
    TypeExtended => "TYPE_EXTENDED",
    TypeNarrowed => "TYPE_NARROWED",
    TypeChanged => "TYPE_CHANGED",

    MaxLengthAdded => "MAX_LENGTH_ADDED",
    MaxLengthRemoved => "MAX_LENGTH_REMOVED",
    MaxLengthIncreased => "MAX_LENGTH_INCREASED",
    MaxLengthDecreased => "MAX_LENGTH_DECREASED",
    MinLengthAdded => "MIN_LENGTH_ADDED",
    MinLengthRemoved => "MIN_LENGTH_REMOVED",
    MinLengthIncreased => "MIN_LENGTH_INCREASED",
    MinLengthDecreased => "MIN_LENGTH_DECREASED",
    PatternAdded => "PATTERN_ADDED",
    PatternRemoved => "PATTERN_REMOVED",
    PatternChanged => "PATTERN_CHANGED",

    MaximumAdded => "MAXIMUM_ADDED",
    MaximumRemoved => "MAXIMUM_REMOVED",
    MaximumIncreased => "MAXIMUM_INCREASED",
    MaximumDecreased => "MAXIMUM_DECREASED",
    MinimumAdded => "MINIMUM_ADDED",
    MinimumRemoved => "MINIMUM_REMOVED",
    MinimumIncreased => "MINIMUM_INCREASED",
    MinimumDecreased => "MINIMUM_DECREASED",
    ExclusiveMaximumAdded => "EXCLUSIVE_MAXIMUM_ADDED",
    ExclusiveMaximumRemoved => "EXCLUSIVE_MAXIMUM_REMOVED",
    ExclusiveMaximumIncreased => "EXCLUSIVE_MAXIMUM_INCREASED",
    ExclusiveMaximumDecreased => "EXCLUSIVE_MAXIMUM_DECREASED",
    ExclusiveMinimumAdded => "EXCLUSIVE_MINIMUM_ADDED",
    ExclusiveMinimumRemoved => "EXCLUSIVE_MINIMUM_REMOVED",
    ExclusiveMinimumIncreased => "EXCLUSIVE_MINIMUM_INCREASED",
    ExclusiveMinimumDecreased => "EXCLUSIVE_MINIMUM_DECREASED",
    MultipleOfAdded => "MULTIPLE_OF_ADDED",
    MultipleOfRemoved => "MULTIPLE_OF_REMOVED",
    MultipleOfExpanded => "MULTIPLE_OF_EXPANDED",
    MultipleOfReduced => "MULTIPLE_OF_REDUCED",
    MultipleOfChanged => "MULTIPLE_OF_CHANGED",

    RequiredAttributeAdded => "REQUIRED_ATTRIBUTE_ADDED",
    RequiredAttributeWithDefaultAdded => "REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED",
    RequiredAttributeRemoved => "REQUIRED_ATTRIBUTE_REMOVED",
    MaxPropertiesAdded => "MAX_PROPERTIES_ADDED",
    MaxPropertiesRemoved => "MAX_PROPERTIES_REMOVED",
    MaxPropertiesIncreased => "MAX_PROPERTIES_INCREASED",
    MaxPropertiesDecreased => "MAX_PROPERTIES_DECREASED",
    MinPropertiesAdded => "MIN_PROPERTIES_ADDED",
    MinPropertiesRemoved => "MIN_PROPERTIES_REMOVED",
    MinPropertiesIncreased => "MIN_PROPERTIES_INCREASED",
    MinPropertiesDecreased => "MIN_PROPERTIES_DECREASED",
    AdditionalPropertiesAdded => "ADDITIONAL_PROPERTIES_ADDED",
    AdditionalPropertiesRemoved => "ADDITIONAL_PROPERTIES_REMOVED",
    AdditionalPropertiesExtended => "ADDITIONAL_PROPERTIES_EXTENDED",
    AdditionalPropertiesNarrowed => "ADDITIONAL_PROPERTIES_NARROWED",
    DependencyArrayAdded => "DEPENDENCY_ARRAY_ADDED",
    DependencyArrayRemoved => "DEPENDENCY_ARRAY_REMOVED",
    DependencyArrayExtended => "DEPENDENCY_ARRAY_EXTENDED",
    DependencyArrayNarrowed => "DEPENDENCY_ARRAY_NARROWED",
    DependencyArrayChanged => "DEPENDENCY_ARRAY_CHANGED",
    DependencySchemaAdded => "DEPENDENCY_SCHEMA_ADDED",
    DependencySchemaRemoved => "DEPENDENCY_SCHEMA_REMOVED",
    /// Confluent before 8.x; kept so old expectations parse. We emit the three kinds below.
    PropertyAddedToOpenContentModel => "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
    RequiredPropertyAddedToOpenContentModel => "REQUIRED_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
    RequiredPropertyWithDefaultAddedToOpenContentModel =>
        "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_OPEN_CONTENT_MODEL",
    OptionalPropertyAddedToOpenContentModel => "OPTIONAL_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
    PropertyWithEmptySchemaAddedToOpenContentModel =>
        "PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    RequiredPropertyAddedToUnopenContentModel => "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
    RequiredPropertyWithDefaultAddedToUnopenContentModel =>
        "REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL",
    OptionalPropertyAddedToUnopenContentModel => "OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
    PropertyRemovedFromOpenContentModel => "PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL",
    PropertyWithFalseRemovedFromClosedContentModel =>
        "PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    PropertyRemovedFromClosedContentModel => "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    PropertyRemovedIsCoveredByPartiallyOpenContentModel =>
        "PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    PropertyRemovedNotCoveredByPartiallyOpenContentModel =>
        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    PropertyAddedIsCoveredByPartiallyOpenContentModel =>
        "PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    PropertyAddedNotCoveredByPartiallyOpenContentModel =>
        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    UnevaluatedPropertiesAdded => "UNEVALUATED_PROPERTIES_ADDED",
    UnevaluatedPropertiesRemoved => "UNEVALUATED_PROPERTIES_REMOVED",
    UnevaluatedPropertiesExtended => "UNEVALUATED_PROPERTIES_EXTENDED",
    UnevaluatedPropertiesNarrowed => "UNEVALUATED_PROPERTIES_NARROWED",

    MaxItemsAdded => "MAX_ITEMS_ADDED",
    MaxItemsRemoved => "MAX_ITEMS_REMOVED",
    MaxItemsIncreased => "MAX_ITEMS_INCREASED",
    MaxItemsDecreased => "MAX_ITEMS_DECREASED",
    MinItemsAdded => "MIN_ITEMS_ADDED",
    MinItemsRemoved => "MIN_ITEMS_REMOVED",
    MinItemsIncreased => "MIN_ITEMS_INCREASED",
    MinItemsDecreased => "MIN_ITEMS_DECREASED",
    MaxContainsAdded => "MAX_CONTAINS_ADDED",
    MaxContainsRemoved => "MAX_CONTAINS_REMOVED",
    MaxContainsIncreased => "MAX_CONTAINS_INCREASED",
    MaxContainsDecreased => "MAX_CONTAINS_DECREASED",
    MinContainsAdded => "MIN_CONTAINS_ADDED",
    MinContainsRemoved => "MIN_CONTAINS_REMOVED",
    MinContainsIncreased => "MIN_CONTAINS_INCREASED",
    MinContainsDecreased => "MIN_CONTAINS_DECREASED",
    UniqueItemsAdded => "UNIQUE_ITEMS_ADDED",
    UniqueItemsRemoved => "UNIQUE_ITEMS_REMOVED",
    AdditionalItemsAdded => "ADDITIONAL_ITEMS_ADDED",
    AdditionalItemsRemoved => "ADDITIONAL_ITEMS_REMOVED",
    AdditionalItemsExtended => "ADDITIONAL_ITEMS_EXTENDED",
    AdditionalItemsNarrowed => "ADDITIONAL_ITEMS_NARROWED",
    UnevaluatedItemsAdded => "UNEVALUATED_ITEMS_ADDED",
    UnevaluatedItemsRemoved => "UNEVALUATED_ITEMS_REMOVED",
    UnevaluatedItemsExtended => "UNEVALUATED_ITEMS_EXTENDED",
    UnevaluatedItemsNarrowed => "UNEVALUATED_ITEMS_NARROWED",
    ItemAddedToOpenContentModel => "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
    ItemWithEmptySchemaAddedToOpenContentModel => "ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL",
    ItemAddedToClosedContentModel => "ITEM_ADDED_TO_CLOSED_CONTENT_MODEL",
    ItemRemovedFromOpenContentModel => "ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL",
    ItemWithFalseRemovedFromClosedContentModel =>
        "ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    ItemRemovedFromClosedContentModel => "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
    ItemRemovedIsCoveredByPartiallyOpenContentModel =>
        "ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    ItemRemovedNotCoveredByPartiallyOpenContentModel =>
        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    ItemAddedIsCoveredByPartiallyOpenContentModel =>
        "ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
    ItemAddedNotCoveredByPartiallyOpenContentModel =>
        "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",

    EnumArrayExtended => "ENUM_ARRAY_EXTENDED",
    EnumArrayNarrowed => "ENUM_ARRAY_NARROWED",
    EnumArrayChanged => "ENUM_ARRAY_CHANGED",

    CombinedTypeExtended => "COMBINED_TYPE_EXTENDED",
    CombinedTypeChanged => "COMBINED_TYPE_CHANGED",
    ProductTypeExtended => "PRODUCT_TYPE_EXTENDED",
    ProductTypeNarrowed => "PRODUCT_TYPE_NARROWED",
    SumTypeExtended => "SUM_TYPE_EXTENDED",
    SumTypeNarrowed => "SUM_TYPE_NARROWED",
    CombinedTypeSubschemasChanged => "COMBINED_TYPE_SUBSCHEMAS_CHANGED",
    NotTypeExtended => "NOT_TYPE_EXTENDED",
    NotTypeNarrowed => "NOT_TYPE_NARROWED",

    // Ours: keywords Confluent's checker does not look at (see docs/compatibility.md, "Deviations from Confluent").
    /// `format` added or changed (the registry validates formats, so it constrains).
    FormatAdded => "FORMAT_ADDED",
    FormatRemoved => "FORMAT_REMOVED",
    FormatChanged => "FORMAT_CHANGED",
    /// `if`/`then`/`else` added or changed: checked only for equality.
    ConditionalAdded => "CONDITIONAL_ADDED",
    ConditionalRemoved => "CONDITIONAL_REMOVED",
    ConditionalChanged => "CONDITIONAL_CHANGED",
}

impl Serialize for ChangeKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl std::fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl ChangeKind {
    /// Whether this change keeps old documents valid under the policy (Confluent's
    /// `COMPATIBLE_CHANGES_STRICT`, and `COMPATIBLE_CHANGES_LENIENT` = strict plus a few).
    pub fn is_compatible(self, policy: Policy) -> bool {
        self.is_compatible_strictly()
            || (policy == Policy::Lenient && self.is_compatible_leniently_only())
    }

    fn is_compatible_strictly(self) -> bool {
        use ChangeKind as K;
        matches!(
            self,
            K::IdChanged
                | K::DescriptionChanged
                | K::TitleChanged
                | K::DefaultChanged
                | K::SchemaRemoved
                | K::TypeExtended
                | K::MaxLengthIncreased
                | K::MaxLengthRemoved
                | K::MinLengthDecreased
                | K::MinLengthRemoved
                | K::PatternRemoved
                | K::MaximumIncreased
                | K::MaximumRemoved
                | K::MinimumDecreased
                | K::MinimumRemoved
                | K::ExclusiveMaximumIncreased
                | K::ExclusiveMaximumRemoved
                | K::ExclusiveMinimumDecreased
                | K::ExclusiveMinimumRemoved
                | K::MultipleOfReduced
                | K::MultipleOfRemoved
                | K::RequiredAttributeWithDefaultAdded
                | K::RequiredAttributeRemoved
                | K::DependencyArrayNarrowed
                | K::DependencyArrayRemoved
                | K::DependencySchemaRemoved
                | K::MaxPropertiesIncreased
                | K::MaxPropertiesRemoved
                | K::MinPropertiesDecreased
                | K::MinPropertiesRemoved
                | K::AdditionalPropertiesAdded
                | K::AdditionalPropertiesExtended
                | K::UnevaluatedPropertiesAdded
                | K::UnevaluatedPropertiesExtended
                | K::PropertyWithEmptySchemaAddedToOpenContentModel
                | K::RequiredPropertyWithDefaultAddedToUnopenContentModel
                | K::OptionalPropertyAddedToUnopenContentModel
                | K::PropertyWithFalseRemovedFromClosedContentModel
                | K::PropertyRemovedFromOpenContentModel
                | K::PropertyAddedIsCoveredByPartiallyOpenContentModel
                | K::PropertyRemovedIsCoveredByPartiallyOpenContentModel
                | K::MaxItemsIncreased
                | K::MaxItemsRemoved
                | K::MinItemsDecreased
                | K::MinItemsRemoved
                | K::MaxContainsIncreased
                | K::MaxContainsRemoved
                | K::MinContainsDecreased
                | K::MinContainsRemoved
                | K::UniqueItemsRemoved
                | K::AdditionalItemsAdded
                | K::AdditionalItemsExtended
                | K::UnevaluatedItemsAdded
                | K::UnevaluatedItemsExtended
                | K::ItemWithEmptySchemaAddedToOpenContentModel
                | K::ItemAddedToClosedContentModel
                | K::ItemWithFalseRemovedFromClosedContentModel
                | K::ItemRemovedFromOpenContentModel
                | K::ItemAddedIsCoveredByPartiallyOpenContentModel
                | K::ItemRemovedIsCoveredByPartiallyOpenContentModel
                | K::EnumArrayExtended
                | K::CombinedTypeExtended
                | K::ProductTypeNarrowed
                | K::SumTypeExtended
                | K::NotTypeNarrowed
                | K::FormatRemoved
                | K::ConditionalRemoved
        )
    }

    /// What Confluent 8.0.3+ adds for the lenient policy: open content models are read as
    /// "the producer will not send undeclared properties", so declaring or dropping an
    /// optional property, or narrowing what undeclared ones may be, is accepted.
    fn is_compatible_leniently_only(self) -> bool {
        use ChangeKind as K;
        matches!(
            self,
            K::AdditionalPropertiesNarrowed
                | K::AdditionalPropertiesRemoved
                | K::UnevaluatedPropertiesNarrowed
                | K::UnevaluatedPropertiesRemoved
                | K::PropertyAddedToOpenContentModel
                | K::OptionalPropertyAddedToOpenContentModel
                | K::RequiredPropertyWithDefaultAddedToOpenContentModel
                | K::PropertyRemovedFromOpenContentModel
                | K::PropertyAddedNotCoveredByPartiallyOpenContentModel
                | K::PropertyRemovedNotCoveredByPartiallyOpenContentModel
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_kind() {
        for kind in ChangeKind::ALL {
            assert_eq!(ChangeKind::parse(kind.name()), Some(*kind), "{kind}");
        }
    }

    #[test]
    fn lenient_accepts_a_superset_of_strict() {
        for kind in ChangeKind::ALL {
            if kind.is_compatible(Policy::Strict) {
                assert!(kind.is_compatible(Policy::Lenient), "{kind}");
            }
        }
        assert!(!ChangeKind::OptionalPropertyAddedToOpenContentModel.is_compatible(Policy::Strict));
        assert!(ChangeKind::OptionalPropertyAddedToOpenContentModel.is_compatible(Policy::Lenient));
        assert!(
            !ChangeKind::RequiredPropertyAddedToOpenContentModel.is_compatible(Policy::Lenient)
        );
    }
}
