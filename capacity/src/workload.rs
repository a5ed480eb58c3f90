//! What the requests carry: SOAP bodies for each contract, built through ei-server's
//! own rules and codec so every request is one the server accepts.
//!
//! Keys are chosen so that no call repeats a key (the contract's EI002) and so that
//! writes land on the same residents FindContent reads: the *resident space* (the
//! seeded residents, or a default range) is shared by all flow rows.

use ei_server::codec;
use ei_server::model::{Field, RawEngagement, RawTransaction};
use ei_server::operation::{Operation, WriteOperation};
use ei_server::rules::{self, RulesConfig};

/// The service domain every generated post and look-up uses.
pub const DOMAIN: &str = "riv:clinicalprocess:healthcond:description";
/// The dataController of generated posts.
pub const DATA_CONTROLLER: &str = "capacity-data-controller";
/// The owner ProcessNotification posts carry (another index than the target).
pub const PEER_INDEX: &str = "capacity-peer-index";
/// The sourceSystem of seeded posts.
pub const SEED_SOURCE: &str = "capacity-seed";
/// Grundladdning residents start here, apart from the resident space, so that a load
/// inserts new keys as a real first load does.
pub const GRUND_RESIDENT_BASE: u64 = 5_000_000_000;

/// A request ready to send.
#[derive(Clone, Debug)]
pub struct Request {
    pub operation: Operation,
    pub body: String,
    /// Posts (transactions) the call carries; 1 for a look-up.
    pub posts: u64,
}

/// A resident identity: 12 characters, like a personnummer.
pub fn resident(n: u64) -> String {
    format!("19{:010}", n % 10_000_000_000)
}

/// Residents `0..count` that generated traffic reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidentSpace {
    pub count: u64,
}

/// SplitMix64: a tiny, well-mixed pseudo-random step, so runs are reproducible
/// without a random-number dependency.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One post's engagement fields.
pub struct Post<'a> {
    pub resident: u64,
    pub categorization: String,
    pub source_system: &'a str,
    pub owner: Option<&'a str>,
}

impl Post<'_> {
    fn raw(&self, now: &str) -> RawTransaction {
        let mut e = RawEngagement::default();
        e.set(
            Field::RegisteredResidentIdentification,
            resident(self.resident),
        );
        e.set(Field::ServiceDomain, DOMAIN);
        e.set(Field::Categorization, self.categorization.clone());
        e.set(Field::LogicalAddress, self.source_system);
        e.set(Field::BusinessObjectInstanceIdentifier, "NA");
        e.set(Field::ClinicalProcessInterestId, "NA");
        e.set(Field::MostRecentContent, now);
        e.set(Field::SourceSystem, self.source_system);
        e.set(Field::DataController, DATA_CONTROLLER);
        if let Some(owner) = self.owner {
            e.set(Field::Owner, owner);
        }
        RawTransaction {
            delete_flag: Some("false".into()),
            engagement: e,
        }
    }
}

/// Builds request bodies for one index (its HSA-id is the Update LogicalAddress).
#[derive(Clone, Debug)]
pub struct Bodies {
    rules: RulesConfig,
}

impl Bodies {
    pub fn new(index_hsa_id: &str) -> Bodies {
        Bodies {
            rules: RulesConfig::new(index_hsa_id, "platform-hsa-id"),
        }
    }

    pub fn index_hsa_id(&self) -> &str {
        &self.rules.own_hsa_id
    }

    /// An Update or ProcessNotification call with these posts, checked by the
    /// server's rules (an error here means the plan cannot produce valid traffic).
    pub fn write(&self, op: WriteOperation, posts: &[Post<'_>]) -> Result<Request, rules::EiError> {
        let now = ei_server::clock::now().to_string();
        let raws: Vec<RawTransaction> = posts.iter().map(|p| p.raw(&now)).collect();
        let txs = match op {
            WriteOperation::ProcessNotification => rules::validate_transactions(
                &self.rules,
                WriteOperation::ProcessNotification,
                raws,
            )?,
            WriteOperation::Update => {
                rules::validate_update(&self.rules, Some(&self.rules.own_hsa_id), raws)?
            }
        };
        let mut body = String::with_capacity(256 + posts.len() * 700);
        codec::write_write_request(&mut body, op, &self.rules.own_hsa_id, &txs);
        Ok(Request {
            operation: op.operation(),
            body,
            posts: posts.len() as u64,
        })
    }

    /// A FindContent look-up of one resident in [`DOMAIN`].
    pub fn find(&self, resident_no: u64) -> Request {
        let mut q = RawEngagement::default();
        q.set(
            Field::RegisteredResidentIdentification,
            resident(resident_no),
        );
        q.set(Field::ServiceDomain, DOMAIN);
        let mut body = String::with_capacity(512);
        codec::write_find_content_request(&mut body, &self.rules.own_hsa_id, &q);
        Request {
            operation: Operation::FindContent,
            body,
            posts: 1,
        }
    }
}

/// The calls of one flow row: call `seq` of stream `stream` touches `posts_per_call`
/// distinct keys starting at a pseudo-random resident.
#[derive(Clone, Debug)]
pub struct FlowCalls {
    pub bodies: Bodies,
    pub operation: Operation,
    pub source_system: String,
    pub posts_per_call: u64,
    pub residents: ResidentSpace,
    pub stream: u64,
}

impl FlowCalls {
    pub fn request(&self, seq: u64) -> Result<Request, rules::EiError> {
        let start = mix(self.stream << 40 ^ seq) % self.residents.count;
        let Some(write) = self.operation.write() else {
            return Ok(self.bodies.find(start));
        };
        let owner = (write == WriteOperation::ProcessNotification).then_some(PEER_INDEX);
        let count = self.residents.count;
        // Residents wrap around the space; a second lap uses another category, so
        // keys stay distinct however small the space is.
        let posts: Vec<Post<'_>> = (0..self.posts_per_call)
            .map(|j| Post {
                resident: (start + j) % count,
                categorization: categorization(j / count),
                source_system: &self.source_system,
                owner,
            })
            .collect();
        self.bodies.write(write, &posts)
    }
}

/// The category of lap `lap`: `voo`, then `voo-1`, `voo-2`, …
pub fn categorization(lap: u64) -> String {
    if lap == 0 {
        "voo".to_owned()
    } else {
        format!("voo-{lap}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(req: &Request, index: &str) -> usize {
        match codec::parse_request(req.body.as_bytes()).unwrap() {
            codec::Request::Write {
                operation,
                logical_address,
                transactions,
            } => {
                let cfg = RulesConfig::new(index, "platform-hsa-id");
                let n = match operation {
                    WriteOperation::Update => {
                        rules::validate_update(&cfg, logical_address.as_deref(), transactions)
                    }
                    WriteOperation::ProcessNotification => {
                        rules::validate_notification(&cfg, transactions)
                    }
                };
                n.unwrap().len()
            }
            codec::Request::FindContent { query, .. } => {
                rules::validate_find(*query).unwrap();
                1
            }
        }
    }

    fn calls(op: Operation, posts: u64, residents: u64) -> FlowCalls {
        FlowCalls {
            bodies: Bodies::new("5565594230"),
            operation: op,
            source_system: "SE2321000016-15CQ".into(),
            posts_per_call: posts,
            residents: ResidentSpace { count: residents },
            stream: 3,
        }
    }

    #[test]
    fn generated_calls_pass_the_servers_rules() {
        for op in Operation::ALL {
            let c = calls(op, 25, 1000);
            for seq in 0..20 {
                let req = c.request(seq).unwrap();
                let want = if op == Operation::FindContent { 1 } else { 25 };
                assert_eq!(accepted(&req, "5565594230"), want, "{op:?} call {seq}");
                assert_eq!(req.posts, want as u64);
            }
        }
    }

    #[test]
    fn a_call_larger_than_the_resident_space_still_has_distinct_keys() {
        let req = calls(Operation::Update, 1000, 7).request(1).unwrap();
        assert_eq!(accepted(&req, "5565594230"), 1000);
    }

    #[test]
    fn residents_are_twelve_characters() {
        assert_eq!(resident(0), "190000000000");
        assert_eq!(resident(42).len(), 12);
        assert_eq!(resident(GRUND_RESIDENT_BASE + 7), "195000000007");
    }
}
