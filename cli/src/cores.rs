//! `--cores`: one grammar, one meaning, for every binary.

use std::fmt;
use std::str::FromStr;

use ringcore_runtime::Cores;

/// The largest core id a list may name (a guard against `0-18446744073709551615`).
const MAX_CORE_ID: usize = 4095;

/// Which cores to run on, as written on a command line: `all`, `N`, or a list like `0,2-3`.
///
/// See the [crate docs](crate) for the grammar. [`CoreSpec::resolve`] turns it into core ids
/// against this process's CPU affinity mask (for binaries that pin their own threads);
/// [`CoreSpec::to_runtime`] into the runtime's [`Cores`] (the runtime resolves it the same
/// way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreSpec {
    /// `all`: every core of the affinity mask.
    All,
    /// `N`: the first `N` cores of the affinity mask (`N >= 1`).
    First(usize),
    /// `0,2-3`: exactly these ids, in the order written, no id twice.
    List(Vec<usize>),
}

impl FromStr for CoreSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("all") {
            return Ok(CoreSpec::All);
        }
        if !s.contains([',', '-']) {
            return match s.parse::<usize>() {
                Ok(0) => Err("a core count is at least 1 (core 0 alone is written `0,`)".into()),
                Ok(n) => Ok(CoreSpec::First(n)),
                Err(_) => Err(format!(
                    "{s:?} is not a core count, `all`, or a list of core ids such as `0,2-3`"
                )),
            };
        }
        let id = |p: &str| -> Result<usize, String> {
            match p.trim().parse::<usize>() {
                Ok(id) if id <= MAX_CORE_ID => Ok(id),
                Ok(id) => Err(format!("core id {id} is above {MAX_CORE_ID}")),
                Err(_) => Err(format!("{p:?} is not a core id")),
            }
        };
        let mut ids = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (id(a)?, id(b)?),
                None => (id(part)?, id(part)?),
            };
            if lo > hi {
                return Err(format!("core range {part:?} runs backwards"));
            }
            for c in lo..=hi {
                if ids.contains(&c) {
                    return Err(format!("core {c} is listed twice"));
                }
                ids.push(c);
            }
        }
        if ids.is_empty() {
            return Err("empty core list".into());
        }
        Ok(CoreSpec::List(ids))
    }
}

impl fmt::Display for CoreSpec {
    /// Writes the spec back in a form [`FromStr`] reads (a list as single ids: `0,2,3,`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreSpec::All => f.write_str("all"),
            CoreSpec::First(n) => write!(f, "{n}"),
            CoreSpec::List(ids) => {
                for id in ids {
                    write!(f, "{id},")?;
                }
                Ok(())
            }
        }
    }
}

impl CoreSpec {
    /// The core ids this process may run on (its affinity mask), in ascending order.
    pub fn allowed() -> Vec<usize> {
        let mut ids: Vec<usize> = core_affinity::get_core_ids()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The core ids meant, checked against `allowed` (the affinity mask, see
    /// [`CoreSpec::allowed`]): `Err` names what is not there.
    pub fn resolve_in(&self, allowed: &[usize]) -> Result<Vec<usize>, String> {
        match self {
            CoreSpec::All if allowed.is_empty() => Err("this process may run on no core".into()),
            CoreSpec::All => Ok(allowed.to_vec()),
            CoreSpec::First(n) if *n > allowed.len() => Err(format!(
                "asked for {n} cores but this process may use {} ({allowed:?})",
                allowed.len()
            )),
            CoreSpec::First(n) => Ok(allowed[..*n].to_vec()),
            CoreSpec::List(ids) => match ids.iter().find(|id| !allowed.contains(id)) {
                Some(id) => Err(format!("core {id} is not in this process's CPU set {allowed:?}")),
                None => Ok(ids.clone()),
            },
        }
    }

    /// [`CoreSpec::resolve_in`] this process's affinity mask.
    pub fn resolve(&self) -> Result<Vec<usize>, String> {
        self.resolve_in(&Self::allowed())
    }

    /// The runtime's form of the same choice (the runtime checks it against the mask).
    pub fn to_runtime(&self) -> Cores {
        match self {
            CoreSpec::All => Cores::All,
            CoreSpec::First(n) => Cores::Count(*n),
            CoreSpec::List(ids) => Cores::List(ids.clone()),
        }
    }

    /// How many cores this spec means, given `allowed` cores in the mask (for reports).
    pub fn count_in(&self, allowed: usize) -> usize {
        match self {
            CoreSpec::All => allowed,
            CoreSpec::First(n) => *n,
            CoreSpec::List(ids) => ids.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<CoreSpec, String> {
        s.parse()
    }

    #[test]
    fn counts_all_and_lists() {
        assert_eq!(p("all"), Ok(CoreSpec::All));
        assert_eq!(p(" ALL "), Ok(CoreSpec::All));
        assert_eq!(p("1"), Ok(CoreSpec::First(1)));
        assert_eq!(p("16"), Ok(CoreSpec::First(16)));
        assert_eq!(p("0,2-3"), Ok(CoreSpec::List(vec![0, 2, 3])));
        assert_eq!(p("0,2,5"), Ok(CoreSpec::List(vec![0, 2, 5])));
        assert_eq!(p("3,"), Ok(CoreSpec::List(vec![3])));
        assert_eq!(p("3-3"), Ok(CoreSpec::List(vec![3])));
        assert_eq!(p("0,"), Ok(CoreSpec::List(vec![0])));
        assert_eq!(p("4-6, 1"), Ok(CoreSpec::List(vec![4, 5, 6, 1])));
    }

    #[test]
    fn zero_is_an_error_that_says_how_to_name_core_0() {
        let e = p("0").unwrap_err();
        assert!(e.contains("`0,`"), "{e}");
    }

    #[test]
    fn malformed_specs_are_errors() {
        for bad in [
            "", ",", "x", "-1", "1-", "3-1", "1,1", "0-2,2", "1.5", "99999,", "0-99999",
        ] {
            assert!(p(bad).is_err(), "{bad:?} parsed as {:?}", p(bad));
        }
    }

    #[test]
    fn display_reads_back() {
        for s in ["all", "3", "0,2-3", "5,"] {
            let spec = p(s).unwrap();
            assert_eq!(p(&spec.to_string()), Ok(spec.clone()), "{s}");
        }
    }

    #[test]
    fn resolved_against_the_mask() {
        let mask = [2, 3, 5];
        assert_eq!(CoreSpec::All.resolve_in(&mask), Ok(vec![2, 3, 5]));
        assert_eq!(CoreSpec::First(2).resolve_in(&mask), Ok(vec![2, 3]));
        assert!(CoreSpec::First(4).resolve_in(&mask).is_err());
        assert_eq!(p("5,2").unwrap().resolve_in(&mask), Ok(vec![5, 2]));
        let e = p("0,").unwrap().resolve_in(&mask).unwrap_err();
        assert!(e.contains("core 0"), "{e}");
        // The real mask: the first allowed core, as a count and as a list, is the same core.
        let first = CoreSpec::allowed()[0];
        assert_eq!(CoreSpec::First(1).resolve(), Ok(vec![first]));
        assert_eq!(p(&format!("{first},")).unwrap().resolve(), Ok(vec![first]));
    }

    #[test]
    fn runtime_form_means_the_same() {
        assert!(matches!(p("all").unwrap().to_runtime(), Cores::All));
        assert!(matches!(p("2").unwrap().to_runtime(), Cores::Count(2)));
        assert!(matches!(p("0,2-3").unwrap().to_runtime(), Cores::List(v) if v == [0, 2, 3]));
    }
}
