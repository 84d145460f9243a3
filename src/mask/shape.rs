/// What the masking needs to know of one column, as the server stores it: facts only; what they mean for a mask
/// (length limits from CHECKs, nullness ties) is the mask side's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnShape {
    pub name: String,
    /// The type as PostgreSQL shows it (`format_type`), for messages.
    pub type_name: String,
    /// What one value (one element, for an array) is, after domains are resolved to their base type.
    pub base: BaseType,
    /// An array (of `base`), possibly through a domain.
    pub array: bool,
    pub not_null: bool,
    /// The type's own length limit in characters: varchar(n), char(n) (of an element, for an array).
    pub type_length: Option<u64>,
    /// The CHECK constraints on this column's values: the table's CHECKs that name it, and its domains'.
    pub checks: Vec<Check>,
    /// GENERATED ALWAYS AS (...) STORED.
    pub generated: bool,
    /// Its DEFAULT expression (`pg_get_expr`), when it has one.
    pub default: Option<String>,
}
#[cfg(test)]
impl ColumnShape {
    /// A nullable column `name` of `type_name` holding one `base` value, with no limit: what
    /// a test starts from.
    pub fn plain(name: &str, type_name: &str, base: BaseType) -> ColumnShape {
        ColumnShape {
            name: name.into(),
            type_name: type_name.into(),
            base,
            array: false,
            not_null: false,
            type_length: None,
            checks: Vec::new(),
            generated: false,
            default: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    /// As `pg_get_constraintdef` prints it (pg_dump writes the same text), e.g.
    /// `CHECK ((char_length(note) <= 24))`; a domain's names the value `VALUE`.
    pub definition: String,
    /// The table's columns it names (empty for a domain's CHECK).
    pub columns: Vec<String>,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseType {
    /// text, varchar, char, citext, name, and other string types.
    Text,
    Bytea,
    Json,
    Jsonb,
    Xml,
    /// inet, cidr, macaddr, macaddr8.
    Network,
    /// Numbers, booleans, dates and times, uuids, enums: nothing personal.
    NotPersonal,
    /// A composite or range type, or any type not known: could hold anything, personal.
    Other,
}
