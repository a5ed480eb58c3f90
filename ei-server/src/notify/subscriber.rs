//! Who gets notified of what: a subscriber, its filters, and whether a change
//! matches them (contract §5: case-insensitive; no filters = everything; a filter
//! without categorizations = the whole domain).

use crate::config::{FilterConfig, SubscriberConfig, TlsFiles};
use crate::model::Engagement;
use serde::{Deserialize, Serialize};

/// Where a subscriber came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Config,
    Registry,
}

/// One subscriber, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscriber {
    pub logical_address: String,
    pub url: String,
    pub filters: Vec<FilterConfig>,
    pub source: Source,
    /// Its TLS files, the defaults filled in.
    #[serde(default, skip_serializing_if = "TlsFiles::is_empty")]
    pub tls: TlsFiles,
}

impl Subscriber {
    /// From the configuration; `default_url` and the default TLS files when the
    /// subscriber names none.
    pub fn from_config(
        c: &SubscriberConfig,
        default_url: Option<&str>,
        default_tls: &TlsFiles,
        source: Source,
    ) -> Option<Subscriber> {
        let url = c.url.clone().or_else(|| default_url.map(str::to_owned))?;
        Some(Subscriber {
            logical_address: c.logical_address.clone(),
            url,
            filters: c.filters.clone(),
            source,
            tls: c.tls().or(default_tls),
        })
    }

    /// Does this change concern the subscriber?
    pub fn wants(&self, e: &Engagement) -> bool {
        self.filters.is_empty()
            || self.filters.iter().any(|f| {
                f.service_domain
                    .eq_ignore_ascii_case(e.key.service_domain())
                    && (f.categorizations.is_empty()
                        || f.categorizations
                            .iter()
                            .any(|c| c.eq_ignore_ascii_case(e.key.categorization())))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Field, RawEngagement, RawTransaction};
    use crate::rules::{validate_update, RulesConfig};

    fn eng(domain: &str, cat: &str) -> Engagement {
        let mut e = RawEngagement::default();
        for f in &Field::UPDATE_KEY {
            e.set(*f, "v");
        }
        e.set(Field::ServiceDomain, domain);
        e.set(Field::Categorization, cat);
        let t = RawTransaction {
            delete_flag: None,
            engagement: e,
        };
        validate_update(&RulesConfig::new("own", "p"), Some("own"), vec![t])
            .unwrap()
            .remove(0)
            .engagement
    }

    fn sub(filters: &[(&str, &[&str])]) -> Subscriber {
        Subscriber {
            logical_address: "SE1".into(),
            url: "http://x".into(),
            filters: filters
                .iter()
                .map(|(d, c)| FilterConfig {
                    service_domain: d.to_string(),
                    categorizations: c.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            source: Source::Config,
            tls: TlsFiles::default(),
        }
    }

    #[test]
    fn no_filters_means_everything() {
        assert!(sub(&[]).wants(&eng("riv:a", "x")));
    }

    #[test]
    fn domain_filter_without_categorizations_takes_the_whole_domain() {
        let s = sub(&[("riv:a", &[])]);
        assert!(s.wants(&eng("riv:a", "x")));
        assert!(s.wants(&eng("RIV:A", "y")), "case-insensitive");
        assert!(!s.wants(&eng("riv:b", "x")));
    }

    #[test]
    fn categorizations_narrow_the_domain() {
        let s = sub(&[("riv:a", &["x", "Y"]), ("riv:b", &[])]);
        assert!(s.wants(&eng("riv:a", "X")));
        assert!(s.wants(&eng("riv:a", "y")));
        assert!(!s.wants(&eng("riv:a", "z")));
        assert!(s.wants(&eng("riv:b", "z")));
    }

    #[test]
    fn default_url_is_used_when_none_given() {
        let c = SubscriberConfig::new("SE1", None, vec![]);
        let none = TlsFiles::default();
        assert_eq!(
            Subscriber::from_config(&c, Some("http://vp"), &none, Source::Config)
                .unwrap()
                .url,
            "http://vp"
        );
        assert!(Subscriber::from_config(&c, None, &none, Source::Config).is_none());
        let default_tls = TlsFiles {
            tls_ca: Some("ca.pem".into()),
            tls_cert: Some("default.pem".into()),
            tls_key: Some("default.key".into()),
        };
        let own = SubscriberConfig {
            tls_cert: Some("own.pem".into()),
            tls_key: Some("own.key".into()),
            ..c
        };
        let s = Subscriber::from_config(&own, Some("https://vp"), &default_tls, Source::Config)
            .unwrap();
        assert_eq!(
            s.tls.tls_cert,
            Some("own.pem".into()),
            "its own certificate"
        );
        assert_eq!(s.tls.tls_ca, Some("ca.pem".into()), "the default CA bundle");
    }
}
