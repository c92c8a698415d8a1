//! The callback policy: which addresses a webhook may be sent to.
//!
//! A `callback_url` is chosen by whoever submits a job, so without a policy
//! the worker could be made to POST into its own network (server-side request
//! forgery): a cloud metadata service, an admin port on loopback, a database
//! on a private range. The policy is applied twice:
//!
//! - at submission, to every address the host resolves to, so a bad URL is
//!   refused with a 422 before any job runs;
//! - before every attempt, by [`PolicyResolver`], the DNS resolver of the
//!   sender's HTTP client: it resolves the name, checks every address and hands
//!   only checked addresses to the connector. The check and the connection use
//!   the same answer, so a name that resolves to a public address at
//!   submission and to a private one later (DNS rebinding) is still refused.
//!   URLs with an address literal never reach a resolver; the sender checks
//!   those itself with [`CallbackPolicy::check_literal`].
//!
//! Link-local, metadata, multicast, broadcast, unspecified, reserved,
//! documentation, benchmarking and IETF protocol addresses are refused
//! whatever the configuration; an IPv6 address that carries an IPv4 address
//! (mapped, compatible, translated, NAT64, 6to4, Teredo) is judged by the
//! address it carries. Loopback and private ranges are refused
//! unless `--allow-private-callbacks` is set or the host name or address
//! matches an entry of `--callback-allow`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};

/// Addresses of cloud metadata services outside the link-local range.
const METADATA: [IpAddr; 2] = [
    // AWS's IPv6 instance metadata endpoint (inside fc00::/7).
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    // Alibaba Cloud (inside 100.64.0.0/10).
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
];

/// How long a name may take to resolve, at submission and before attempts;
/// the system resolver has no bound of its own.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// How an address is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// A public address: always allowed.
    Public,
    /// Loopback or private: allowed only by configuration. Holds a name for
    /// the range, for the error message.
    Private(&'static str),
    /// Never allowed. Holds a name for the range.
    Forbidden(&'static str),
}

/// Classifies one address: the one question any outbound fetch of the
/// worker asks of an address it is about to connect to.
///
/// Every IPv6 form that carries an IPv4 address is judged by the address it
/// carries, so that wrapping `127.0.0.1` in IPv6 does not get it through:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// IPv4-translated (`::ffff:0:a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4
/// (`2002:AABB:CCDD::`) and Teredo (server and client). The local-use NAT64
/// prefix `64:ff9b:1::/48` is refused outright: where it carries the IPv4
/// address depends on the local translator's prefix length.
pub fn classify(ip: IpAddr) -> AddrClass {
    if METADATA.contains(&ip) {
        return AddrClass::Forbidden("a cloud metadata address");
    }
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v6(v6: Ipv6Addr) -> AddrClass {
    let seg = v6.segments();
    // `::` and `::1` also have the IPv4-compatible shape; they are their own.
    if v6.is_unspecified() {
        return AddrClass::Forbidden("the unspecified address");
    }
    if v6.is_loopback() {
        return AddrClass::Private("the loopback address (::1)");
    }
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 {
        return AddrClass::Forbidden("a local-use NAT64 address (64:ff9b:1::/48)");
    }
    let carried = embedded_v4(v6);
    if !carried.is_empty() {
        return carried
            .into_iter()
            .map(|v4| classify(IpAddr::V4(v4)))
            .max_by_key(|c| c.severity())
            .unwrap_or(AddrClass::Public);
    }
    if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        AddrClass::Forbidden("a documentation address (2001:db8::/32)")
    } else if seg[0] == 0x3fff && seg[1] < 0x1000 {
        AddrClass::Forbidden("a documentation address (3fff::/20)")
    } else if seg[0] == 0x0100 && seg[1..4] == [0, 0, 0] {
        AddrClass::Forbidden("a discard-only address (100::/64)")
    } else if v6.is_multicast() {
        AddrClass::Forbidden("a multicast address")
    } else if (seg[0] & 0xffc0) == 0xfe80 {
        AddrClass::Forbidden("a link-local address (fe80::/10)")
    } else if (seg[0] & 0xfe00) == 0xfc00 {
        AddrClass::Private("a unique local address (fc00::/7)")
    } else if (seg[0] & 0xffc0) == 0xfec0 {
        // Deprecated site-local: private in spirit.
        AddrClass::Private("a site-local address (fec0::/10)")
    } else {
        AddrClass::Public
    }
}

/// The IPv4 addresses an IPv6 address carries, by the forms of RFC 4291
/// (mapped, compatible), RFC 2765 (translated), RFC 6052 (the well-known
/// NAT64 prefix), RFC 3056 (6to4) and RFC 4380 (Teredo: the server, and the
/// client stored with its bits inverted). Empty for any other address.
fn embedded_v4(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let seg = v6.segments();
    let v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match seg {
        // ::ffff:a.b.c.d, ::ffff:0:a.b.c.d, ::a.b.c.d and 64:ff9b::a.b.c.d.
        [0, 0, 0, 0, 0, 0xffff, hi, lo]
        | [0, 0, 0, 0, 0xffff, 0, hi, lo]
        | [0, 0, 0, 0, 0, 0, hi, lo]
        | [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => vec![v4(hi, lo)],
        [0x2002, hi, lo, ..] => vec![v4(hi, lo)],
        [0x2001, 0, s_hi, s_lo, _, _, c_hi, c_lo] => vec![v4(s_hi, s_lo), v4(!c_hi, !c_lo)],
        _ => Vec::new(),
    }
}

impl AddrClass {
    /// Orders classes from harmless to never allowed, so that an address
    /// carrying two IPv4 addresses is judged by the worse one.
    fn severity(self) -> u8 {
        match self {
            AddrClass::Public => 0,
            AddrClass::Private(_) => 1,
            AddrClass::Forbidden(_) => 2,
        }
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    if ip.is_link_local() {
        AddrClass::Forbidden("a link-local address (169.254.0.0/16)")
    } else if o[0] == 0 {
        AddrClass::Forbidden("the unspecified network (0.0.0.0/8)")
    } else if ip.is_multicast() {
        AddrClass::Forbidden("a multicast address (224.0.0.0/4)")
    } else if ip.is_broadcast() {
        AddrClass::Forbidden("the broadcast address")
    } else if o[0] >= 240 {
        AddrClass::Forbidden("a reserved address (240.0.0.0/4)")
    } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
        AddrClass::Forbidden("an IETF protocol assignment (192.0.0.0/24)")
    } else if (o[0] == 192 && o[1] == 0 && o[2] == 2)
        || (o[0] == 198 && o[1] == 51 && o[2] == 100)
        || (o[0] == 203 && o[1] == 0 && o[2] == 113)
    {
        AddrClass::Forbidden("a documentation address (RFC 5737)")
    } else if o[0] == 198 && (o[1] & 0xfe) == 18 {
        AddrClass::Forbidden("a benchmarking address (198.18.0.0/15)")
    } else if o[0] == 192 && o[1] == 88 && o[2] == 99 {
        AddrClass::Forbidden("a deprecated 6to4 relay address (192.88.99.0/24)")
    } else if ip.is_loopback() {
        AddrClass::Private("a loopback address (127.0.0.0/8)")
    } else if o[0] == 10 {
        AddrClass::Private("a private address (10.0.0.0/8)")
    } else if o[0] == 172 && (16..32).contains(&o[1]) {
        AddrClass::Private("a private address (172.16.0.0/12)")
    } else if o[0] == 192 && o[1] == 168 {
        AddrClass::Private("a private address (192.168.0.0/16)")
    } else if o[0] == 100 && (64..128).contains(&o[1]) {
        AddrClass::Private("a shared address (100.64.0.0/10)")
    } else {
        AddrClass::Public
    }
}

/// One entry of `--callback-allow`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    /// An exact host name, compared case-insensitively.
    Host(String),
    /// `*.suffix`: any name ending in `.suffix`. Stored with the leading dot.
    Suffix(String),
    /// An address range (`10.1.0.0/16`) or single address.
    Net(IpNet),
}

impl FromStr for AllowRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty --callback-allow entry".to_owned());
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(AllowRule::Net(net));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(AllowRule::Net(IpNet::from(ip)));
        }
        if let Some(rest) = s.strip_prefix("*.") {
            if rest.is_empty() || rest.contains('*') {
                return Err(format!("bad --callback-allow pattern {s:?}"));
            }
            return Ok(AllowRule::Suffix(format!(".{}", rest.to_ascii_lowercase())));
        }
        if s.contains(['*', '/', ' ', ':']) {
            return Err(format!(
                "bad --callback-allow entry {s:?}: expected a host, *.suffix or a CIDR"
            ));
        }
        Ok(AllowRule::Host(s.to_ascii_lowercase()))
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowRule::Host(h) => f.write_str(h),
            AllowRule::Suffix(s) => write!(f, "*{s}"),
            AllowRule::Net(n) => write!(f, "{n}"),
        }
    }
}

/// Why a callback URL or address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The URL is not http(s) with a host.
    #[error("callback_url must be an http or https URL with a host")]
    BadUrl,
    /// The host did not resolve.
    #[error("callback host {host} does not resolve: {reason}")]
    Unresolvable {
        /// The host name.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// An address that is never allowed.
    #[error("callback host {host} resolves to {addr}, {range}, which is never allowed")]
    Forbidden {
        /// The host as written.
        host: String,
        /// The offending address.
        addr: IpAddr,
        /// What kind of address it is.
        range: &'static str,
    },
    /// A private or loopback address without an allowance.
    #[error(
        "callback host {host} resolves to {addr}, {range}; allow it with --callback-allow or --allow-private-callbacks"
    )]
    Private {
        /// The host as written.
        host: String,
        /// The offending address.
        addr: IpAddr,
        /// What kind of address it is.
        range: &'static str,
    },
}

/// The configured policy.
#[derive(Debug, Clone, Default)]
pub struct CallbackPolicy {
    /// `--allow-private-callbacks`: loopback and private ranges pass.
    pub allow_private: bool,
    /// `--callback-allow`: hosts and ranges that pass even when private.
    pub allow: Vec<AllowRule>,
}

impl CallbackPolicy {
    /// Checks one resolved address of `host` (`host` is the name as written
    /// in the URL, or the address itself for literals): allowed, or refused
    /// with the reason. Any outbound fetch whose target a client chose (the
    /// callback, a video to download) asks this of the address it is about to
    /// connect to.
    pub fn check_addr(&self, host: &str, ip: IpAddr) -> Result<(), PolicyError> {
        match classify(ip) {
            AddrClass::Public => Ok(()),
            AddrClass::Forbidden(range) => Err(PolicyError::Forbidden {
                host: host.to_owned(),
                addr: ip,
                range,
            }),
            AddrClass::Private(range) => {
                if self.allow_private || self.allowed(host, ip) {
                    Ok(())
                } else {
                    Err(PolicyError::Private {
                        host: host.to_owned(),
                        addr: ip,
                        range,
                    })
                }
            }
        }
    }

    fn allowed(&self, host: &str, ip: IpAddr) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        // An IPv6 form that carries IPv4 addresses is allowed by the ranges of
        // the ones that made it private (both of a Teredo address may be).
        let carried: Vec<IpAddr> = match ip {
            IpAddr::V6(v6) => embedded_v4(v6)
                .into_iter()
                .map(IpAddr::V4)
                .filter(|v4| classify(*v4) != AddrClass::Public)
                .collect(),
            IpAddr::V4(_) => Vec::new(),
        };
        self.allow.iter().any(|rule| match rule {
            AllowRule::Host(h) => *h == host,
            AllowRule::Suffix(s) => host.ends_with(s.as_str()),
            AllowRule::Net(n) => {
                n.contains(&ip) || (!carried.is_empty() && carried.iter().all(|a| n.contains(a)))
            }
        })
    }

    /// Checks a URL whose host is an address literal, without resolving.
    /// Returns `Ok(false)` for a URL with a host name (the resolver checks
    /// those) and `Ok(true)` for a literal that passed.
    pub fn check_literal(&self, url: &Url) -> Result<bool, PolicyError> {
        match url.host() {
            Some(Host::Ipv4(v4)) => self
                .check_addr(&v4.to_string(), IpAddr::V4(v4))
                .map(|_| true),
            Some(Host::Ipv6(v6)) => self
                .check_addr(&v6.to_string(), IpAddr::V6(v6))
                .map(|_| true),
            Some(Host::Domain(_)) => Ok(false),
            None => Err(PolicyError::BadUrl),
        }
    }

    /// Resolves `url`'s host and checks every address, as submission does.
    /// Returns the checked addresses.
    pub async fn check_url(&self, url: &Url) -> Result<Vec<SocketAddr>, PolicyError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(PolicyError::BadUrl);
        }
        let port = url.port_or_known_default().ok_or(PolicyError::BadUrl)?;
        match url.host() {
            Some(Host::Ipv4(v4)) => {
                self.check_addr(&v4.to_string(), IpAddr::V4(v4))?;
                Ok(vec![SocketAddr::new(IpAddr::V4(v4), port)])
            }
            Some(Host::Ipv6(v6)) => {
                self.check_addr(&v6.to_string(), IpAddr::V6(v6))?;
                Ok(vec![SocketAddr::new(IpAddr::V6(v6), port)])
            }
            Some(Host::Domain(name)) => self.resolve_checked(name, port).await,
            None => Err(PolicyError::BadUrl),
        }
    }

    /// Resolves a host name and checks every address it resolves to; one
    /// refused address refuses the name, since the connector could pick any.
    pub async fn resolve_checked(
        &self,
        name: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, PolicyError> {
        let lookup = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name, port)))
            .await
            .map_err(|_| PolicyError::Unresolvable {
                host: name.to_owned(),
                reason: format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs()),
            })?;
        let addrs: Vec<SocketAddr> = lookup
            .map_err(|e| PolicyError::Unresolvable {
                host: name.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        if addrs.is_empty() {
            return Err(PolicyError::Unresolvable {
                host: name.to_owned(),
                reason: "no addresses".to_owned(),
            });
        }
        for a in &addrs {
            self.check_addr(name, a.ip())?;
        }
        Ok(addrs)
    }
}

/// The sender's DNS resolver: resolves, checks every address against the
/// policy, and hands only checked addresses to the connector.
#[derive(Debug, Clone)]
pub struct PolicyResolver {
    /// Shared with the rest of the worker; never changes after start.
    pub policy: Arc<CallbackPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            // The connector fills in the URL's port itself; 0 is a placeholder.
            let addrs = policy
                .resolve_checked(name.as_str(), 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_the_ranges_of_the_contract() {
        for forbidden in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "224.0.0.1",
            "ff02::1",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(
                matches!(classify(ip(forbidden)), AddrClass::Forbidden(_)),
                "{forbidden}"
            );
        }
        for private in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "::1",
            "fc00::1",
            "fd12::1",
            "::ffff:127.0.0.1",
            "::ffff:10.1.1.1",
        ] {
            assert!(
                matches!(classify(ip(private)), AddrClass::Private(_)),
                "{private}"
            );
        }
        for public in ["8.8.8.8", "172.32.0.1", "2606:4700::1111", "1.1.1.1"] {
            assert_eq!(classify(ip(public)), AddrClass::Public, "{public}");
        }
    }

    /// What the default policy must answer for an address, whichever path
    /// the address takes.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Want {
        Refused,
        NeverAllowed,
        Allowed,
    }

    /// Every IPv6 spelling of an IPv4 address, and the special-purpose
    /// ranges, with what the default policy (`allow_private` off) and an open
    /// one (`allow_private` on) must answer.
    const FORMS: &[(&str, Want)] = &[
        // IPv4-compatible, mapped, translated, NAT64, 6to4, Teredo: loopback.
        ("::127.0.0.1", Want::Refused),
        ("::7f00:1", Want::Refused),
        ("::ffff:127.0.0.1", Want::Refused),
        ("::ffff:0:7f00:1", Want::Refused),
        ("::ffff:0:127.0.0.1", Want::Refused),
        ("64:ff9b::7f00:1", Want::Refused),
        ("2002:7f00:1::", Want::Refused),
        ("2002:7f00:1:ffff::1", Want::Refused),
        // Teredo: server 8.8.8.8, client 127.0.0.1 stored inverted.
        ("2001:0:808:808::80ff:fffe", Want::Refused),
        // The same forms carrying private and metadata addresses.
        ("::10.0.0.1", Want::Refused),
        ("::ffff:0:c0a8:101", Want::Refused),
        ("2002:a00:1::", Want::Refused),
        ("::169.254.169.254", Want::NeverAllowed),
        ("::ffff:0:a9fe:a9fe", Want::NeverAllowed),
        ("2002:a9fe:a9fe::", Want::NeverAllowed),
        ("64:ff9b::a9fe:a9fe", Want::NeverAllowed),
        ("::ffff:100.100.100.200", Want::NeverAllowed),
        ("2001:0:808:808::5601:5601", Want::NeverAllowed),
        ("::0.0.0.2", Want::NeverAllowed),
        ("64:ff9b:1::7f00:1", Want::NeverAllowed),
        ("64:ff9b:1::808:808", Want::NeverAllowed),
        // Special-purpose IPv4 ranges, bare and wrapped.
        ("192.0.0.1", Want::NeverAllowed),
        ("192.0.0.170", Want::NeverAllowed),
        ("198.18.0.1", Want::NeverAllowed),
        ("198.19.255.254", Want::NeverAllowed),
        ("192.0.2.1", Want::NeverAllowed),
        ("198.51.100.7", Want::NeverAllowed),
        ("203.0.113.9", Want::NeverAllowed),
        ("240.0.0.1", Want::NeverAllowed),
        ("255.255.255.255", Want::NeverAllowed),
        ("192.88.99.1", Want::NeverAllowed),
        ("::ffff:198.18.0.1", Want::NeverAllowed),
        ("2002:c000:201::", Want::NeverAllowed),
        ("100.64.0.1", Want::Refused),
        ("100.127.255.254", Want::Refused),
        ("::ffff:100.64.0.1", Want::Refused),
        // Special-purpose IPv6 ranges.
        ("2001:db8::1", Want::NeverAllowed),
        ("2001:db8:ffff::1", Want::NeverAllowed),
        ("3fff::1", Want::NeverAllowed),
        ("100::1", Want::NeverAllowed),
        // Public, bare and wrapped: the forms themselves are not refused.
        ("8.8.8.8", Want::Allowed),
        ("198.20.0.1", Want::Allowed),
        ("100.128.0.1", Want::Allowed),
        ("::ffff:8.8.8.8", Want::Allowed),
        ("2002:808:808::1", Want::Allowed),
        ("64:ff9b::808:808", Want::Allowed),
        ("2001:0:808:808::f7f7:f7f7", Want::Allowed),
        ("2606:4700::1111", Want::Allowed),
    ];

    fn url_for(ip: IpAddr) -> Url {
        match ip {
            IpAddr::V4(v4) => format!("http://{v4}:9/hook"),
            IpAddr::V6(v6) => format!("http://[{v6}]:9/hook"),
        }
        .parse()
        .unwrap()
    }

    /// The answer of every path an address can take: the class, the check
    /// of an address literal (sender), the check at submission, and the
    /// sender's resolver (a name that resolves to the address).
    async fn answers(policy: &CallbackPolicy, text: &str) -> [Result<(), PolicyError>; 4] {
        let addr = ip(text);
        let url = url_for(addr);
        let resolver = PolicyResolver {
            policy: Arc::new(policy.clone()),
        };
        let name: reqwest::dns::Name = text.parse().unwrap();
        let resolved = reqwest::dns::Resolve::resolve(&resolver, name)
            .await
            .map(|addrs| assert!(addrs.map(|a| a.ip()).eq([addr])))
            .map_err(|e| {
                e.downcast::<PolicyError>()
                    .map(|e| *e)
                    .unwrap_or_else(|e| panic!("{text}: not a policy refusal: {e}"))
            });
        [
            policy.check_addr(text, addr),
            policy.check_literal(&url).map(|checked| assert!(checked)),
            policy.check_url(&url).await.map(|_| ()),
            resolved,
        ]
    }

    #[tokio::test]
    async fn every_form_of_an_address_meets_the_same_answer_on_every_path() {
        let strict = CallbackPolicy::default();
        let open = CallbackPolicy {
            allow_private: true,
            allow: vec![],
        };
        for &(text, want) in FORMS {
            for (i, got) in answers(&strict, text).await.into_iter().enumerate() {
                match want {
                    Want::Allowed => assert_eq!(got, Ok(()), "{text} (path {i})"),
                    Want::Refused => assert!(
                        matches!(got, Err(PolicyError::Private { .. })),
                        "{text} (path {i}): {got:?}"
                    ),
                    Want::NeverAllowed => assert!(
                        matches!(got, Err(PolicyError::Forbidden { .. })),
                        "{text} (path {i}): {got:?}"
                    ),
                }
            }
            for (i, got) in answers(&open, text).await.into_iter().enumerate() {
                assert_eq!(
                    got.is_ok(),
                    want != Want::NeverAllowed,
                    "{text} (path {i}), private allowed: {got:?}"
                );
            }
        }
    }

    #[test]
    fn an_allowed_range_lifts_the_wrapped_forms_of_its_addresses() {
        let policy = CallbackPolicy {
            allow_private: false,
            allow: vec!["127.0.0.0/8".parse().unwrap()],
        };
        for form in [
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
            "64:ff9b::7f00:1",
        ] {
            assert!(policy.check_addr("x", ip(form)).is_ok(), "{form}");
        }
        assert!(policy.check_addr("x", ip("2002:a00:1::")).is_err());
        assert!(policy.check_addr("x", ip("::169.254.169.254")).is_err());
    }

    #[test]
    fn allow_rules_lift_private_but_never_forbidden() {
        let policy = CallbackPolicy {
            allow_private: false,
            allow: ["api.internal", "*.svc.local", "10.1.0.0/16"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
        };
        assert!(policy.check_addr("api.internal", ip("10.9.9.9")).is_ok());
        assert!(policy.check_addr("API.INTERNAL.", ip("10.9.9.9")).is_ok());
        assert!(policy.check_addr("x.svc.local", ip("192.168.0.3")).is_ok());
        assert!(policy.check_addr("svc.local", ip("192.168.0.3")).is_err());
        assert!(policy.check_addr("other", ip("10.1.2.3")).is_ok());
        assert!(policy.check_addr("other", ip("::ffff:10.1.2.3")).is_ok());
        assert!(policy.check_addr("other", ip("10.2.0.1")).is_err());
        // Allowed host, but a link-local address: still refused.
        assert!(matches!(
            policy.check_addr("api.internal", ip("169.254.169.254")),
            Err(PolicyError::Forbidden { .. })
        ));
        let open = CallbackPolicy {
            allow_private: true,
            allow: vec![],
        };
        assert!(open.check_addr("x", ip("127.0.0.1")).is_ok());
        assert!(open.check_addr("x", ip("224.0.0.1")).is_err());
        assert!(open.check_addr("x", ip("0.0.0.0")).is_err());
    }

    #[test]
    fn parses_allow_rules() {
        assert_eq!(
            "*.Example.com".parse::<AllowRule>(),
            Ok(AllowRule::Suffix(".example.com".into()))
        );
        assert_eq!(
            "10.0.0.1".parse::<AllowRule>(),
            Ok(AllowRule::Net("10.0.0.1/32".parse().unwrap()))
        );
        assert!("*.".parse::<AllowRule>().is_err());
        assert!("a*b".parse::<AllowRule>().is_err());
        assert!("".parse::<AllowRule>().is_err());
    }
}
