//! Which value fits which column, and when a column is widened (`docs/divergences.md`,
//! "Column types").
//!
//! ```text
//!   bigint ──► numeric        the only automatic change: lossless, ALTER COLUMN … TYPE numeric
//!   boolean   timestamptz     never changed; text takes any value as its text
//!   text
//! ```
//!
//! A column is created with the type of its first value in log order — or, for a standard
//! column, the type Segment's schema gives it — except that an integer column that meets a
//! non-integer number becomes `numeric`, in the batch that creates it or in any later one.
//! Nothing else is widened: `numeric`, `boolean` or `timestamptz` → `text` would keep every
//! value, but it would break every model that does arithmetic, logic or date maths on the
//! column because of one stray string, and `timestamptz` → `text` would rewrite the stored
//! timestamps in the session's `DateStyle`. Such a value is NULL in its row and kept in
//! `_switchyard_discards`. The result depends only on the values' order, never on where the
//! batches were cut.

use indexmap::IndexMap;

use super::rows::ColType;

/// Whether a value of type `value` can be stored in a column of type `column` as it is.
pub fn fits(column: ColType, value: ColType) -> bool {
    column == value
        || column == ColType::Text
        || (column == ColType::Float && value == ColType::Integer)
}

/// What one batch's values ask of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    /// The standard column's type, or the type of the first value in log order.
    pub first: ColType,
    /// Some value is a non-integer number.
    pub decimal: bool,
}

/// Per column, in the order the columns first appear.
pub type Needs = IndexMap<String, Need>;

impl Need {
    /// The type a column that does not exist yet is created with.
    pub fn create(self) -> ColType {
        self.widen(self.first).unwrap_or(self.first)
    }

    /// The type an existing column of type `have` must become to take every value, when it
    /// must change.
    pub fn widen(self, have: ColType) -> Option<ColType> {
        (have == ColType::Integer && self.decimal).then_some(ColType::Float)
    }

    /// Notes one more value of type `ty`.
    pub fn add(&mut self, ty: ColType) {
        self.decimal |= ty == ColType::Float;
    }
}

/// Notes a value of type `ty` for column `col` in `needs`.
pub fn note(needs: &mut Needs, col: &str, ty: ColType) {
    match needs.get_mut(col) {
        Some(n) => n.add(ty),
        None => {
            let need = Need {
                first: ty,
                decimal: ty == ColType::Float,
            };
            needs.insert(col.to_owned(), need);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ColType::*;
    use super::*;

    /// The column type after values arrive one by one (each its own batch).
    fn one_by_one(values: &[ColType]) -> ColType {
        let mut have: Option<ColType> = None;
        for v in values {
            let need = Need {
                first: *v,
                decimal: *v == Float,
            };
            have = Some(match have {
                None => need.create(),
                Some(h) => need.widen(h).unwrap_or(h),
            });
        }
        have.unwrap()
    }

    /// The column type when all values arrive in one batch.
    fn in_one_batch(values: &[ColType]) -> ColType {
        let mut needs = Needs::new();
        values.iter().for_each(|v| note(&mut needs, "c", *v));
        needs["c"].create()
    }

    #[test]
    fn integers_meeting_decimals_become_numeric_whatever_the_batches() {
        let cases: [(&[ColType], ColType); 7] = [
            (&[Integer, Float], Float),
            (&[Float, Integer], Float),
            (&[Integer, Integer], Integer),
            (&[Integer, Text, Float], Float),
            (&[Text, Integer, Float], Text),
            (&[Boolean, Float], Boolean),
            (&[Timestamp, Integer], Timestamp),
        ];
        for (values, want) in cases {
            assert_eq!(one_by_one(values), want, "{values:?} one by one");
            assert_eq!(in_one_batch(values), want, "{values:?} in one batch");
        }
    }

    #[test]
    fn what_fits_where() {
        assert!(fits(Float, Integer));
        assert!(fits(Text, Boolean) && fits(Text, Timestamp) && fits(Text, Float));
        assert!(!fits(Integer, Float));
        assert!(!fits(Float, Text) && !fits(Float, Boolean));
        assert!(!fits(Boolean, Integer) && !fits(Timestamp, Text));
    }
}
