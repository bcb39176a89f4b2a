//! Decoy hashes for login names that match no account.
//!
//! Defends against account enumeration by timing when stored hashes differ in cost. Imported
//! bcrypt at cost 12 (passlib's default) takes several times an argon2id verification at
//! rampart's parameters, and a cost-4 hash a tenth of one, so a single dummy hash of the
//! configured cost would tell an imported account apart from no account. Here an unknown name is
//! verified against a decoy of a cost that stored hashes of this deployment have, drawn in the
//! proportions they have them ([`Decoys::mirror`] reads a sample of the table), and chosen by a
//! keyed hash of the name: the same name always takes the same time (repeating it averages
//! nothing out), on every node alike (the key comes from a secret every node shares). How long a
//! name takes then says nothing about whether it is an account's.
//!
//! No crate does this; it is a table of at most [`MAX_CLASSES`] hashes and a lookup.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Params};

use super::{is_bcrypt, CostCeiling, HashError};

/// Distinct costs mirrored; rarer ones share the others' slots.
pub const MAX_CLASSES: usize = 8;
/// Slots names are spread over: shares are kept to within one part in this many.
const SLOTS: usize = 1024;

/// What a stored hash costs to verify: the part of it timing can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CostClass {
    Bcrypt {
        cost: u32,
    },
    Argon2 {
        /// 0 argon2d, 1 argon2i, 2 argon2id.
        algorithm: u8,
        version: u32,
        memory_kib: u32,
        iterations: u32,
        lanes: u32,
    },
}

impl CostClass {
    /// The class of `stored`, when it is a hash this module verifies.
    pub fn of(stored: &str) -> Option<Self> {
        if is_bcrypt(stored) {
            let cost = stored.parse::<bcrypt::HashParts>().ok()?.get_cost();
            return Some(Self::Bcrypt { cost });
        }
        let parsed = PasswordHash::new(stored).ok()?;
        let algorithm = match Algorithm::try_from(parsed.algorithm).ok()? {
            Algorithm::Argon2d => 0,
            Algorithm::Argon2i => 1,
            Algorithm::Argon2id => 2,
        };
        let version = parsed.version.unwrap_or(0x13);
        let params = Params::try_from(&parsed).ok()?;
        Some(Self::Argon2 {
            algorithm,
            version,
            memory_kib: params.m_cost(),
            iterations: params.t_cost(),
            lanes: params.p_cost(),
        })
    }

    /// A hash of this class over a random secret: verifying anything against it costs what
    /// verifying against a stored hash of this class costs, and never succeeds.
    fn decoy(self) -> Result<String, HashError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|_| HashError::Internal("no randomness".into()))?;
        match self {
            Self::Bcrypt { cost } => bcrypt::hash(secret, cost)
                .map_err(|e| HashError::Internal(format!("bcrypt decoy: {e}"))),
            Self::Argon2 {
                algorithm,
                version,
                memory_kib,
                iterations,
                lanes,
            } => {
                let algorithm = match algorithm {
                    0 => argon2_rust::Algorithm::Argon2d,
                    1 => argon2_rust::Algorithm::Argon2i,
                    _ => argon2_rust::Algorithm::Argon2id,
                };
                let version = if version == 0x10 {
                    argon2_rust::Version::V0x10
                } else {
                    argon2_rust::Version::V0x13
                };
                let config = super::core::Config::new(
                    algorithm, version, memory_kib, iterations, lanes, 32,
                )?;
                super::core::Scratch::new(config).hash(config, &secret)
            }
        }
    }
}

/// The decoys in use and the key that picks one for a name.
pub(crate) struct Decoys {
    key: RwLock<[u8; 32]>,
    /// `SLOTS` entries (or one, before any mirroring): each a decoy hash, classes in
    /// proportion to their share of the sample.
    slots: RwLock<Arc<Vec<Arc<str>>>>,
    /// Every decoy made so far, kept so a refresh computes only classes it has not seen.
    made: Mutex<HashMap<CostClass, Arc<str>>>,
    /// Every class a sample has held (mirrored or not): a stored hash of another class is
    /// news, and the mix should be sampled again.
    sampled: RwLock<HashSet<CostClass>>,
}

impl std::fmt::Debug for Decoys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoys")
            .field("classes", &self.classes())
            .finish_non_exhaustive()
    }
}

impl Decoys {
    /// Decoys that are all `dummy` (the configured cost) until [`Decoys::mirror`] runs, picked
    /// with a random key until [`Decoys::set_key`].
    pub(crate) fn new(dummy: Arc<str>) -> Result<Self, HashError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|_| HashError::Internal("no randomness".into()))?;
        let class = CostClass::of(&dummy);
        let made = class
            .map(|class| (class, Arc::clone(&dummy)))
            .into_iter()
            .collect();
        Ok(Self {
            key: RwLock::new(key),
            slots: RwLock::new(Arc::new(vec![dummy])),
            made: Mutex::new(made),
            sampled: RwLock::new(class.into_iter().collect()),
        })
    }

    /// Whether `stored` has a cost no sample held (an import since, say).
    pub(crate) fn is_new_cost(&self, stored: &str) -> bool {
        CostClass::of(stored).is_some_and(|class| {
            !self
                .sampled
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&class)
        })
    }

    /// Derives the picking key from `secret`, so every node holding it picks alike.
    pub(crate) fn set_key(&self, secret: &[u8]) {
        *self.key.write().unwrap_or_else(PoisonError::into_inner) =
            crate::tokens::hmac_sha256(secret, b"rampart login decoys v1");
    }

    /// The decoy for `login_name`.
    pub(crate) fn for_name(&self, login_name: &str) -> Arc<str> {
        let slots = Arc::clone(&self.slots.read().unwrap_or_else(PoisonError::into_inner));
        let key = *self.key.read().unwrap_or_else(PoisonError::into_inner);
        let picked = crate::tokens::hmac_sha256(&key, login_name.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&picked[..8]);
        // `SLOTS` divides 2^64, so every slot is equally likely.
        let slot = usize::try_from(u64::from_le_bytes(first) % SLOTS as u64).unwrap_or(0);
        Arc::clone(&slots[slot % slots.len()])
    }

    /// Distinct costs among the decoys.
    pub(crate) fn classes(&self) -> usize {
        let slots = Arc::clone(&self.slots.read().unwrap_or_else(PoisonError::into_inner));
        let mut seen: Vec<&str> = slots.iter().map(AsRef::as_ref).collect();
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// Takes the costs of `sample` (stored hashes, drawn at random from the table) as the mix
    /// to mirror: its [`MAX_CLASSES`] commonest verifiable classes within `ceiling`, each in
    /// proportion to its count. A decoy not made before is computed here, one hash per new
    /// class; call off the request path. An empty sample keeps the configured cost alone.
    pub(crate) fn mirror(&self, sample: &[String], ceiling: CostCeiling) -> Result<(), HashError> {
        let mut counts: HashMap<CostClass, usize> = HashMap::new();
        let mut sampled: HashSet<CostClass> = HashSet::new();
        for stored in sample {
            let Some(class) = CostClass::of(stored) else {
                continue;
            };
            sampled.insert(class);
            if ceiling.check(stored).is_err() || !super::is_supported_hash(stored) {
                continue;
            }
            *counts.entry(class).or_default() += 1;
        }
        self.sampled
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(sampled);
        if counts.is_empty() {
            return Ok(());
        }
        let mut classes: Vec<(CostClass, usize)> = counts.into_iter().collect();
        // Commonest first; a fixed order among equals, so nodes agree.
        classes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        classes.truncate(MAX_CLASSES);
        // Laid out in class order, not by count: a small shift in the shares moves only the
        // names at the boundaries, so a name's time rarely changes between refreshes.
        classes.sort_by_key(|(class, _)| *class);
        let mut hashes = Vec::with_capacity(classes.len());
        for (class, _) in &classes {
            let known = self
                .made
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(class)
                .cloned();
            let hash = if let Some(hash) = known {
                hash
            } else {
                let hash: Arc<str> = class.decoy()?.into();
                self.made
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(*class, Arc::clone(&hash));
                hash
            };
            hashes.push(hash);
        }
        let total: usize = classes.iter().map(|(_, count)| count).sum();
        let mut slots = Vec::with_capacity(SLOTS);
        let mut class = 0;
        let mut below = classes[0].1;
        for slot in 0..SLOTS {
            // The slot's midpoint, as a share of the sample: (slot + 1/2) / SLOTS * total.
            let position = (2 * slot + 1) * total;
            while class + 1 < classes.len() && position >= 2 * SLOTS * below {
                class += 1;
                below += classes[class].1;
            }
            slots.push(Arc::clone(&hashes[class]));
        }
        *self.slots.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(slots);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::HashParams;

    const FAST: &str =
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo";

    fn ceiling() -> CostCeiling {
        CostCeiling::for_params(HashParams::OWASP_MINIMUM)
    }

    fn decoys(secret: &[u8]) -> Decoys {
        let dummy: Arc<str> = Arc::from(FAST);
        let decoys = Decoys::new(dummy).unwrap();
        decoys.set_key(secret);
        decoys
    }

    /// 70 imported bcrypt hashes to 30 argon2id ones.
    fn mixed_sample() -> Vec<String> {
        let bcrypt = bcrypt::hash("imported", 4).unwrap();
        let mut sample = vec![bcrypt; 70];
        sample.extend(std::iter::repeat_n(FAST.to_owned(), 30));
        sample
    }

    fn bcrypt_share(decoys: &Decoys, names: &[String]) -> f64 {
        let picked = names
            .iter()
            .filter(|name| decoys.for_name(name).starts_with("$2b$04$"))
            .count();
        #[allow(clippy::cast_precision_loss)]
        let share = picked as f64 / names.len() as f64;
        share
    }

    #[test]
    fn unknown_names_take_the_stored_costs_in_their_proportions_each_name_always_the_same() {
        let decoys = decoys(b"deployment secret");
        decoys.mirror(&mixed_sample(), ceiling()).unwrap();
        assert_eq!(decoys.classes(), 2);
        let names: Vec<String> = (0..4000)
            .map(|i| format!("probe-{i}@example.com"))
            .collect();
        let share = bcrypt_share(&decoys, &names);
        assert!(
            (0.66..0.74).contains(&share),
            "70% of accounts are bcrypt, so 70% of unknown names must take bcrypt's time: {share}"
        );
        for name in &names[..50] {
            assert_eq!(decoys.for_name(name), decoys.for_name(name), "{name}");
        }
    }

    #[test]
    fn every_node_with_the_shared_secret_picks_alike_and_a_different_secret_does_not() {
        let (one, other, stranger) = (
            decoys(b"deployment secret"),
            decoys(b"deployment secret"),
            decoys(b"someone else's"),
        );
        for decoys in [&one, &other, &stranger] {
            decoys.mirror(&mixed_sample(), ceiling()).unwrap();
        }
        let names: Vec<String> = (0..200).map(|i| format!("name-{i}")).collect();
        let class = |decoys: &Decoys, name: &str| decoys.for_name(name).starts_with("$2b$");
        assert!(names.iter().all(|n| class(&one, n) == class(&other, n)));
        assert!(names.iter().any(|n| class(&one, n) != class(&stranger, n)));
    }

    #[test]
    fn only_verifiable_costs_within_the_ceiling_are_mirrored_and_at_most_eight() {
        let decoys = decoys(b"k");
        let mut sample = vec![
            // Above the ceiling (2^31 rounds), unreadable, no output: never decoys.
            "$2b$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234".to_owned(),
            "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0".to_owned(),
            "garbage".to_owned(),
        ];
        sample.extend((1..=12).map(|t| {
            format!("$argon2id$v=19$m=1024,t={t},p=1$c2FsdHNhbHRzYWx0$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXo")
        }));
        decoys.mirror(&sample, ceiling()).unwrap();
        assert_eq!(decoys.classes(), MAX_CLASSES);
        let names: Vec<String> = (0..500).map(|i| format!("n{i}")).collect();
        assert!(names
            .iter()
            .all(|name| !decoys.for_name(name).starts_with("$2b$31$")));
        // Nothing verifiable: the configured cost stays.
        let fresh = super::super::PasswordHasher::new(
            HashParams {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 1,
            },
            1,
            1,
        )
        .unwrap();
        fresh.decoys.mirror(&sample[..3], ceiling()).unwrap();
        assert_eq!(fresh.decoy_costs(), 1);
    }

    #[test]
    fn the_class_of_a_hash_is_its_cost() {
        assert_eq!(
            CostClass::of(&bcrypt::hash("x", 5).unwrap()),
            Some(CostClass::Bcrypt { cost: 5 })
        );
        assert_eq!(
            CostClass::of(FAST),
            Some(CostClass::Argon2 {
                algorithm: 2,
                version: 0x13,
                memory_kib: 1024,
                iterations: 1,
                lanes: 1
            })
        );
        let decoy = CostClass::of(FAST).unwrap().decoy().unwrap();
        assert_eq!(CostClass::of(&decoy), CostClass::of(FAST));
        assert_eq!(CostClass::of("$1$md5$crypt"), None);
    }
}
