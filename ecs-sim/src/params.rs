//! Typed access to the request parameters (query and form body merged, in arrival order).

use crate::errors::EcsError;

#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The first value of a parameter (a repeated name keeps its first value, as servlet
    /// containers do; all values are still signed).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty value, or `MissingParameter`.
    pub fn required(&self, name: &str) -> Result<&str, EcsError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| EcsError::missing_parameter(name))
    }

    /// Booleans in any letter case (`true`, `True`, `TRUE`): SDKs differ.
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, EcsError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(EcsError::invalid_parameter(name)),
        }
    }

    pub fn int(&self, name: &str) -> Result<Option<i64>, EcsError> {
        self.get(name)
            .map(|v| {
                v.trim()
                    .parse()
                    .map_err(|_| EcsError::invalid_parameter(name))
            })
            .transpose()
    }

    /// Values of a repeat list `Name.1`, `Name.2`, ... ordered by index.
    pub fn indexed(&self, name: &str) -> Vec<&str> {
        let mut items: Vec<(u32, &str)> = self
            .pairs
            .iter()
            .filter_map(|(k, v)| {
                let index = k.strip_prefix(name)?.strip_prefix('.')?.parse().ok()?;
                Some((index, v.as_str()))
            })
            .collect();
        items.sort_by_key(|(index, _)| *index);
        items.into_iter().map(|(_, v)| v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Params {
        Params::new(
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn booleans_any_case() {
        let p = params(&[("A", "True"), ("B", "FALSE"), ("C", "yes")]);
        assert_eq!(p.bool("A", false), Ok(true));
        assert_eq!(p.bool("B", true), Ok(false));
        assert_eq!(p.bool("D", true), Ok(true));
        assert_eq!(p.bool("C", false).unwrap_err().code, "InvalidParameter");
    }

    #[test]
    fn repeat_lists_in_index_order() {
        let p = params(&[
            ("InstanceId.2", "b"),
            ("InstanceId.1", "a"),
            ("InstanceId.x", "c"),
            ("InstanceIds.3", "d"),
        ]);
        assert_eq!(p.indexed("InstanceId"), vec!["a", "b"]);
        assert_eq!(p.indexed("InstanceIds"), vec!["d"]);
    }

    #[test]
    fn required_and_ints() {
        let p = params(&[("A", ""), ("N", "12"), ("M", "x")]);
        assert_eq!(p.required("A").unwrap_err().code, "MissingParameter");
        assert_eq!(p.int("N"), Ok(Some(12)));
        assert_eq!(p.int("Z"), Ok(None));
        assert!(p.int("M").is_err());
    }
}
